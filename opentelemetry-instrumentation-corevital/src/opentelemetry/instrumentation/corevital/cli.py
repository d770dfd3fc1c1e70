"""The ``corevital`` command: build a calibration profile from a model's healthy runs.

    corevital calibrate --model DIR_OR_ID [--gguf-file NAME] --prompts FILE --out PROFILE.json
    corevital calibrate --model DIR_OR_ID [--gguf-file NAME] --prompts FILE --out PROFILE.yaml [--budget B]
    corevital calibrate --model DIR_OR_ID [--gguf-file NAME] --labels FILE --out PROFILE.yaml

The first builds a healthy-run profile (``OTEL_INSTRUMENTATION_COREVITAL_CALIBRATION_PROFILE``).
The second builds the model's healthy baseline (docs/signals.md, "Baseline") and writes it into a
model profile (created, or updated in place: its other settings and the baselines of other model
shapes are kept) to drop into ``OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR``.
The third refits the risk score on your own labelled generations (``{"prompt": ..., "label": 1}``
per line, 1 = the generation failed) and writes a model profile with the fitted ``risk_model`` to
drop into ``OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR``.

Prompts are read from a JSON-lines file (``{"prompt": "...", "chat": true}`` per line, the format
of the evaluation sets) or a plain text file (one prompt per line). Every prompt is generated
greedily through the instrumentor itself, so the profile describes exactly what the spans carry.
Progress is kept in ``PROFILE.json.partial.jsonl``: an interrupted run resumes where it stopped, as
long as the prompts file, the model and ``--max-new-tokens`` are the same (each saved run carries
a hash of them). ``--model`` is a local folder or a hub id; whether a hub id may be downloaded is
the environment's choice (``HF_HUB_OFFLINE``), never this command's.

Bad input (a missing or unreadable file, a folder where a file is expected, a binary prompts file,
``--max-new-tokens`` below 1, a model that cannot be loaded) ends the command with one line naming
the problem and exit status 2, as argparse does for a bad option.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .calibrate_inputs import (  # noqa: F401  (read_prompts: public)
    BadInput,
    check_arguments,
    done_runs,
    parse_prompts,
    read_prompts,
    read_prompts_file,
    resume_key,
)
from .calibrate_outputs import write_baseline_profile, write_risk_profile
from .signals.representation import PROJECTION_DIMS, state_mean
from .signals.risk import risk_features

logger = logging.getLogger(__name__)

#: Per-step series and per-layer fields a calibration profile summarises.
PROFILE_SERIES = ("entropy", "margin", "surprisal", "topk_mass")
PROFILE_LAYERS = {"hidden.l2_norm": ("hidden_layers", "l2_norm")}


def _progress(items: Sequence[Any], total: int, initial: int) -> Iterator[Any]:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        yield from items
        return
    yield from tqdm(items, total=total, initial=initial, desc="calibrating", unit="prompt")


def load_model(model: str, gguf_file: str | None) -> tuple[Any, Any]:
    """The model and tokenizer from a local folder or a hub id (downloaded only where the
    environment allows it: ``HF_HUB_OFFLINE``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options: dict[str, Any] = {}
    if gguf_file:
        options["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(model, **options)
    loaded = AutoModelForCausalLM.from_pretrained(model, **options).eval()
    return loaded, tokenizer


def calibrate(args: argparse.Namespace) -> int:
    """Generate every prompt, keep the per-step series, and write the profile."""
    from opentelemetry.sdk.trace import TracerProvider

    from . import CoreVitalInstrumentor, health_reports
    from .signals.calibration import ProfileBuilder

    check_arguments(args)
    option = "--labels" if args.labels else "--prompts"
    source = args.labels or args.prompts
    data = read_prompts_file(source, option)
    prompts = parse_prompts(source, data, option)
    if args.labels and any(row.get("label") not in (0, 1, True, False) for row in prompts):
        raise BadInput(f"--labels {args.labels}: every line needs a 0/1 'label'")
    out = Path(args.out).expanduser()
    partial = out.with_name(out.name + ".partial.jsonl")
    key = resume_key(data, args.model, args.gguf_file, args.max_new_tokens)
    done = done_runs(partial, key, len(prompts)) if args.resume else {}
    if not args.resume and partial.exists():
        partial.unlink()
    try:
        model, tokenizer = load_model(args.model, args.gguf_file)
    except Exception as exc:  # a bad folder, a file of another kind, an unknown hub id, no network
        logger.debug("loading %s failed", args.model, exc_info=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInput(f"--model {args.model}: cannot load the model ({first[:300]})") from None
    instrumentor = CoreVitalInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), capture="hidden")
    try:
        todo = [i for i in range(len(prompts)) if i not in done]
        with partial.open("a", encoding="utf-8") as sink:
            for index in _progress(todo, len(prompts), len(done)):
                row = prompts[index]
                if row["chat"] and getattr(tokenizer, "chat_template", None):
                    messages = [{"role": "user", "content": row["prompt"]}]
                    inputs = tokenizer.apply_chat_template(
                        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
                    )
                else:
                    inputs = tokenizer(row["prompt"], return_tensors="pt")
                if "token_type_ids" not in inspect.signature(model.forward).parameters:
                    inputs.pop("token_type_ids", None)  # some tokenizers add them; most LMs refuse them
                with health_reports() as reports:
                    result = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
                if reports.last is None:
                    continue
                generated = result[0, inputs["input_ids"].shape[1] :].tolist()
                capture = reports.last.capture
                sequence = capture.sequences[0]
                l2 = sequence.hidden_layers.get("l2_norm")
                record = {
                    "index": index,
                    "key": key,
                    "features": risk_features(
                        sequence.series,
                        sequence.output_tokens,
                        sequence.finish_reason,
                        generated,
                        inputs["input_ids"][0].tolist(),
                        sequence.state_projection,
                    ).tolist(),
                    # the state probe's input, and the shape of the model it belongs to
                    "state_mean": state_mean(sequence.state_projection, PROJECTION_DIMS).tolist(),
                    "probe_shape": [capture.hidden_size, int(l2.shape[1]) if l2 is not None else 0],
                    "series": {name: sequence.series[name].tolist() for name in PROFILE_SERIES},
                    "layers": {
                        name: getattr(sequence, source)[field].tolist()
                        for name, (source, field) in PROFILE_LAYERS.items()
                    },
                }
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                done[index] = record
    finally:
        instrumentor.uninstrument()
    if args.labels:
        return write_risk_profile(prompts, done, model, out, partial, args.state_features)
    if out.suffix in (".yaml", ".yml"):
        return write_baseline_profile(done, model, out, partial, args.budget)
    builder = ProfileBuilder(model.name_or_path or args.model)

    for record in done.values():
        builder.add(
            {k: np.asarray(v, dtype=float) for k, v in record["series"].items()},
            {k: np.asarray(v, dtype=float) for k, v in record["layers"].items()},
        )
    profile = builder.build()
    profile.save(out)
    partial.unlink(missing_ok=True)
    print(f"wrote {out}: {profile.runs} runs, {len(profile.metrics)} metrics", file=sys.stderr)
    return 0


DESCRIPTION = "CoreVital's command-line tools."
EPILOG = """\
calibrate has two modes:
  corevital calibrate --prompts FILE ...   what normal looks like: a healthy-run profile (--out .json)
                                           or the model's baseline in a model profile (--out .yaml)
  corevital calibrate --labels FILE ...    refit the risk score on your own labelled generations

Run 'corevital calibrate --help' for the details of each mode."""

#: ``{divergence}`` is filled in from the generated names (semconv.py).
CALIBRATE_DESCRIPTION = """\
Generate every prompt greedily through the CoreVital instrumentor and write a profile.

modes (give exactly one):
  --prompts FILE   prompts the model answers well. With --out FILE.json: a healthy-run profile;
                   point OTEL_INSTRUMENTATION_COREVITAL_CALIBRATION_PROFILE at it and every span
                   carries {divergence}: how far that generation's
                   signals are from the healthy runs. With --out FILE.yaml: the model's healthy
                   baseline, written into that model profile (other settings and the baselines of
                   other model shapes kept); put it in OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR
                   and layers are blamed, and high_entropy raised, against this model's own normal,
                   each threshold at the false-alarm budget (--budget; needs at least 1/budget − 1
                   prompts: 99 at the default 0.01).
  --labels FILE    risk refit, written as a YAML model profile. One JSON object per line,
                   {{"prompt": "...", "label": 1}}, label 1 when the generation failed and 0 when
                   it was good (both are needed). Put the file in the directory named by
                   OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR and the risk score uses the refitted
                   model for that model type.

Prompt files are JSON lines ({{"prompt": "...", "chat": true}} per line; chat applies the model's
chat template) or plain text with one prompt per line. --model is a local folder or a hub id;
whether a hub id may be downloaded is up to your environment (HF_HUB_OFFLINE=1 forbids it).
Progress is saved beside the output (OUT.partial.jsonl), so an interrupted run resumes where it
stopped, as long as the prompts file, --model and --max-new-tokens are unchanged.

examples:
  corevital calibrate --model ./my-model --prompts healthy.jsonl --out profile.json
  corevital calibrate --model ./my-model --prompts healthy.jsonl --out profiles/llama.yaml
  corevital calibrate --model ./my-model --labels labels.jsonl --out profiles/llama.yaml
  corevital calibrate --model ./gguf-dir --gguf-file model.gguf --prompts healthy.txt --out profile.json"""


def _calibrate_description() -> str:
    from . import semconv as sc

    return CALIBRATE_DESCRIPTION.format(divergence=sc.COREVITAL_CALIBRATION_DIVERGENCE_SCORE)


def _formatter(prog: str) -> argparse.HelpFormatter:
    """Descriptions printed as written (they are laid out for a terminal); option help beside the
    option."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=24)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: the problem, then exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"the budget is a share between 0 and 1, e.g. 0.01; got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``corevital`` argument parser; its help is plain text for a terminal."""
    parser = _Parser(
        prog="corevital",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_formatter,
    )
    commands = parser.add_subparsers(title="commands", dest="command", required=True)
    cal = commands.add_parser(
        "calibrate",
        help="write a healthy-run profile (--prompts) or refit the risk score (--labels)",
        description=_calibrate_description(),
        formatter_class=_formatter,
    )
    cal.add_argument(
        "--model",
        required=True,
        help="a local model folder, or a hub id (downloaded if HF_HUB_OFFLINE allows)",
    )
    cal.add_argument("--gguf-file", help="the GGUF file inside --model to load")
    source = cal.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--prompts", metavar="FILE", help="known-healthy prompts: write a healthy-run profile (JSON)"
    )
    source.add_argument(
        "--labels",
        metavar="FILE",
        help="prompts with a 0/1 label (1 = failed): refit the risk score into a model profile (YAML)",
    )
    cal.add_argument("--out", required=True, help="where to write the profile (JSON; YAML with --labels)")
    cal.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=64,
        help="new tokens per prompt, greedy (default %(default)s)",
    )
    cal.add_argument(
        "--no-resume", dest="resume", action="store_false", help="start over, ignoring saved progress"
    )
    cal.add_argument(
        "--budget",
        type=_budget,
        default=0.01,
        help="with --prompts and a .yaml --out: the false-alarm budget of the baseline's thresholds, the "
        "share of healthy generations each may fire on (default %(default)s)",
    )
    cal.add_argument(
        "--state-features",
        action="store_true",
        help="with --labels: let the risk model read the hidden-state features too (state spread and "
        "a linear probe on the middle layer's states, fitted for this model)",
    )
    cal.set_defaults(handler=calibrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; bad input ends it with one line on stderr and exit status 2."""
    logging.basicConfig(level=logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except BadInput as exc:
        parser.exit(2, f"corevital {args.command}: error: {exc}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

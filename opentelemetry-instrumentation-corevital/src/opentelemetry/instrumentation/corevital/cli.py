"""The ``corevital`` command: build a calibration profile from a model's healthy runs.

    corevital calibrate --model DIR_OR_ID [--gguf-file NAME] --prompts FILE --out PROFILE.json
    corevital calibrate --model DIR_OR_ID [--gguf-file NAME] --labels FILE --out PROFILE.yaml

The first builds a healthy-run profile (``OTEL_INSTRUMENTATION_COREVITAL_CALIBRATION_PROFILE``).
The second refits the risk score on your own labelled generations (``{"prompt": ..., "label": 1}``
per line, 1 = the generation failed) and writes a model profile with the fitted ``risk_model`` to
drop into ``OTEL_INSTRUMENTATION_COREVITAL_PROFILES_DIR``.

Prompts are read from a JSON-lines file (``{"prompt": "...", "chat": true}`` per line, the format
of the evaluation sets) or a plain text file (one prompt per line). Every prompt is generated
greedily through the instrumentor itself, so the profile describes exactly what the spans carry.
Progress is kept in ``PROFILE.json.partial.jsonl``: an interrupted run resumes where it stopped.
Nothing is downloaded: the model is loaded with ``local_files_only``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .signals.risk import risk_features

logger = logging.getLogger(__name__)

#: Per-step series and per-layer fields a calibration profile summarises.
PROFILE_SERIES = ("entropy", "margin", "surprisal", "topk_mass")
PROFILE_LAYERS = {"hidden.l2_norm": ("hidden_layers", "l2_norm")}


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """Prompts from a JSON-lines file (``prompt`` and optional ``chat``) or one per text line."""
    prompts = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{number}: not valid JSON ({exc})") from exc
            if not isinstance(row.get("prompt"), str):
                raise SystemExit(f"{path}:{number}: a JSON line needs a string 'prompt'")
            prompts.append(
                {"prompt": row["prompt"], "chat": bool(row.get("chat", False)), "label": row.get("label")}
            )
        else:
            prompts.append({"prompt": text, "chat": False})
    if not prompts:
        raise SystemExit(f"{path}: no prompts")
    return prompts


def _done(partial: Path) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            try:
                row = json.loads(line)
                done[int(row["index"])] = row
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by an interruption
    return done


def _progress(items: Sequence[Any], total: int, initial: int) -> Iterator[Any]:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        yield from items
        return
    yield from tqdm(items, total=total, initial=initial, desc="calibrating", unit="prompt")


def load_model(model: str, gguf_file: str | None) -> tuple[Any, Any]:
    """The model and tokenizer from a local directory (or the local cache), never the network."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options: dict[str, Any] = {"local_files_only": True}
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

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prompts = read_prompts(args.labels or args.prompts)
    if args.labels and any(row.get("label") not in (0, 1, True, False) for row in prompts):
        raise SystemExit(f"{args.labels}: every line needs a 0/1 'label'")
    out = Path(args.out)
    partial = out.with_name(out.name + ".partial.jsonl")
    done = _done(partial) if args.resume else {}
    if not args.resume and partial.exists():
        partial.unlink()
    model, tokenizer = load_model(args.model, args.gguf_file)
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
                sequence = reports.last.capture.sequences[0]
                record = {
                    "index": index,
                    "features": risk_features(
                        sequence.series, sequence.output_tokens, sequence.finish_reason, generated
                    ).tolist(),
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
        return _write_risk_profile(prompts, done, model, out, partial)
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


def _write_risk_profile(
    prompts: list[dict[str, Any]], done: dict[int, dict[str, Any]], model: Any, out: Path, partial: Path
) -> int:
    """Fit the risk model on the labelled runs and write it as a model profile (YAML)."""
    import yaml

    from .fitting import fit_risk_model

    indices = sorted(done)
    features = np.array([done[i]["features"] for i in indices], dtype=float)
    labels = np.array([float(prompts[i]["label"]) for i in indices])
    if len(set(labels.tolist())) < 2:
        raise SystemExit("--labels needs both failed (1) and good (0) generations")
    risk_model = fit_risk_model(features, labels)
    model_type = str(getattr(getattr(model, "config", None), "model_type", "") or "default")
    profile = {"name": model_type, "risk_model": risk_model.to_mapping()}
    header = f"# Risk model refitted by `corevital calibrate --labels` on {len(indices)} labelled runs.\n"
    out.write_text(header + yaml.safe_dump(profile, sort_keys=False))
    partial.unlink(missing_ok=True)
    print(f"wrote {out}: risk model for model type {model_type!r} from {len(indices)} runs", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corevital", description=__doc__.splitlines()[0] if __doc__ else None
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cal = commands.add_parser("calibrate", help="build a calibration profile from healthy runs")
    cal.add_argument(
        "--model", required=True, help="a local model directory (or a model already in the cache)"
    )
    cal.add_argument("--gguf-file", help="the GGUF file inside --model to load")
    source = cal.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help="JSON-lines or text file of known-healthy prompts")
    source.add_argument(
        "--labels", help="JSON-lines file of prompts with a 0/1 'label' (1 = failed): refit the risk"
    )
    cal.add_argument("--out", required=True, help="where to write the profile (JSON; YAML with --labels)")
    cal.add_argument("--max-new-tokens", type=int, default=64)
    cal.add_argument(
        "--no-resume", dest="resume", action="store_false", help="start over, ignoring saved progress"
    )
    cal.set_defaults(handler=calibrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

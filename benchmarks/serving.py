"""Serving benchmark: ``transformers serve`` with the real SmolLM2, with and without CoreVital.

    python benchmarks/serving.py                      # both modes, 3 configurations each
    python benchmarks/serving.py --modes cb --requests 48 --repeat 2

For each generation mode (sequential ``generate()``; ``--continuous-batching``) and configuration:

- ``plain``: ``transformers serve`` alone;
- ``otel``: under ``opentelemetry-instrument`` (FastAPI server spans, OTLP/HTTP export to a receiver
  on loopback) with CoreVital disabled (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=corevital``);
- ``corevital``: the same with CoreVital on, at the default capture level (``hidden``);

a fresh server is started, warmed up, then ``--clients`` concurrent clients (the official ``openai``
client, streaming, greedy, ``--max-tokens`` each) send ``--requests`` chat requests between them.
Reported per run: requests/s and output tokens/s over the whole load, and per request (client-side)
the time to first token and the time per output token after it (median and p90). CoreVital's cost is
``corevital`` against ``otel`` (the same OpenTelemetry setup without CoreVital). With ``--repeat 2``
the configurations run in order, then in reverse order (and so on with more), and the runs of a
configuration are pooled; ``--configurations otel,corevital`` runs only those two.

Results go to ``--out`` (default ``benchmarks/out/serving.json``, not tracked); the committed
figures are in ``benchmarks/results/``. The script reports; it never fails on a number.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "live"))

from serving_harness import OtlpReceiver, ServeProcess  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))  # demo_model: the demo's loader

from demo_model import save_smollm2  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "out"
CONFIGURATIONS = ("plain", "otel", "corevital")
TOPICS = [
    "the sea",
    "a mountain",
    "a city at night",
    "a library",
    "a forest",
    "the desert",
    "a river",
    "snow",
]


def one_request(base_url: str, model: str, index: int, max_tokens: int) -> dict[str, float]:
    """One streamed chat request: its client-side timings and token count."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=600)
    prompt = f"Write a few sentences about {TOPICS[index % len(TOPICS)]}."
    started = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    ended = time.perf_counter()
    first = first or ended
    return {
        "seconds": ended - started,
        "ttft": first - started,
        "tpot": (ended - first) / max(1, tokens - 1),
        "tokens": float(tokens),
    }


def load(base_url: str, model: str, requests: int, clients: int, max_tokens: int) -> dict[str, Any]:
    """``requests`` requests from ``clients`` concurrent clients; throughput and latencies."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda i: one_request(base_url, model, i, max_tokens), range(requests)))
    wall = time.perf_counter() - started
    return {"wall_seconds": wall, "requests": results}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "opentelemetry-sdk", "openai", "fastapi"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    requests = [r for run in runs for r in run["requests"]]
    wall = sum(run["wall_seconds"] for run in runs)
    tokens = sum(r["tokens"] for r in requests)
    tpot = [r["tpot"] * 1000 for r in requests]
    ttft = [r["ttft"] * 1000 for r in requests]
    return {
        "requests": len(requests),
        "requests_per_second": len(requests) / wall,
        "output_tokens_per_second": tokens / wall,
        "time_per_output_token_ms_median": statistics.median(tpot),
        "time_per_output_token_ms_p90": percentile(tpot, 0.9),
        "time_to_first_token_ms_median": statistics.median(ttft),
    }


def run_configuration(
    model_dir: Path, mode: str, configuration: str, args: argparse.Namespace, receiver: OtlpReceiver
) -> dict[str, Any]:
    env = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "corevital"} if configuration == "otel" else {}
    server = ServeProcess(
        model_dir,
        continuous_batching=mode == "cb",
        instrumented=configuration != "plain",
        otlp_endpoint=receiver.endpoint if configuration != "plain" else None,
        env=env,
        log_path=OUT_DIR / f"serve-{mode}-{configuration}.log",
    )
    with server.running():
        load(server.base_url, str(model_dir), args.clients, args.clients, args.max_tokens)  # warm-up
        result = load(server.base_url, str(model_dir), args.requests, args.clients, args.max_tokens)
    print(f"  {mode:10s} {configuration:9s} {summarise([result])}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", default="sequential,cb", help="sequential, cb, or both (comma-separated)")
    parser.add_argument("--requests", type=int, default=32, help="requests per run, after a warm-up")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of each request")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the configurations this many times, every other time in reverse order",
    )
    parser.add_argument(
        "--configurations",
        default=",".join(CONFIGURATIONS),
        help="which of plain, otel, corevital (comma-separated)",
    )
    parser.add_argument("--model-dir", type=Path, default=OUT_DIR / "smollm2", help="saved once if missing")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "serving.json")
    args = parser.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    model_dir = save_smollm2(args.model_dir)
    receiver = OtlpReceiver().start()
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/serving.py", *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch_threads": os.environ.get("OMP_NUM_THREADS", "1 (set by the harness)"),
        },
        "versions": versions(),
        "git_commit": git_commit(),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "modes": {},
    }
    try:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            order = [c for c in CONFIGURATIONS if c in args.configurations.split(",")]
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in order}
            for repetition in range(args.repeat):
                for configuration in order if repetition % 2 == 0 else order[::-1]:
                    runs[configuration].append(
                        run_configuration(model_dir, mode, configuration, args, receiver)
                    )
            summary = {c: summarise(r) for c, r in runs.items()}
            summary["runs_requests_per_second"] = {
                c: [summarise([run])["requests_per_second"] for run in r] for c, r in runs.items()
            }
            if "otel" not in summary or "corevital" not in summary:
                report["modes"][mode] = summary
                continue
            base, traced = summary["otel"], summary["corevital"]
            summary["corevital_cost"] = {
                "throughput_percent": 100 * (1 - traced["requests_per_second"] / base["requests_per_second"]),
                "time_per_output_token_percent": 100
                * (traced["time_per_output_token_ms_median"] / base["time_per_output_token_ms_median"] - 1),
            }
            report["modes"][mode] = summary
            print(json.dumps({mode: summary["corevital_cost"]}), flush=True)
    finally:
        receiver.stop()
    report["spans_received"] = len(receiver.spans)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

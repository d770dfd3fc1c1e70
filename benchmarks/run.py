"""One entry point for the benchmarks (``tox -e bench``); it reports, it never fails on a number.

    python benchmarks/run.py quick   # a few minutes: every script end to end on small settings
    python benchmarks/run.py full    # the figures of docs/benchmarks.md (about 25 min on 2 cores)

Results go to ``benchmarks/results/*.json`` (quick runs to ``*-quick.json``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

PLANS = {
    "quick": [
        ["overhead.py", "all", "--quick", "--output", str(RESULTS / "overhead-all-quick.json")],
        ["telemetry_volume.py", "--tokens", "16,64", "--out", str(RESULTS / "telemetry-volume-quick.json")],
        ["gpu.py", "--dry-run"],
    ],
    "full": [
        ["overhead.py", "time", "--tokens", "256", "--pairs", "7",
         "--output", str(RESULTS / "overhead-time-256.json")],
        ["overhead.py", "time", "--tokens", "64", "--pairs", "15",
         "--output", str(RESULTS / "overhead-time-64.json")],
        ["overhead.py", "time", "--tokens", "64", "--pairs", "5", "--batch", "8",
         "--output", str(RESULTS / "overhead-time-64-batch8.json")],
        ["overhead.py", "time", "--tokens", "1024", "--pairs", "3", "--levels", "logits,hidden",
         "--output", str(RESULTS / "overhead-time-1024.json")],
        ["overhead.py", "memory", "--tokens-list", "128,512,1024", "--repeats", "1",
         "--output", str(RESULTS / "overhead-memory-slope.json")],
        ["telemetry_volume.py", "--tokens", "64,256,1024"],
        ["gpu.py", "--dry-run"],
        ["gpu.py"],  # prints a note and does nothing without a CUDA device
    ],
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plan = args[0] if args else "quick"
    if plan not in PLANS:
        print(f"usage: run.py [{'|'.join(PLANS)}]", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    for step in PLANS[plan]:
        print(f"\n$ python benchmarks/{' '.join(step)}", flush=True)
        completed = subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], check=False)
        if completed.returncode:
            print(f"(exit {completed.returncode}: reported, not fatal)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One entry point for the benchmarks (``tox -e bench``); it reports, it never fails on a number.

    python benchmarks/run.py quick [--out DIR]   # every script end to end on small settings (~2 min)
    python benchmarks/run.py full [--out DIR]    # the figures of docs/benchmarks.md (~30 min)

Times are for a 2-core machine.

Every result file goes to ``--out`` (default ``benchmarks/out/<plan>/``, which git ignores), so a
run never rewrites the committed figures. To refresh those, ask for it explicitly::

    python benchmarks/run.py full --out benchmarks/results
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"


def plans(out: Path) -> dict[str, list[list[str]]]:
    """The steps of each plan: a script and its arguments, every output file inside ``out``."""
    return {
        "quick": [
            ["overhead.py", "all", "--quick", "--out", str(out / "overhead-all-quick.json")],
            ["telemetry_volume.py", "--tokens", "16", "--out", str(out / "telemetry-volume-quick.json")],
            ["gpu.py", "--dry-run", "--batches", "1,2", "--out", str(out / "gpu-dry-run.json")],
            ["percall.py", "--repeats", "11", "--levels", "logits", "--out", str(out / "percall-quick.json")],
            ["representation_cost.py", "--no-model", "--out", str(out / "representation-cost-quick.json")],
        ],
        "full": [
            ["overhead.py", "time", "--tokens", "256", "--pairs", "7",
             "--out", str(out / "overhead-time-256.json")],
            ["overhead.py", "time", "--tokens", "64", "--pairs", "15",
             "--out", str(out / "overhead-time-64.json")],
            ["overhead.py", "time", "--tokens", "64", "--pairs", "5", "--batch", "8",
             "--out", str(out / "overhead-time-64-batch8.json")],
            ["overhead.py", "time", "--tokens", "1024", "--pairs", "3", "--levels", "logits,hidden",
             "--out", str(out / "overhead-time-1024.json")],
            ["overhead.py", "memory", "--out", str(out / "overhead-memory.json")],
            ["overhead.py", "memory", "--tokens-list", "128,512,1024", "--repeats", "1",
             "--out", str(out / "overhead-memory-slope.json")],
            ["telemetry_volume.py", "--tokens", "64,256,1024", "--out", str(out / "telemetry-volume.json")],
            ["percall.py", "--out", str(out / "percall.json")],
            ["representation_cost.py", "--out", str(out / "representation-cost.json")],
            ["gpu.py", "--dry-run", "--out", str(out / "gpu-dry-run.json")],
            # prints a note and does nothing without a CUDA device
            ["gpu.py", "--out", str(out / "gpu.json")],
        ],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("plan", nargs="?", default="quick", choices=("quick", "full"))
    parser.add_argument(
        "--out", type=Path, help="folder for the result files (default benchmarks/out/<plan>)"
    )
    args = parser.parse_args(argv)
    out = (args.out or DEFAULT_OUT / args.plan).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for step in plans(out)[args.plan]:
        print(f"\n$ python benchmarks/{' '.join(step)}", flush=True)
        completed = subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], check=False)
        if completed.returncode:
            print(f"(exit {completed.returncode}: reported, not fatal)", file=sys.stderr)
    print(f"\n{args.plan} plan done in {time.perf_counter() - started:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

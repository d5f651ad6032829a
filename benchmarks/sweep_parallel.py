"""Sweep wall time: the same points one at a time against N at a time, side by side in one run.

    python benchmarks/sweep_parallel.py                                  # the probe notebook, x = 0 1 2 3, N = 2
    python benchmarks/sweep_parallel.py 00_tour -p layer 5 15 25 --parallel 2

Each mode runs into a fresh temporary workbench home, so the two sweeps see the same (empty)
store. On CPU the speed-up is bounded by the cores: every point is a kernel importing torch and
running its notebook; with one GPU per point (`--gpus`) the bound is the GPUs.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

from workbench.notebook import parse_value
from workbench.sweep import grid, run_sweep

PROBE = Path(__file__).resolve().parent.parent / "tests" / "notebooks" / "sweep_probe.ipynb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", nargs="?", default=str(PROBE))
    parser.add_argument("-p", "--parameter", nargs="+", action="append", metavar="KEY VALUE")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--profile", default="smoke")
    args = parser.parse_args()
    axes = {
        key: [parse_value(v) for v in values] for key, *values in args.parameter or [["x", "0.0", "1.0", "2.0", "3.0"]]
    }
    points = grid(axes)
    times = {}
    for parallel in (1, args.parallel):
        with tempfile.TemporaryDirectory() as folder:
            os.environ["WORKBENCH_HOME"] = folder
            result = run_sweep(args.notebook, points, parallel=parallel, profile=args.profile, progress=False)
            assert result.counts()["finished"] == len(points), result.outcomes
            times[parallel] = result.seconds
    print(f"notebook {Path(args.notebook).name}, {len(points)} points ({args.profile}), {os.cpu_count()} cores")
    print(f"{'one at a time':24s} {times[1]:7.1f} s")
    print(f"{f'{args.parallel} at a time':24s} {times[args.parallel]:7.1f} s")
    print(f"{'speed-up':24s} {times[1] / times[args.parallel]:7.2f} x")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "sweep_parallel.json").write_text(json.dumps({"points": len(points), "seconds": times}))


if __name__ == "__main__":
    main()

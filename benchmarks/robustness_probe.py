"""Fault probe of the run store with real processes: kill -9 and SIGINT at random moments.

    python benchmarks/robustness_probe.py --kills 40 --sigints 100 --json out.json

kill -9: a writer logs in a loop (printing each step once `log` has returned, i.e. committed) and
is killed at a random moment; afterwards the store must pass `integrity_check`, hold every step the
writer saw committed, and read the killed run as "interrupted".

SIGINT: a process logs in a loop inside `with start_run(...)`, catching KeyboardInterrupt as
IPython does, and gets SIGINT every 50-150 ms; after each one it reports whether its connection
was left inside a transaction. Then another process must start a run within seconds (a held write
lock would make it wait 60 s and fail), and no step whose `log` returned may be missing.
Each probe is bounded by its counts; the whole run takes a few minutes on a loaded CPU.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_robustness_interrupts import sigint_probe  # noqa: E402 -- the test's probe, run at scale

WRITER = textwrap.dedent(
    """
    import sys
    from workbench.runs import RunStore, _environment
    _environment()
    store = RunStore(sys.argv[1])
    run = store.start_run("probe", sys.argv[2])
    print("started", run.id, flush=True)
    step = 0
    while True:
        run.log({"loss": 1.0 / (step + 1), "ppl": 2.0, "lr": 3e-4}, step)
        print(step, flush=True)
        step += 1
    """
)


def kill9_probe(path: Path, tries: int, seed: int = 0) -> dict:
    from workbench.runs import RunStore

    rng = random.Random(seed)
    lost, not_interrupted, committed_total = 0, 0, 0
    for attempt in range(tries):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"kill-{attempt}"], stdout=subprocess.PIPE,
                                  text=True)
        run_id = int(writer.stdout.readline().split()[1])
        time.sleep(rng.uniform(0.05, 1.0))
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate()
        steps = [int(line) for line in out.split()]
        committed = steps[-1] + 1 if steps else 0
        committed_total += committed
        store = RunStore(path)
        stored = store.db.execute("SELECT COUNT(DISTINCT step) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0]
        lost += max(0, committed - stored)
        not_interrupted += store.run(run_id)["status"] != "interrupted"
        store.db.close()
    store = RunStore(path)
    return {"tries": tries, "rows_lost": lost, "steps_committed": committed_total, "not_interrupted": not_interrupted,
            "integrity_check": store.db.execute("PRAGMA integrity_check").fetchone()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--sigints", type=int, default=100)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="robustness-"))
    start = time.perf_counter()
    kill9 = kill9_probe(folder / "kill9.db", args.kills)
    print("kill -9:", kill9, flush=True)
    sigint = sigint_probe(folder / "sigint.db", args.sigints)
    sigint.pop("returned")
    sigint["tries"] = args.sigints
    print("SIGINT:", sigint, flush=True)
    result = {"kill9": kill9, "sigint": sigint, "seconds": round(time.perf_counter() - start, 1)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

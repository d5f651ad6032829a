"""Fault probe of the run store with real processes: kill -9 and SIGINT at random moments.

    python benchmarks/robustness_probe.py --kills 40 --sigints 100 --json out.json

kill -9: a writer logs in a loop (printing each step once `log` has returned, i.e. committed) and
is killed at a random moment; afterwards the store must pass `integrity_check`, hold every step the
writer saw committed, and read the killed run as "interrupted".

SIGINT: a process logs in a loop inside `with start_run(...)`, catching KeyboardInterrupt as
IPython does, and gets SIGINT every 50-150 ms; after each one it reports whether its connection
was left inside a transaction. Then another process must start a run within seconds (a held write
lock would make it wait 60 s and fail), and no step whose `log` returned may be missing.
Issue 28's faults, each in a WORKBENCH_HOME of its own, through the real command line:
- Ctrl-C: SIGINT to `python -m workbench run`'s process group (what a terminal sends) at a random
  moment, half of them before the notebook's run exists; counts exit 130, one-line messages,
  tracebacks, runs stored "interrupted" and kernels left alive.
- same second: two runs of one notebook started together, with a tuple parameter; counts lost notebooks.
- bit rot: bytes of a cached model flipped in place (size and mtime kept), seen by a new process's
  first use; and the cost of that check on the SmolLM2 entry, if cached.
- full disk (root only: a tmpfs): the disk full before a run, and filling up while a notebook writes.
- Ray: an unreachable RAY_ADDRESS, seconds until the one-line error.
Each probe is bounded by its counts; the whole run takes several minutes on a loaded CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_robustness_faults import SLEEPER, TUPLES, cli, write_notebook  # noqa: E402 -- the tests' notebooks
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
    lost, not_interrupted, not_written, committed_total = 0, 0, 0, 0
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
        raw = sqlite3.connect(path)  # what any other reader of the file sees, after one open by the store
        not_written += raw.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0] != "interrupted"
        raw.close()
    store = RunStore(path)
    return {"tries": tries, "rows_lost": lost, "steps_committed": committed_total, "not_interrupted": not_interrupted,
            "not_written_interrupted": not_written,
            "integrity_check": store.db.execute("PRAGMA integrity_check").fetchone()[0]}


def _wait_for_run(home: Path, process: subprocess.Popen, limit_s: float = 180) -> None:
    deadline = time.time() + limit_s
    while time.time() < deadline and process.poll() is None:
        try:
            if sqlite3.connect(home / "runs.db").execute("SELECT COUNT(*) FROM runs").fetchone()[0]:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.2)


def ctrl_c_probe(folder: Path, tries: int, seed: int = 0) -> dict:
    """Ctrl-C into `python -m workbench run` at random moments (see the module docstring)."""
    from workbench.runs import RunStore

    rng = random.Random(seed)
    counts = dict(tries=tries, exit_130=0, one_line=0, tracebacks=0, runs_interrupted=0, runs_other=0,
                  kernels_left=0, before_the_run=0)
    exit_s = []
    for attempt in range(tries):
        home = folder / f"ctrl-c-{attempt}"
        home.mkdir(parents=True)
        source = write_notebook(home / "sleeper.ipynb", SLEEPER)
        process = cli(["run", str(source)], home, start_new_session=True,
                      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        if attempt % 2:
            time.sleep(rng.uniform(0.5, 6.0))  # anywhere from imports to kernel start to the first cells
        else:
            _wait_for_run(home, process)
            time.sleep(rng.uniform(0.0, 3.0))
        start = time.perf_counter()
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=300)
        exit_s.append(time.perf_counter() - start)
        lines = _lines(err)
        counts["exit_130"] += process.returncode == 130
        counts["one_line"] += len(lines) == 1 and lines[0].startswith("interrupted")
        counts["tracebacks"] += "Traceback" in err or "Error:" in err
        rows = RunStore(home / "runs.db").runs() if (home / "runs.db").is_file() else None
        if rows is None or rows.empty:
            counts["before_the_run"] += 1
            continue
        counts["runs_interrupted"] += (rows["status"] == "interrupted").sum()
        counts["runs_other"] += (rows["status"] != "interrupted").sum()
        for pid in rows["pid"]:
            try:
                os.kill(int(pid), 0)
                counts["kernels_left"] += 1
            except ProcessLookupError:
                pass
    return {**{k: int(v) for k, v in counts.items()}, "exit_s_max": round(max(exit_s), 1)}


def same_second_probe(folder: Path, pairs: int) -> dict:
    """Two runs of one notebook started together, each with `-p loops "(2,)"` (a tuple, valid)."""
    lost, failed, same_second = 0, 0, 0
    for pair in range(pairs):
        home = folder / f"pair-{pair}"
        home.mkdir(parents=True)
        source = write_notebook(home / "tuples.ipynb", TUPLES)
        started = []
        processes = []
        for _ in range(2):
            started.append(time.strftime("%H%M%S"))
            processes.append(cli(["run", str(source), "-p", "loops", "(2,)"], home))
        for process in processes:
            process.communicate(timeout=600)
        same_second += started[0] == started[1]
        failed += sum(process.returncode != 0 for process in processes)
        lost += 2 - len(list((home / "notebooks").glob("tuples-smoke-*.ipynb")))
    return {"pairs": pairs, "started_in_one_second": same_second, "runs_failed": failed, "notebooks_lost": lost}


def bitrot_probe(folder: Path, tries: int, seed: int = 0) -> dict:
    """Bytes flipped in place in a cached tiny model (size and mtime kept): found on a new process's first use?"""
    os.environ["WORKBENCH_CACHE"] = str(folder / "cache")
    from workbench import models

    rng = random.Random(seed)

    def write(target):
        models.tiny_llama(seed=1)[0].save_pretrained(target)

    entry = models._atomic_cache_entry("probe-tiny", write)
    weights = entry / "model.safetensors"
    detected = 0
    for _ in range(tries):
        stat = weights.stat()
        with open(weights, "r+b") as file:
            file.seek(rng.randrange(stat.st_size - 64))
            file.write(bytes(rng.randrange(256) for _ in range(rng.choice((1, 8, 64)))))
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        models._verified.clear()  # a new process
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            models._atomic_cache_entry("probe-tiny", write)
        detected += any("damaged" in str(w.message) for w in caught)
    result = {"tries": tries, "detected": detected}
    smollm2 = Path.home() / ".cache" / "workbench" / "models" / models.DEFAULT_ENTRY
    if (smollm2 / models.MANIFEST).is_file():
        start = time.perf_counter()
        problem = models._cache_problem(smollm2, full=True)
        size = sum(f.stat().st_size for f in smollm2.iterdir() if f.is_file())
        result["smollm2_full_check"] = {"MB": round(size / 1e6), "seconds": round(time.perf_counter() - start, 2),
                                        "problem": problem}
    return result


def full_disk_probe(folder: Path) -> dict:
    """A tmpfs of 8 MB as the workbench home: full before a run, and filling up during one (root only)."""
    mount = folder / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True).returncode:
        return {"skipped": "cannot mount a tmpfs here (not root?)"}
    result = {}
    try:
        from workbench.runs import RunStore

        home = mount / "home"
        store = RunStore(home / "runs.db")
        with store.start_run("probe", "before"):
            pass
        store.db.close()  # nothing of this process may hold the tmpfs when it is unmounted
        noisy = write_notebook(folder / "noisy.ipynb", [("x = 1", ["parameters"]), ("print('a' * 400_000)", [])])
        for scenario, free in (("full before the run", 0), ("filling up during the run", 300_000)):
            filler = mount / "filler"
            with open(filler, "wb") as file:
                try:
                    while shutil.disk_usage(mount).free > free:
                        file.write(b"\0" * min(65536, max(4096, shutil.disk_usage(mount).free - free)))
                        file.flush()
                except OSError:
                    pass
            for command in (["run", str(noisy)], ["sweep", str(noisy), "-p", "x", "1", "2"]):
                process = cli(command, home)
                _, err = process.communicate(timeout=300)
                lines = _lines(err)
                outputs = [p for p in home.rglob("*") if p.suffix in (".ipynb", ".html")]
                partial = sorted(p.name for p in outputs if not _complete(p))
                result[f"{scenario}: {command[0]}"] = {"exit": process.returncode, "lines": len(lines),
                                                       "message": lines[-1][:160] if lines else "",
                                                       "partial_files_left": partial}
            filler.unlink()
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    return result


def _lines(err: str) -> list[str]:
    """stderr's lines without papermill's progress bar (which an error may follow on the same line)."""
    text = re.sub(r"(Executing|sweep [^:]*): [^\r\n]*?(it/s|cell/s|s/cell|point/s|s/point)[^\]]*\]", "", err)
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()]


def _complete(path: Path) -> bool:
    """An executed notebook that parses, or an HTML copy that ends."""
    text = path.read_text(errors="replace")
    if path.suffix == ".html":
        return "</html>" in text[-200:]
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def ray_probe(folder: Path) -> dict:
    """Seconds until `sweep --backend ray` answers an unreachable RAY_ADDRESS."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    notebook = write_notebook(folder / "ray.ipynb", [("x = 1", ["parameters"]), ("x", [])])
    start = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "workbench", "sweep", str(notebook), "-p", "x", "1", "--backend",
                              "ray"], capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, WORKBENCH_HOME=str(folder / "ray-home"),
                                      RAY_ADDRESS=f"127.0.0.1:{port}"))
    return {"exit": process.returncode, "seconds": round(time.perf_counter() - start, 1),
            "message": process.stderr.strip().splitlines()[-1][:160]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--sigints", type=int, default=100)
    parser.add_argument("--ctrl-c", type=int, default=10, help="Ctrl-C tries through the command line")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs started in the same second")
    parser.add_argument("--bitrot", type=int, default=20)
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
    faults = {"ctrl_c": ctrl_c_probe(folder / "ctrl-c", args.ctrl_c),
              "same_second": same_second_probe(folder, args.pairs), "bitrot": bitrot_probe(folder, args.bitrot),
              "full_disk": full_disk_probe(folder), "ray": ray_probe(folder)}
    for name, numbers in faults.items():
        print(f"{name}:", numbers, flush=True)
    result = {"kill9": kill9, "sigint": sigint, **faults, "seconds": round(time.perf_counter() - start, 1)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Run notebooks in their full profile (or --profile smoke) on a GPU machine, one after another, and
bring back what they measured: for each notebook a tar.gz (executed .ipynb, HTML copy, the run store) and, last, a
table of status and wall time followed by every notebook's generated conclusion.

    PYTHONPATH=. WORKBENCH_GGUF_DIR=/root/wb python benchmarks/gpu_notebooks.py \
        03_recursive_transformers 04_galore_optimizers -p 04_galore_optimizers part pretrain

A notebook that fails, or outlives its time limit (`-t NOTEBOOK SECONDS`, default 540), does not
stop the others; its partly executed copy comes back too (papermill saves after every cell). The limit is
soft first: the notebook gets a deadline (`workbench.deadline`) at the limit minus a reserve for its report
cells (`-r NOTEBOOK SECONDS`, default 15% of the limit), starts no arm that would end past it, and still
shows its tables and conclusion with the untrained arms listed; the kill at the limit is the last resort.
`-p NOTEBOOK KEY VALUE` passes a parameter to one notebook (repeatable).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from workbench import deadline
from workbench.notebook import parse_value
from workbench.paths import home

RUNNER = """
import sys, json
from workbench.notebook import run_notebook
name, parameters, profile, folder = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
output = f"{name}-{profile}.ipynb"
run_notebook(name, parameters, profile=profile, output_dir=folder, output_name=output, progress=False)
"""


def run_with_limit(
    name: str, parameters: dict, profile: str, folder: Path, seconds: float, reserve: float | None = None
) -> str:
    """Execute one notebook in its own process group with a soft deadline `reserve` seconds before `seconds`
    (`workbench.deadline`); kill the group (kernel included) past `seconds`."""
    command = [sys.executable, "-c", RUNNER, name, json.dumps(parameters), profile, str(folder)]
    environment = os.environ | {deadline.ENV: repr(deadline.soft_deadline(seconds, reserve))}
    process = subprocess.Popen(command, start_new_session=True, env=environment)
    try:
        return "ok" if process.wait(timeout=seconds) == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return f"killed after {seconds:.0f} s"


def markdown_outputs(notebook: Path, last_cells: int = 2) -> str:
    """The text and markdown outputs of the notebook's last code cells: its generated conclusion."""
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"][-last_cells:]
    parts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = data.get("text/markdown") or output.get("text") or data.get("text/plain") or ""
            parts.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(p.strip() for p in parts if p.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("-p", nargs=3, action="append", default=[], metavar=("NOTEBOOK", "KEY", "VALUE"))
    parser.add_argument("-t", nargs=2, action="append", default=[], metavar=("NOTEBOOK", "SECONDS"))
    parser.add_argument("-r", nargs=2, action="append", default=[], metavar=("NOTEBOOK", "SECONDS"))
    parser.add_argument("--profile", default="full")
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-out"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.notebooks:
        parameters = {key: parse_value(value) for nb, key, value in args.p if nb == name}
        folder = home() / "notebooks" / name
        limit = float(dict(args.t).get(name, 540))
        reserve = float(dict(args.r)[name]) if name in dict(args.r) else None
        start = time.perf_counter()
        status = run_with_limit(name, parameters, args.profile, folder, limit, reserve)
        seconds = time.perf_counter() - start
        with tarfile.open(out / f"{name}.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname=name)
            for store_file in sorted(home().glob("runs.db*")):  # the database and its write-ahead log
                tar.add(store_file, arcname=f"{name}/{store_file.name}")
            for card in sorted(home().glob("artifacts/*/card.json")):  # the model cards (kept weights stay behind)
                tar.add(card, arcname=f"{name}/{card.relative_to(home())}")
        executed = folder / f"{name}-{args.profile}.ipynb"
        conclusion = markdown_outputs(executed) if executed.is_file() else ""
        rows.append((name, status, seconds, conclusion))
        print(f"== {name}: {status} in {seconds:.0f} s", flush=True)
    print("\n| notebook | status | wall s |\n|---|---|---|")
    for name, status, seconds, _ in rows:
        print(f"| {name} | {status} | {seconds:.0f} |")
    for name, _, _, conclusion in rows:
        print(f"\n### {name}\n{conclusion}")


if __name__ == "__main__":
    main()

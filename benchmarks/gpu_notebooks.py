"""Run notebooks in their full profile (or --profile smoke) on a GPU machine, one after another, and bring back what they
measured: for each notebook a tar.gz (executed .ipynb, HTML copy, the run store) and, last, a
table of status and wall time followed by every notebook's generated conclusion.

    PYTHONPATH=. WORKBENCH_GGUF_DIR=/root/wb python benchmarks/gpu_notebooks.py \
        03_recursive_transformers 04_galore_optimizers -p 04_galore_optimizers part pretrain

A notebook that fails does not stop the others; its partly executed copy comes back too.
`-p NOTEBOOK KEY VALUE` passes a parameter to one notebook (repeatable).
"""

from __future__ import annotations

import argparse
import json
import os
import tarfile
import time
import traceback
from pathlib import Path

from workbench.notebook import parse_value, run_notebook
from workbench.paths import home


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
    parser.add_argument("--profile", default="full")
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-out"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.notebooks:
        parameters = {key: parse_value(value) for nb, key, value in args.p if nb == name}
        folder = home() / "notebooks" / name
        start, status = time.perf_counter(), "ok"
        try:
            run_notebook(name, parameters, profile=args.profile, output_dir=folder, output_name=f"{name}-{args.profile}.ipynb", progress=False)
        except Exception:  # noqa: BLE001 - one failed notebook must not stop the rest
            status = "failed"
            traceback.print_exc()
        seconds = time.perf_counter() - start
        with tarfile.open(out / f"{name}.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname=name)
            for store_file in sorted(home().glob("runs.db*")):  # the database and its write-ahead log
                tar.add(store_file, arcname=f"{name}/{store_file.name}")
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

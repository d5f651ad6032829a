"""Running notebooks headlessly (papermill) and setting them up inside a kernel.

`run_notebook` executes a notebook with its own folder as working directory (as JupyterLab
starts it) into the workbench home, with the kernel named explicitly, and writes an HTML copy
in which plotly figures still render offline: `setup()` makes every figure carry an HTML
rendering with plotly.js embedded, since nbconvert silently drops plotly's own output type.
"""

from __future__ import annotations

import ast
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkbenchError
from .paths import home

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PROFILES = ("smoke", "full")


def setup() -> None:
    """Call first in every notebook: offline plotly rendering and one-line workbench errors."""
    import plotly.io as pio

    # plotly_mimetype: JupyterLab's interactive renderer; notebook: text/html with plotly.js
    # embedded once per kernel, which nbconvert keeps, so the HTML copy works offline.
    pio.renderers.default = "plotly_mimetype+notebook"


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise WorkbenchError(f"unknown profile {profile!r}: use 'smoke' (CPU, tiny, about a minute) or 'full' (GPU, real size)")
    return profile


def find_notebook(name: str | Path) -> Path:
    """A notebook by path, or by name in the bundled folder ("00_tour", "tour", "00_tour.ipynb")."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    stem = path.name.removesuffix(".ipynb")
    matches = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if p.stem == stem or p.stem.split("_", 1)[-1] == stem)
    if not matches:
        available = ", ".join(p.stem for p in sorted(NOTEBOOK_DIR.glob("*.ipynb")))
        raise WorkbenchError(f"no notebook {str(name)!r}: give a path to an .ipynb file or one of: {available}")
    return matches[0]


def notebook_parameters(path: str | Path) -> dict[str, object]:
    """The defaults of a notebook's `parameters` cell, by name."""
    import papermill

    found = papermill.inspect_notebook(str(find_notebook(path)))
    return {name: ast.literal_eval(spec["default"]) if _is_literal(spec["default"]) else spec["default"] for name, spec in found.items()}


def _is_literal(text: str) -> bool:
    try:
        ast.literal_eval(text)
        return True
    except (ValueError, SyntaxError):
        return False


def notebook_title(path: Path) -> str:
    """The first heading of the notebook's first markdown cell."""
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    return line.lstrip("# ").strip()
    return path.stem


def list_notebooks() -> list[dict]:
    return [
        {"notebook": p.stem, "title": notebook_title(p), "parameters": notebook_parameters(p)}
        for p in sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    ]


def parse_value(text: str) -> object:
    """A command-line value as Python would read it (3e-4, [8, 32], True), else the string."""
    return ast.literal_eval(text) if _is_literal(text) else text


@dataclass
class NotebookResult:
    notebook: Path
    html: Path | None
    seconds: float


def to_html(notebook: Path) -> Path:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    html = notebook.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return html


def run_notebook(
    notebook: str | Path,
    parameters: dict | None = None,
    profile: str = "smoke",
    output_dir: str | Path | None = None,
    output_name: str | None = None,
    kernel: str = "python3",
    html: bool = True,
    progress: bool = True,
) -> NotebookResult:
    """Execute a notebook with papermill; returns the executed copy (and its HTML) paths.

    Unknown parameter names are refused before anything runs, with the valid names listed.
    """
    import papermill

    source = find_notebook(notebook)
    check_profile(profile)
    parameters = {**(parameters or {}), "profile": profile}
    known = notebook_parameters(source)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise WorkbenchError(f"{source.stem} has no parameter {', '.join(unknown)}: its parameters are {', '.join(known)}")
    folder = Path(output_dir) if output_dir else home() / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / (output_name or f"{source.stem}-{profile}-{time.strftime('%Y%m%d-%H%M%S')}.ipynb")
    start = time.perf_counter()
    papermill.execute_notebook(
        str(source), str(output), parameters=parameters, kernel_name=kernel, cwd=str(source.parent), progress_bar=progress
    )
    seconds = time.perf_counter() - start
    return NotebookResult(output, to_html(output) if html else None, seconds)

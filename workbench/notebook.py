"""Running notebooks headlessly (papermill) and setting them up inside a kernel.

`run_notebook` executes a notebook with its own folder as working directory (as JupyterLab
starts it) into the workbench home, with the kernel named explicitly, keeps the executed copy
small and writes a self-contained HTML copy beside it (`workbench.notebook_html`).
"""

from __future__ import annotations

import ast
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkbenchError
from .notebook_html import compact_notebook, setup_kernel, to_html
from .paths import home

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PROFILES = ("smoke", "full")
# The kernel papermill starts talks to it over local TCP; its warning that this is unencrypted
# names nothing a user of `run` can act on, so only errors are shown.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
SWEEP_VARIABLE = "WORKBENCH_SWEEP"  # run_notebook(sweep=) -> the kernel's environment -> setup() -> runs.join_sweep


def setup() -> None:
    """Call first in every notebook: offline plotly rendering, one-line workbench errors, and
    runs that fail with their cell (see `fail_open_runs`)."""
    from .runs import join_sweep

    setup_kernel()  # figures as plotly JSON; FigureWidgets' final states kept (see workbench.notebook_html)
    join_sweep(os.environ.get(SWEEP_VARIABLE))  # executed as a sweep point: the notebook's runs join the point
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and fail_open_runs not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", fail_open_runs)


def fail_open_runs(result) -> None:
    """IPython's post_run_cell hook: a cell that raised ends the kernel's open runs as "failed"
    (or "interrupted" for Ctrl-C / the stop button), with the exception and the cell's number.

    Without it a run started in one cell and finished in a later one stays "running" for as long
    as the kernel lives, and papermill's kernel shutdown then records it as "interrupted", with no
    error text either way.
    """
    from .runs import finish_open_runs

    error = result.error_in_exec
    if error is None:
        return
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    first_line = (result.info.raw_cell or "").strip().splitlines()[:1] if result.info else []
    where = f"in cell [{result.execution_count}]" + (f" ({first_line[0][:60]!r})" if first_line else "")
    finish_open_runs(status, f"{type(error).__name__}: {error} {where}")


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


class NotebookFailed(Exception):
    """A notebook raised in a cell; carries where the partly executed copy (and its HTML) is."""

    def __init__(self, cell: int | None, error: str, notebook: Path, html: Path | None):
        super().__init__(f"the notebook failed in cell {cell}: {error}")
        self.cell, self.error, self.notebook, self.html = cell, error, notebook, html


@dataclass
class NotebookResult:
    notebook: Path
    html: Path | None
    seconds: float


def _html_if_possible(notebook: Path, wanted: bool) -> Path | None:
    """The HTML copy of a partly executed notebook, if one can be written (best effort: we are already failing)."""
    try:
        return to_html(notebook) if wanted and notebook.is_file() else None
    except Exception:  # noqa: BLE001 -- any converter failure: the notebook's own failure is what to report
        return None


def run_notebook(
    notebook: str | Path,
    parameters: dict | None = None,
    profile: str = "smoke",
    output_dir: str | Path | None = None,
    output_name: str | None = None,
    kernel: str = "python3",
    html: bool = True,
    progress: bool = True,
    sweep: str | None = None,
) -> NotebookResult:
    """Execute a notebook with papermill; returns the executed copy (and its HTML) paths.

    Unknown parameter names are refused before anything runs, with the valid names listed.
    `sweep`: the tag of the sweep point this execution is (the notebook's runs carry it).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

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
    os.environ["WORKBENCH_NOTEBOOK"] = str(output)  # the kernel inherits it: its runs link to this executed copy
    if sweep:
        os.environ[SWEEP_VARIABLE] = sweep  # read by setup() in the kernel
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source), str(output), parameters=parameters, kernel_name=kernel, cwd=str(source.parent), progress_bar=progress,
            extra_arguments=KERNEL_ARGUMENTS,
        )
    except PapermillExecutionError as failure:
        raise NotebookFailed(failure.exec_count, f"{failure.ename}: {failure.evalue}", output, _html_if_possible(output, html)) from None
    seconds = time.perf_counter() - start
    os.environ.pop("WORKBENCH_NOTEBOOK", None)
    os.environ.pop(SWEEP_VARIABLE, None)
    compact_notebook(output)
    return NotebookResult(output, to_html(output) if html else None, seconds)

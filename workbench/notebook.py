"""Running notebooks headlessly (papermill) and setting them up inside a kernel.

`run_notebook` executes a notebook with its own folder as working directory (as JupyterLab
starts it) into the workbench home, with the kernel named explicitly, keeps the executed copy
small and writes a self-contained HTML copy beside it (`workbench.notebook_html`).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import errno
import importlib
import json
import os
import secrets
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .deadline import ENV as DEADLINE_VARIABLE
from .errors import NotebookFailed, NotebookInterrupted, WorkbenchError
from .notebook_html import compact_notebook, setup_kernel, to_html
from .notebook_interrupt import interrupts_to_kernel
from .paths import home

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PROFILES = ("smoke", "full")
# The kernel papermill starts talks to it over local TCP; its warning that this is unencrypted
# names nothing a user of `run` can act on, and on Ctrl-C it logs "KeyboardInterrupt caught in kernel"
# as an error: its own log stays quiet (a cell's error reaches the notebook, a dead kernel the runner).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
SWEEP_VARIABLE = "WORKBENCH_SWEEP"  # run_notebook(sweep=) -> the kernel's environment -> setup() -> runs.join_sweep


def setup() -> None:
    """Call first in every notebook: offline plotly rendering, one-line workbench errors, and
    runs that fail with their cell (see `fail_open_runs`)."""
    from .runs import join_sweep

    setup_kernel()  # figures as plotly JSON; FigureWidgets' final states kept (see workbench.notebook_html)
    quiet_library_warnings()
    join_sweep(os.environ.get(SWEEP_VARIABLE))  # executed as a sweep point: the notebook's runs join the point
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and fail_open_runs not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", fail_open_runs)


# Library warnings that say nothing about a notebook's run, each matched by category and the start of its exact
# message (never a whole category): a reader cannot act on them, and each printed a red box into every executed copy.
LIBRARY_WARNINGS = (
    # peft's get_peft_model reads transformers' deprecated `model.is_gradient_checkpointing` (notebook 04's LoRA arm)
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
    # inductor's advice on float32 matmuls: the training step runs in bfloat16 autocast, and TF32 stays a choice
    (UserWarning, r"TensorFloat32 tensor cores for float32 matrix multiplication available but not enabled"),
)


def quiet_library_warnings() -> None:
    for category, message in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


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
        raise WorkbenchError(
            f"unknown profile {profile!r}: use 'smoke' (CPU, tiny models, 1-3 minutes) or 'full' (GPU, real size)"
        )
    return profile


def find_notebook(name: str | Path) -> Path:
    """A notebook by path, or by name in the bundled folder ("00_tour", "tour", "00_tour.ipynb")."""
    path = Path(name).expanduser()
    if path.is_file():
        return _readable_notebook(path.resolve())
    stem = path.name.removesuffix(".ipynb")
    matches = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if p.stem == stem or p.stem.split("_", 1)[-1] == stem)
    if not matches:
        available = ", ".join(p.stem for p in sorted(NOTEBOOK_DIR.glob("*.ipynb")))
        raise WorkbenchError(f"no notebook {str(name)!r}: give a path to an .ipynb file or one of: {available}")
    return matches[0]


def _readable_notebook(path: Path) -> Path:
    """`path` if it holds a Jupyter notebook (nbformat JSON), else a one-line error."""
    import nbformat

    try:
        nbformat.read(path, as_version=4)
    except (OSError, UnicodeDecodeError, ValueError, nbformat.reader.NotJSONError, AttributeError, KeyError) as error:
        reason = type(error).__name__ if not str(error) else str(error).splitlines()[0][:80]
        raise WorkbenchError(f"{path} is not a Jupyter notebook ({reason}): give an .ipynb file "
                             f"(a jupytext .py pairs with one: jupytext --to ipynb {path.name})") from None
    return path


def check_parameters(stem: str, given: dict, known: dict) -> None:
    """Refuse names the notebook lacks and values of another type than its default (None: any)."""
    if given and not known:
        raise WorkbenchError(f"{stem} has no cell tagged 'parameters', so it takes no -p values: tag the cell that "
                             "sets its defaults 'parameters' (JupyterLab: property inspector, cell tags)")
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise WorkbenchError(f"{stem} has no parameter {', '.join(unknown)}: its parameters are {', '.join(known)}")
    for name, value in given.items():
        default = known[name]
        if default is None or value is None or isinstance(default, str):  # a text default may also be an expression
            continue
        kinds = {float: (int, float), list: (list, tuple), tuple: (list, tuple)}.get(type(default), type(default))
        if not isinstance(value, kinds) or isinstance(value, bool) != isinstance(default, bool):
            kind = type(default).__name__
            raise WorkbenchError(f"{stem}: {name} takes {kind} values like {default!r}, not {value!r}")


def notebook_profile(path: Path) -> type | None:
    """The `Profile` subclass whose `resolve(` the notebook calls, found through the notebook's own
    `from workbench... import XProfile` (the runner names no idea), or None if it resolves none."""
    import nbformat

    from .profiles import Profile

    imports, called = {}, None
    for cell in nbformat.read(path, as_version=4).cells:
        try:
            tree = ast.parse(cell.source) if cell.cell_type == "code" else None
        except SyntaxError:  # IPython magics: not the cells that resolve a profile
            continue
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workbench"):
                imports.update({alias.asname or alias.name: node.module for alias in node.names})
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "resolve":
                if isinstance(node.func.value, ast.Name) and node.func.value.id.endswith("Profile"):
                    called = node.func.value.id
    if called not in imports:
        return None
    found = getattr(importlib.import_module(imports[called]), called, None)
    return found if isinstance(found, type) and issubclass(found, Profile) else None


def check_settings(path: Path, profile: str, parameters: dict) -> None:
    """Resolve the notebook's profile with these parameters here, before a kernel starts: a bad
    value is a one-line error at once, not after the notebook has loaded a model or trained."""
    settings = notebook_profile(path)
    if settings is None:
        return
    fields = {f.name for f in dataclasses.fields(settings)}
    with contextlib.chdir(path.parent):  # a relative corpus path means what it means in the kernel
        settings.resolve(profile, **{key: value for key, value in parameters.items() if key in fields})


def _as_papermill(value: object) -> object:
    """papermill writes only JSON's types as literals (a tuple would arrive as its string): lists."""
    if isinstance(value, (tuple, list)):
        return [_as_papermill(v) for v in value]
    if isinstance(value, dict):
        return {key: _as_papermill(v) for key, v in value.items()}
    return value


def check_kernel(kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    specs = KernelSpecManager()
    try:
        specs.get_kernel_spec(kernel)
    except NoSuchKernel:
        available = ", ".join(sorted(specs.find_kernel_specs()))
        raise WorkbenchError(f"no Jupyter kernel named {kernel!r}: use one of {available} "
                             "(see `jupyter kernelspec list`)") from None


def output_folder(output_dir: str | Path | None) -> Path:
    """The folder executed notebooks go to, created, or a one-line error if it cannot be."""
    folder = Path(output_dir).expanduser() if output_dir else home() / "notebooks"
    if folder.exists() and not folder.is_dir():
        raise WorkbenchError(f"the output folder {folder} is a file: give a folder with --output-dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WorkbenchError(f"cannot create the output folder {folder} ({error.strerror}): "
                             "give a writable one with --output-dir") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WorkbenchError(f"cannot write into the output folder {folder}: give a writable one with --output-dir")
    return folder


def notebook_parameters(path: str | Path) -> dict[str, object]:
    """The defaults of a notebook's `parameters` cell, by name."""
    import papermill

    found = papermill.inspect_notebook(str(find_notebook(path)))
    return {
        name: ast.literal_eval(spec["default"]) if _is_literal(spec["default"]) else spec["default"]
        for name, spec in found.items()
    }


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


JSON_WORDS = {"true": True, "false": False, "null": None}  # `-p train false` as JSON and YAML habits write it


def parse_value(text: str) -> object:
    """A command-line value as Python would read it (3e-4, [8, 32], True; JSON's true, false, null), else the string."""
    if text in JSON_WORDS:
        return JSON_WORDS[text]
    return ast.literal_eval(text) if _is_literal(text) else text


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
        notebook.with_suffix(".html").unlink(missing_ok=True)  # not a truncated copy either
        return None


def _new_output(folder: Path, stem: str) -> Path:
    """A new executed-notebook path, created empty so no other run takes it: two runs of one
    notebook started in the same second must not write one file."""
    while True:
        path = folder / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.ipynb"
        try:
            path.open("x").close()
            return path
        except FileExistsError:
            continue


@contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """Set environment variables (None: unset) for a child process, and restore the caller's after,
    however the child ends: a later run of this process must not inherit a finished notebook's link."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
    deadline: float | None = None,
) -> NotebookResult:
    """Execute a notebook with papermill; returns the executed copy (and its HTML) paths.

    Unknown parameter names are refused before anything runs, with the valid names listed.
    `sweep`: the tag of the sweep point this execution is (the notebook's runs carry it).
    `deadline`: unix seconds past which its experiments start no arm (`workbench.deadline`; a soft limit).
    """
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    source = find_notebook(notebook)
    check_profile(profile)
    parameters = dict(parameters or {})
    if "profile" in parameters:  # it used to be replaced silently by `profile`
        raise WorkbenchError(
            f"set the profile with --profile {parameters['profile']} (profile= in Python), not -p profile"
        )
    known = notebook_parameters(source)
    check_parameters(source.stem, parameters, known)
    check_settings(source, profile, parameters)
    parameters = {key: _as_papermill(value) for key, value in parameters.items()}
    parameters |= {"profile": profile} if "profile" in known else {}
    check_kernel(kernel)
    folder = output_folder(output_dir)
    output = folder / output_name if output_name else _new_output(folder, f"{source.stem}-{profile}")
    # The kernel inherits these: its runs link to this executed copy and join the sweep point.
    inherited = {"WORKBENCH_NOTEBOOK": str(output)} | ({SWEEP_VARIABLE: sweep} if sweep else {})
    inherited |= {DEADLINE_VARIABLE: repr(deadline)} if deadline is not None else {}
    start = time.perf_counter()
    try:
        with _environment(inherited), interrupts_to_kernel() as (manager, kernel_state):
            papermill.execute_notebook(
                str(source), str(output), parameters=parameters, kernel_name=kernel, cwd=str(source.parent),
                progress_bar=progress, extra_arguments=KERNEL_ARGUMENTS, kernel_manager_class=manager,
            )
        seconds = time.perf_counter() - start
        compact_notebook(output)
        return NotebookResult(output, to_html(output) if html else None, seconds)
    except PapermillExecutionError as failure:
        if failure.ename == "KeyboardInterrupt":
            raise NotebookInterrupted(source.stem, output) from None
        error = f"{failure.ename}: {failure.evalue}"
        raise NotebookFailed(failure.exec_count, error, output, _html_if_possible(output, html),
                             bad_input=failure.ename == "WorkbenchError") from None
    except DeadKernelError:
        if kernel_state.interrupted:
            raise NotebookInterrupted(source.stem, output) from None
        error = "its kernel died (killed, or out of memory?)"
        raise NotebookFailed(None, error, output, _html_if_possible(output, html)) from None
    except KeyboardInterrupt:  # before the kernel started, or a second Ctrl-C
        raise NotebookInterrupted(source.stem, output) from None
    except OSError as error:
        if error.errno == errno.ENOSPC:  # a full disk: no truncated notebook or HTML copy is left to mislead
            for partial in (output, output.with_suffix(".html")):
                partial.unlink(missing_ok=True)
        raise

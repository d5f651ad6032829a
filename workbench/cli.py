"""The command line: `python -m workbench {run,list,...}`.

Bad input ends in one line that says what is wrong and how to fix it, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sqlite3
import sys

from .deadline import soft_deadline
from .errors import NotebookFailed, NotebookInterrupted, WorkbenchError


def _parameters(pairs: list[list[str]] | None) -> dict[str, object]:
    from .notebook import parse_value

    parameters: dict[str, object] = {}
    for key, value in pairs or []:
        if key in parameters:  # a later -p used to replace an earlier one silently
            raise WorkbenchError(f"-p {key} is given twice ({parameters[key]!r} and {parse_value(value)!r}): give it "
                                 f"once, or try several values with: python -m workbench sweep NOTEBOOK -p {key} V1 V2")
        parameters[key] = parse_value(value)
    return parameters


def _check_device(profile: str, allow_cpu: bool) -> None:
    """The full profile is sized for a GPU: on a CPU it would run for hours, so it needs asking for."""
    if profile != "full" or allow_cpu:
        return
    import torch

    if not torch.cuda.is_available():
        raise WorkbenchError("--profile full is sized for a GPU and this machine has none (it would run for hours on "
                             "the CPU): use --profile smoke, or add --allow-cpu to run it anyway")


def cmd_run(args: argparse.Namespace) -> int:
    from .notebook import run_notebook

    parameters = _parameters(args.parameter)
    _check_device(args.profile, args.allow_cpu)
    deadline = soft_deadline(args.time_limit) if args.time_limit is not None else None
    result = run_notebook(args.notebook, parameters, profile=args.profile, output_dir=args.output_dir,
                          kernel=args.kernel, deadline=deadline)
    print(f"executed notebook: {result.notebook}")
    print(f"HTML copy:         {result.html}")
    print(f"took {result.seconds:.1f} s")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .notebook import list_notebooks

    for entry in list_notebooks():
        print(f"{entry['notebook']}: {entry['title']}")
        for name, default in entry["parameters"].items():
            print(f"    {name} = {default!r}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .notebook import parse_value
    from .sweep import grid, load_points, run_sweep

    axes = {}
    for key, *values in args.parameter or []:
        if not values:
            raise WorkbenchError(f"-p {key} has no values: write -p {key} VALUE [VALUE ...]")
        if key in axes:
            raise WorkbenchError(f"-p {key} is given twice: put all its values in one -p {key} VALUE [VALUE ...]")
        axes[key] = [parse_value(value) for value in values]
    if bool(axes) == bool(args.points):
        raise WorkbenchError(
            "give the grid with -p NAME VALUE [VALUE ...] (repeatable) or a file of points with --points FILE, "
            "one of the two"
        )
    points = load_points(args.points) if args.points else grid(axes)
    gpus = args.gpus.split(",") if args.gpus else None
    _check_device(args.profile, args.allow_cpu)
    # Ctrl-C stops the sweep cleanly, even from a background job
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # and so does `kill`
    print(
        f"sweep over {len(points)} points, {args.parallel} at a time ({args.backend}); "
        "watch it: python -m workbench dashboard"
    )
    result = run_sweep(
        args.notebook, points, parallel=args.parallel, profile=args.profile, backend=args.backend, gpus=gpus
    )
    for outcome in result.outcomes:
        params = " ".join(f"{k}={v}" for k, v in points[outcome["index"]].items())
        error = f"  {outcome['error']}" if outcome["error"] else ""
        print(
            f"  point {outcome['index']:>3} run {outcome['run_id']:>5} {outcome['status']:<11} "
            f"{float(outcome['seconds']):7.1f} s  {params}{error}"
        )
    counts = result.counts()
    print(
        f"sweep {result.sweep}: {counts['finished']} finished, {counts['failed']} failed, "
        f"{counts['interrupted']} interrupted, "
        f"{len(points) - len(result.outcomes)} not started, in {result.seconds:.1f} s"
    )
    if result.interrupted:
        return 130
    return 1 if counts["failed"] else 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .dashboard import serve

    return serve(port=args.port, address=args.address, show=args.show, token=args.token,
                 allow_origins=args.allow_origin)


def cmd_launch(args: argparse.Namespace) -> int:
    import subprocess

    from .launch import command

    argv = args.experiment
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise WorkbenchError(
            "name an experiment: python -m workbench launch --nproc N pretrain [--size 47m --steps 500 ...]"
        )
    return subprocess.call(command(args.nproc, argv))


def cmd_corpus(args: argparse.Namespace) -> int:
    from .data import CODE_CORPUS, token_splits
    from .models import load_tokenizer

    tokenizer = load_tokenizer()
    if args.name == CODE_CORPUS:
        from .pycode import describe

        print(describe(tokenizer))
    else:
        splits = token_splits(args.name, tokenizer)
        print(f"{splits.name}: {splits.n_train:,} training tokens, {splits.n_val:,} held-out tokens")
    if args.profiles:
        n_train = {}  # by corpus: each is tokenised (or read from its cache) once
        for notebook, profile in _full_profiles():
            budgets = {k: getattr(profile, k) for k in dir(type(profile)) if k.endswith("tokens_per_arm")}
            if not budgets:
                continue
            if profile.corpus not in n_train:
                n_train[profile.corpus] = token_splits(profile.corpus, tokenizer).n_train
            per_arm = ", ".join(
                f"{key.removesuffix('_per_arm').replace('_', ' ')} {tokens:,} per arm = "
                f"{tokens / n_train[profile.corpus]:.2f} epochs" for key, tokens in budgets.items()
            )
            print(f"  {notebook} (full, {profile.corpus}, {n_train[profile.corpus]:,} training tokens): {per_arm}")
    return 0


def _full_profiles():
    """(notebook, its full profile) for every notebook that resolves a Profile: the class is found
    through the notebook's own `from workbench... import XProfile` (the runner knows no idea)."""
    import ast
    import importlib

    from .notebook import NOTEBOOK_DIR

    for path in sorted(NOTEBOOK_DIR.glob("[0-9]*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workbench"):
                for alias in node.names:
                    if alias.name.endswith("Profile"):
                        yield path.stem, getattr(importlib.import_module(node.module), alias.name).resolve("full")


def _kept(notebook) -> str:
    """Which runs of an interrupted notebook the store kept, in words."""
    from .runs import store

    try:
        ids = store().notebook_runs(notebook)
    except (WorkbenchError, sqlite3.Error):
        return "its runs are in the store as interrupted"
    if not ids:
        return "no run had started"
    return f"run{'s' * (len(ids) > 1)} {', '.join(f'#{i}' for i in ids)} kept as interrupted"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own prints the whole usage first: one line instead
        self.exit(2, f"error: {message} (see: {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m workbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute a notebook with papermill into the runs folder")
    run.add_argument("notebook", help="path, or a bundled notebook's name (00_tour, attention_similarity, ...)")
    run.add_argument(
        "-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"), help="set a notebook parameter"
    )
    run.add_argument("--profile", default="smoke", choices=["smoke", "full"])
    run.add_argument(
        "--output-dir", default=None, help="where the executed notebook goes (default: $WORKBENCH_HOME/notebooks)"
    )
    run.add_argument("--kernel", default="python3")
    run.add_argument("--allow-cpu", action="store_true", help="run --profile full even without a GPU (hours)")
    run.add_argument(
        "--time-limit", type=float, default=None, metavar="SECONDS",
        help="soft: start no training arm that would end past SECONDS minus 15%% kept for the report cells; "
        "the skipped arms are listed in the conclusion",
    )  # fmt: skip
    run.set_defaults(handler=cmd_run)

    listing = commands.add_parser("list", help="show the notebooks and their parameters")
    listing.set_defaults(handler=cmd_list)

    sweep = commands.add_parser(
        "sweep", help="run a notebook over a grid of parameters, N points at a time, each a run"
    )
    sweep.add_argument("notebook", help="path, or a bundled notebook's name")
    sweep.add_argument("-p", "--parameter", nargs="+", action="append", metavar="KEY VALUE",
                       help="a swept parameter and its values: -p lr 1e-3 3e-4 (repeat for a grid)")
    sweep.add_argument("--points", default=None, help="a JSON file with a list of parameter objects, instead of -p")
    sweep.add_argument("--parallel", type=int, default=1, help="points run at once (default 1)")
    sweep.add_argument("--profile", default="smoke", choices=["smoke", "full"])
    sweep.add_argument(
        "--backend",
        default="local",
        choices=["local", "ray"],
        help="local processes, or a Ray cluster ($RAY_ADDRESS, else single-machine Ray; pip install 'workbench[ray]')",
    )
    sweep.add_argument("--allow-cpu", action="store_true", help="run --profile full even without a GPU (hours)")
    sweep.add_argument(
        "--gpus", default=None, help="local backend: GPU ids to hand out, one per running point (0,1,2,3)"
    )
    sweep.set_defaults(handler=cmd_sweep)

    dashboard = commands.add_parser("dashboard", help="serve the live comparison dashboard of the run store (Panel)")
    dashboard.add_argument("--port", type=int, default=0, help="default: 5006 if free, else any free port")
    dashboard.add_argument("--address", default="127.0.0.1", help="interface to bind (default: this machine only)")
    dashboard.add_argument("--show", action="store_true", help="open it in the browser")
    dashboard.add_argument(
        "--token",
        default=None,
        help="off 127.0.0.1: the login token (default: $WORKBENCH_DASHBOARD_TOKEN, else random, printed)",
    )
    dashboard.add_argument(
        "--allow-origin",
        action="append",
        default=None,
        metavar="HOST[:PORT]",
        help="off 127.0.0.1: a browser origin to accept (repeatable; default: this host's names)",
    )
    dashboard.set_defaults(handler=cmd_dashboard)
    launch = commands.add_parser("launch", help="train on N GPUs (or CPU processes) with torchrun, logged from rank 0",
                                 description="python -m workbench launch --nproc 2 pretrain --size 47m --steps 500")
    launch.add_argument("--nproc", type=int, default=1, help="processes, one per GPU (default 1)")
    launch.add_argument(
        "experiment", nargs=argparse.REMAINDER, help="pretrain [options]: see torchrun -m workbench.launch pretrain -h"
    )
    launch.set_defaults(handler=cmd_launch)
    corpus = commands.add_parser("corpus", help="build (or read from the cache) a corpus and print its token counts")
    corpus.add_argument("name", help="python-code, python-docs, a text file or folder, or hf:DATASET")
    corpus.add_argument("--profiles", action="store_true",
                        help="also print every notebook's full-profile tokens per arm and epochs of its corpus")
    corpus.set_defaults(handler=cmd_corpus)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except WorkbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NotebookInterrupted as stop:
        print(f"interrupted: {stop.notebook}, {_kept(stop.output)} (partly executed copy: {stop.output})",
              file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # the environment: a full disk, a folder that vanished, no permission
        hint = "free some space" if error.errno == errno.ENOSPC else "check the path and its permissions"
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}: {hint}, or set WORKBENCH_HOME to another folder",
              file=sys.stderr)
        return 2
    except sqlite3.Error as error:  # the run store: full disk, locked by a stuck process
        from .paths import home
        from .runs import disk_full

        cause = "free some space on its disk" if "disk is full" in str(error) or disk_full(home()) else \
            "retry, or stop the process holding it"
        print(f"error: the run store failed ({error}): {cause}", file=sys.stderr)
        return 2
    except NotebookFailed as error:
        html = f" (HTML: {error.html})" if error.html else ""
        if error.bad_input:  # a WorkbenchError raised in a cell: a parameter the user can fix, one line
            print(f"error: {error.error.removeprefix('WorkbenchError: ')} (in cell {error.cell} of the notebook; "
                  f"partly executed copy: {error.notebook})", file=sys.stderr)
            return 2
        print(f"error: {error}\n  the partly executed notebook: {error.notebook}{html}", file=sys.stderr)
        return 1

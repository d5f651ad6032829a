"""The command line: `python -m workbench {run,list,...}`.

Bad input ends in one line that says what is wrong and how to fix it, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .errors import WorkbenchError


def _parameters(pairs: list[list[str]] | None) -> dict[str, object]:
    from .notebook import parse_value

    return {key: parse_value(value) for key, value in pairs or []}


def cmd_run(args: argparse.Namespace) -> int:
    from .notebook import run_notebook

    result = run_notebook(args.notebook, _parameters(args.parameter), profile=args.profile, output_dir=args.output_dir, kernel=args.kernel)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute a notebook with papermill into the runs folder")
    run.add_argument("notebook", help="path, or a bundled notebook's name (00_tour, attention_similarity, ...)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"), help="set a notebook parameter")
    run.add_argument("--profile", default="smoke", choices=["smoke", "full"])
    run.add_argument("--output-dir", default=None, help="where the executed notebook goes (default: $WORKBENCH_HOME/notebooks)")
    run.add_argument("--kernel", default="python3")
    run.set_defaults(handler=cmd_run)

    listing = commands.add_parser("list", help="show the notebooks and their parameters")
    listing.set_defaults(handler=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except WorkbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        from papermill.exceptions import PapermillExecutionError

        if isinstance(error, PapermillExecutionError):
            print(f"error: the notebook failed in cell {error.exec_count}: {error.ename}: {error.evalue}", file=sys.stderr)
            return 1
        raise

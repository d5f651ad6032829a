"""EchoAtt on one GPU in one go: every arm of the "full" profile, the table printed last.

    WORKBENCH_GGUF_DIR=/root/wb PYTHONPATH=. python benchmarks/echoatt_gpu.py            # ~5 min on one H200
    python benchmarks/echoatt_gpu.py --profile smoke                                     # the same on a CPU, tiny

Arms: SmolLM2-135M teacher as is (sdpa and eager), teacher continued-trained on
the same tokens, and for 6 and 12 shared layers: similarity-chosen, random (3 draws), last inner
layers, each distilled from the bf16 teacher. Writes echoatt_results.{json,md} to $OUT (if set)
and, with --results FILE, replaces the "EchoAtt" section of that markdown file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from workbench.echoatt.experiment import run_experiment
from workbench.echoatt.report import display_table, results_markdown


def replace_section(path: Path, section: str) -> None:
    """Put `section` (starting "## EchoAtt") into `path`, replacing an earlier EchoAtt section."""
    text = path.read_text() if path.is_file() else "# Measured results\n"
    pattern = re.compile(r"## EchoAtt\b.*?(?=\n## |\Z)", re.S)
    text = (
        pattern.sub(lambda _: section.rstrip("\n") + "\n", text)
        if pattern.search(text)
        else text.rstrip("\n") + "\n\n" + section
    )
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", choices=["smoke", "full"])
    parser.add_argument("--steps", type=int, default=None, help="training steps per arm (full: 200)")
    parser.add_argument("--random-draws", type=int, default=None, help="random arms per budget (full: 3)")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="markdown file whose EchoAtt section is replaced (e.g. docs/results.md)",
    )
    args = parser.parse_args()

    start = time.perf_counter()
    result = run_experiment(args.profile, steps=args.steps, random_draws=args.random_draws)
    markdown = results_markdown(result.table, result.profile, result.device, result.seeds)
    markdown += f"\nWall time of the whole run: {time.perf_counter() - start:.0f} s (sweep `{result.sweep}`).\n"
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "echoatt_results.md").write_text(markdown)
        (Path(out) / "echoatt_results.json").write_text(
            json.dumps(
                {
                    "table": result.table.to_dict(orient="records"),
                    "similarity": result.similarity.tolist(),
                    "sweep": result.sweep,
                },
                default=str,
            )
        )
    if args.results:
        replace_section(args.results, markdown)
    with __import__("pandas").option_context(
        "display.width", 250, "display.max_columns", 30, "display.max_colwidth", 40
    ):
        print(display_table(result.table).drop(columns=["attention kernel"]).to_string(index=False))
    print()
    print(markdown)


if __name__ == "__main__":
    main()

"""The README's notebook table names every bundled notebook, with a measured smoke time and its paper."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rows() -> dict[str, list[str]]:
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(\d\d_\w+)` \|(.*)\|$", text, flags=re.M)
    return {name: [cell.strip() for cell in cells.split("|")] for name, cells in rows}


def test_every_notebook_has_a_row_with_a_measured_smoke_time():
    rows = _rows()
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks and [n for n in notebooks if n not in rows] == []
    for name in notebooks:
        _what, paper, smoke, _full, _gpu = rows[name]
        measured = re.fullmatch(r"\d+ s", smoke) or re.fullmatch(r"not measured \(.+\)", smoke)  # a number, or why not
        assert measured, f"{name}: smoke time {smoke!r} is neither a measured number of seconds nor says why not"
        assert paper.startswith("—") or "arXiv:" in paper, f"{name}: {paper!r} names no arXiv id"

"""What may import what (docs/architecture.md), checked by parsing every module's imports.

- the core (`workbench/*.py`) imports only the core: no lab, no idea;
- the attention lab (`workbench/attention/`) imports the core;
- an idea (`workbench/<idea>/`) imports the core and the lab, never another idea;
- nothing imports a notebook or a test.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "workbench"
LAB = {"attention"}
BESIDE_CORE = {"dashboard"}  # a folder of the dashboard's modules: the same layer as `workbench/*.py`
SUBPACKAGES = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
IDEAS = SUBPACKAGES - LAB - BESIDE_CORE
MODULES = sorted(PACKAGE.rglob("*.py"))


def layer(path: Path) -> str:
    """ "core", "lab" or the idea's name, for a module of the package."""
    parts = path.relative_to(PACKAGE).parts
    if len(parts) == 1 or parts[0] in BESIDE_CORE:
        return "core"
    return "lab" if parts[0] in LAB else parts[0]


def imported(path: Path) -> set[str]:
    """Dotted names (under `workbench`) that `path` imports anywhere, lazily inside functions too."""
    package = ["workbench", *path.relative_to(PACKAGE).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}  # `from . import echoatt`
    return {name for name in names if name == "workbench" or name.startswith("workbench.")}


def target_layer(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) < 2:
        return None
    if parts[1] in LAB:
        return "lab"
    if parts[1] in IDEAS:
        return parts[1]
    return "core" if (PACKAGE / f"{parts[1]}.py").is_file() or parts[1] in BESIDE_CORE else None


def allowed(source: str, target: str) -> bool:
    if source == "core":
        return target == "core"
    if source == "lab":
        return target in ("core", "lab")
    return target in ("core", "lab", source)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path):
    source = layer(path)
    wrong = sorted(name for name in imported(path) if (t := target_layer(name)) and not allowed(source, t))
    assert not wrong, f"{path.relative_to(PACKAGE)} ({source}) must not import {wrong}: see docs/architecture.md"
    assert not any(".notebooks" in name or ".tests" in name for name in imported(path))


def test_the_parser_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    module = PACKAGE / "data.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "def f():\n    from .echoatt import report\n")
    assert "workbench.echoatt" in imported(module) and target_layer("workbench.echoatt.report") == "echoatt"
    assert not allowed("core", "echoatt") and not allowed("lab", "echoatt") and allowed("echoatt", "lab")

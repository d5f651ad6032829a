"""One profile mechanism: every notebook resolves its parameters through a `Profile` subclass.

The notebook's `parameters` cell (what papermill and `python -m workbench run -p` set) may only
name `profile` and fields of the Profile class the notebook resolves, and must hand each of them to
`XProfile.resolve(profile, name=name, ...)`: a parameter the profile does not know would be ignored
silently, or refused only when the notebook runs.
"""

import ast
import dataclasses
import importlib
import json

import pytest

from workbench import notebook
from workbench.profiles import Profile

NOTEBOOKS = sorted(notebook.NOTEBOOK_DIR.glob("*.ipynb"))
NO_SETTINGS = {"07_compare"}  # reads the run store; its parameters choose what to show, not an experiment


def code_cells(path) -> list[tuple[list[str], str]]:
    cells = json.loads(path.read_text())["cells"]
    return [(c["metadata"].get("tags", []), "".join(c["source"])) for c in cells if c["cell_type"] == "code"]


def resolved_profile(cells: list[tuple[list[str], str]]) -> tuple[type[Profile], ast.Call]:
    """The Profile subclass whose `resolve(` the notebook calls (found through its import), and the call."""
    imports, calls = {}, []
    for _, source in cells:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                imports.update({alias.asname or alias.name: node.module for alias in node.names})
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "resolve":
                if isinstance(node.func.value, ast.Name) and node.func.value.id.endswith("Profile"):
                    calls.append(node)
    assert len(calls) == 1, "the notebook should call XProfile.resolve(profile, ...) exactly once"
    name = calls[0].func.value.id
    assert name in imports, f"{name} must be imported with `from workbench... import {name}`"
    cls = getattr(importlib.import_module(imports[name]), name)
    assert issubclass(cls, Profile)
    return cls, calls[0]


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem not in NO_SETTINGS], ids=lambda p: p.stem)
def test_parameters_are_fields_of_the_resolved_profile(path):
    cells = code_cells(path)
    (parameters,) = [source for tags, source in cells if "parameters" in tags]
    names = {t.id for node in ast.parse(parameters).body if isinstance(node, ast.Assign) for t in node.targets}
    cls, call = resolved_profile(cells)
    fields = {f.name for f in dataclasses.fields(cls)} - {"name"}
    assert "profile" in names
    assert names - {"profile"} <= fields, f"not settings of {cls.__name__}: {sorted(names - {'profile'} - fields)}"
    passed = {keyword.arg for keyword in call.keywords}
    assert names - {"profile"} <= passed, f"parameters not handed to resolve: {sorted(names - {'profile'} - passed)}"
    assert isinstance(call.args[0], ast.Name) and call.args[0].id == "profile"
    for preset in cls.presets:
        cls.resolve(preset)  # every preset builds


def test_the_checker_finds_the_profile_and_refuses_a_stray_parameter(tmp_path):
    source = {
        "cells": [
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": 'profile = "smoke"\nstepz = None\n'},
            {"cell_type": "code", "metadata": {}, "source": "from workbench.tour import TourProfile\n"
             "settings = TourProfile.resolve(profile, stepz=stepz)\n"},
        ]
    }  # fmt: skip
    path = tmp_path / "stray.ipynb"
    path.write_text(json.dumps(source))
    with pytest.raises(AssertionError, match="stepz"):
        test_parameters_are_fields_of_the_resolved_profile(path)

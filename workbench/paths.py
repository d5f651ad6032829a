"""Where the workbench keeps things.

- `home()`: the run store and executed notebooks ($WORKBENCH_HOME, default ~/.workbench).
- `cache_dir()`: derived data that can be rebuilt: dequantised models, tokenised corpora
  ($WORKBENCH_CACHE, default ~/.cache/workbench). Never inside the repository: the float32 copy
  of the default model alone is over 500 MB.
"""

import os
from pathlib import Path


def home() -> Path:
    path = Path(os.environ.get("WORKBENCH_HOME", Path.home() / ".workbench")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path

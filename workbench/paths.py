"""Where the workbench keeps things.

- `home()`: the run store and executed notebooks ($WORKBENCH_HOME, default ~/.workbench), private
  to its user (0700) when the workbench creates it: notebooks' outputs, parameters and paths are
  nobody else's business on a shared machine.
- `cache_dir()`: derived data that can be rebuilt: dequantised models, tokenised corpora
  ($WORKBENCH_CACHE, default ~/.cache/workbench). Never inside the repository: the float32 copy
  of the default model alone is over 500 MB.
"""

import os
from pathlib import Path

from .errors import WorkbenchError


def home() -> Path:
    path = Path(os.environ.get("WORKBENCH_HOME", Path.home() / ".workbench")).expanduser()
    if not path.is_dir():
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)  # mkdir's mode is filtered through the umask
        except OSError as error:
            raise WorkbenchError(f"cannot create the workbench home {path} ({error.strerror}): "
                                 "set WORKBENCH_HOME to a folder you can write") from None
    elif "WORKBENCH_HOME" not in os.environ and path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
        path.chmod(0o700)  # the default home, made readable to others by an older version
    return path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path

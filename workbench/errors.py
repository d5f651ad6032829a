"""One-line errors for bad input.

A user who passes an unknown model name or a missing file should read what is wrong and how to
fix it, not a deep traceback. `WorkbenchError` carries that one line; the command line prints it
alone, and in IPython/Jupyter `_render_traceback_` makes the kernel show it alone too (the cell
still fails, so papermill still stops on it).
"""


class WorkbenchError(Exception):
    """Bad input or environment: the message says what is wrong and how to fix it."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]

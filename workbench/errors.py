"""One-line errors for bad input, and the failure of a notebook run.

A user who passes an unknown model name or a missing file should read what is wrong and how to
fix it, not a deep traceback. `WorkbenchError` carries that one line; the command line prints it
alone, and in IPython/Jupyter `_render_traceback_` makes the kernel show it alone too (the cell
still fails, so papermill still stops on it).
"""


class WorkbenchError(Exception):
    """Bad input or environment: the message says what is wrong and how to fix it."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class NotebookFailed(Exception):
    """A notebook raised in a cell (or its kernel died); carries where the partly executed copy is.

    Not bad input in general (a bug, a crash), so the command line exits 1 and shows the path;
    `bad_input` marks a cell that raised a WorkbenchError, which the command line treats as its own.
    """

    def __init__(self, cell: int | None, error: str, notebook, html=None, bad_input: bool = False):
        super().__init__(f"the notebook failed in cell {cell}: {error}" if cell else f"the notebook failed: {error}")
        self.cell, self.error, self.notebook, self.html, self.bad_input = cell, error, notebook, html, bad_input


class NotebookInterrupted(KeyboardInterrupt):
    """A notebook stopped by Ctrl-C (its kernel interrupted, its runs kept as "interrupted").

    A KeyboardInterrupt, so whatever stops on Ctrl-C still does; carries the notebook and its partly
    executed copy, so the command line can say which runs were kept.
    """

    def __init__(self, notebook, output):
        super().__init__(f"{notebook} interrupted")
        self.notebook, self.output = notebook, output

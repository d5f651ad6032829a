"""Ctrl-C while a notebook executes: the kernel's cell is interrupted and the kernel shut down in order.

jupyter_client starts the kernel in a session of its own, so a terminal's Ctrl-C reaches only the
process running papermill. Left to the default handler, KeyboardInterrupt unwinds papermill's event
loop in the middle of a request: the kernel is told to shut down while it still answers the
interrupted cell, and prints `ZMQError: Socket operation on non-socket` (or dies mid-reply).

Within `interrupts_to_kernel()` the first SIGINT is passed on to the kernel instead. Its cell raises
KeyboardInterrupt (`workbench.notebook.fail_open_runs` ends its runs as "interrupted"), papermill
receives that as the cell's error and shuts the kernel down after it has answered. A kernel that has
not answered after `GRACE_S` (between two cells, where a kernel ignores SIGINT, or inside a cell
that catches it) is interrupted again, up to `RETRIES` times; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from jupyter_client.manager import AsyncKernelManager

GRACE_S = 5.0
RETRIES = 3


class _Kernel:
    """The kernel process of one execution, once started, and whether it was asked to stop."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.interrupted = False
        self.done = threading.Event()

    def interrupt(self, retries: int) -> None:
        if self.done.is_set() or self.pid is None:
            return
        try:
            os.killpg(self.pid, signal.SIGINT)  # its own session: the kernel and what it started
        except (ProcessLookupError, PermissionError):
            return
        if retries:
            timer = threading.Timer(GRACE_S, self.interrupt, (retries - 1,))
            timer.daemon = True
            timer.start()


@contextmanager
def interrupts_to_kernel() -> Iterator[tuple[type[AsyncKernelManager], _Kernel]]:
    """Yield the kernel manager class to hand papermill (`kernel_manager_class=`) and the kernel's
    state (`.interrupted`); SIGINT interrupts that kernel while inside (main thread only)."""
    kernel = _Kernel()

    class TrackedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            await super()._async_launch_kernel(kernel_cmd, **kw)
            kernel.pid = self.provisioner.pid

    def on_sigint(signum, frame) -> None:
        if kernel.pid is None or kernel.interrupted:  # no kernel yet, or a second Ctrl-C: stop here and now
            raise KeyboardInterrupt
        kernel.interrupted = True
        kernel.interrupt(RETRIES)

    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield TrackedKernelManager, kernel
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield TrackedKernelManager, kernel
    finally:
        kernel.done.set()
        signal.signal(signal.SIGINT, previous)

"""SIGINT/SIGTERM as a request to stop cleanly: checkpoint, mark the run, then exit.

The handler only records the signal; the loop checks it between steps, so a checkpoint is never
written from inside a signal handler or in the middle of an optimizer step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the run saved a checkpoint and was marked ``interrupted``."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class StopRequest:
    """The signal that asked the run to stop, if one has (``signum`` is None until then)."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """SIGINT/SIGTERM set the yielded request's ``signum``; the old handlers come back at
    once, so a second signal acts immediately. Outside the main thread (where handlers cannot
    be set) the request never fires."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def request_stop(signum: int, frame: object) -> None:
        request.signum = signum
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    for sig in previous:
        signal.signal(sig, request_stop)
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

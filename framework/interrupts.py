"""SIGINT, SIGTERM and SIGHUP unwind the work, even where library code swallows the exception.

The handler raises :class:`~framework.errors.Interrupted` and remembers the signal; commit points
(the moment an output directory is moved into place) call :func:`check`, so an interruption that
some converter caught with a bare ``except`` still stops the run before anything is written. Inside
:func:`deferred` (native model converters) a signal is only remembered and raised when the block ends.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator

from framework.errors import Interrupted

_pending: list[int] = []
_deferring = 0  # depth of deferred() blocks


def _raise(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


def _handler(signum: int, frame: Any) -> None:
    _pending.append(signum)
    if not _deferring:
        _raise(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Remember signals that arrive inside the block and raise them when it ends.

    Native converters (litert-torch, torch.onnx) call back into Python; an exception raised in such a
    callback by the signal handler crashed the process (SIGSEGV, output left behind) about one time in ten
    on a loaded machine. Deferred, the conversion finishes (seconds) and the run then unwinds cleanly.
    """
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring:
        check()


def install() -> None:
    """Make SIGINT raise KeyboardInterrupt and SIGTERM / SIGHUP raise :class:`Interrupted` in this process,
    remembering each (the CLI does this at start)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _handler)


def check() -> None:
    """Raise again for a signal that arrived since start, even if its first raise was swallowed."""
    if _pending:
        _raise(_pending[0])


def pending() -> int | None:
    """The first signal that arrived since start, if any (an error raised while unwinding from it is
    reported as the interruption it is)."""
    return _pending[0] if _pending else None

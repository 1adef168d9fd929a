"""SIGINT, SIGTERM and SIGHUP unwind the work, even where library code swallows the exception.

The handler raises :class:`~framework.errors.Interrupted` and remembers the signal; commit points
(the moment an output directory is moved into place) call :func:`check`, so an interruption that
some converter caught with a bare ``except`` still stops the run before anything is written.
"""

from __future__ import annotations

import signal
from typing import Any

from framework.errors import Interrupted

_pending: list[int] = []


def _raise(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


def _handler(signum: int, frame: Any) -> None:
    _pending.append(signum)
    _raise(signum)


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

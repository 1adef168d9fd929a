"""SIGTERM and SIGHUP unwind the work like Ctrl-C, even where library code swallows the exception.

The handler raises :class:`~framework.errors.Interrupted` and remembers the signal; commit points
(the moment an output directory is moved into place) call :func:`check`, so an interruption that
some converter caught with a bare ``except`` still stops the run before anything is written.
"""

from __future__ import annotations

import signal
from typing import Any

from framework.errors import Interrupted

_pending: list[int] = []


def _handler(signum: int, frame: Any) -> None:
    _pending.append(signum)
    raise Interrupted(signum)


def install() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Interrupted` in this process (the CLI does this at start)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _handler)


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived since start, even if its first raise was swallowed."""
    if _pending:
        raise Interrupted(_pending[0])

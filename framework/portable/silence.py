"""Silencing chatter that native code writes straight to file descriptors 1 and 2."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Callable, Iterator

from .errors import ServingError


@contextlib.contextmanager
def captured() -> Iterator[Callable[[], str]]:
    """Send fd 1 and 2 (and Python's stdout/stderr) to a temporary file while the block runs; yields a
    function that returns what was written there so far (native code's messages included)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:

        def text() -> str:
            sink.seek(0)
            return sink.read().decode(errors="replace")

        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextlib.contextmanager
def quiet(what: str = "model conversion") -> Iterator[None]:
    """Silence fd 1 and 2 (and Python's stdout/stderr) while the block runs.

    An exception other than :class:`ServingError` becomes one, carrying the tail of what was
    captured, prefixed with ``what failed``.
    """
    with captured() as text:
        try:
            yield
        except ServingError:
            raise
        except Exception as exc:
            raise ServingError(f"{what} failed: {type(exc).__name__}: {exc}\n{text()[-1500:]}".rstrip()) from exc

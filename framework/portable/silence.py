"""Silencing chatter that native code writes straight to file descriptors 1 and 2."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Iterator

from .errors import ServingError


@contextlib.contextmanager
def quiet(what: str = "model conversion") -> Iterator[None]:
    """Send fd 1 and 2 (and Python's stdout/stderr) to a sink while the block runs.

    An exception other than :class:`ServingError` becomes one, carrying the tail of what was
    captured, prefixed with ``what failed``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        except ServingError:
            raise
        except Exception as exc:
            sink.seek(0)
            tail = sink.read().decode(errors="replace")[-1500:]
            raise ServingError(f"{what} failed: {type(exc).__name__}: {exc}\n{tail}".rstrip()) from exc
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)

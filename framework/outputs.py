"""Writing output directories safely: all files appear together or none do, one writer at a time."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from framework import interrupts
from framework.errors import VadblocksError

TMP_PREFIX = ".vadblocks-tmp-"
LOCK_NAME = ".vadblocks-lock"
_held: set[str] = set()  # lock paths this process holds (the lock is re-entrant within a process)


def _lock_path(out: Path) -> Path:
    """Inside an existing out directory (e.g. a mounted volume), else beside the one to be created."""
    return out / LOCK_NAME if out.is_dir() else out.parent / f".{out.name}{LOCK_NAME}"


@contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold the out directory for this process; a second vadblocks writing it meanwhile gets a clear error.

    The lock is an advisory ``flock`` on a lock file that is removed on release (the kernel drops the
    lock of a killed process, so a stale file never blocks the next run).
    """
    out = Path(out).absolute()
    path = _lock_path(out)
    if str(path) in _held:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise VadblocksError(
                        f"another vadblocks process is writing {out}; wait for it to finish or "
                        "choose another --out-directory"
                    ) from None
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:  # not a file that the previous holder removed after we opened it
                break
            os.close(fd)
    except OSError as exc:
        raise VadblocksError(f"cannot write to {out}: {exc.strerror or exc}") from None
    _held.add(str(path))
    try:
        yield
    finally:
        _held.discard(str(path))
        try:
            path.unlink()
        except OSError:
            pass
        os.close(fd)


@contextmanager
def atomic_directory(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success its files land in ``out``, on error nothing does.

    When ``out`` already exists (e.g. a mounted volume) the temporary folder lives inside it
    and each file is renamed into place; otherwise a sibling folder is renamed to ``out``.
    A failed write (a full disk, permissions) becomes one :class:`VadblocksError`; an interruption
    (Ctrl-C, SIGTERM) removes the temporary folder before it propagates.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VadblocksError(f"output {out} exists and is not a directory")
    with output_lock(out):
        existed = out.is_dir()
        parent = out if existed else out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the result should look like any new folder
        except OSError as exc:
            raise VadblocksError(f"cannot write to {parent}: {exc.strerror or exc}") from None
        try:
            yield tmp
            interrupts.check()  # a signal whose exception a library swallowed still stops the commit
            if existed:
                for item in sorted(tmp.iterdir()):
                    target = out / item.name
                    if target.is_dir() and not item.is_dir():
                        shutil.rmtree(target)
                    if item.is_dir() and target.exists():
                        shutil.rmtree(target) if target.is_dir() else target.unlink()
                    os.replace(item, target)
                tmp.rmdir()
            else:
                os.replace(tmp, out)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise VadblocksError(
                f"cannot write the output to {out}: {exc.strerror or exc}; nothing was written "
                "(free some space or choose another --out-directory)"
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write one text file atomically: a temporary file beside it, renamed into place (removed on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_temporaries(out: str | Path) -> list[Path]:
    """Remove temporary folders a killed writer left inside ``out``; returns what was removed."""
    out = Path(out)
    found = sorted(out.glob(TMP_PREFIX + "*")) if out.is_dir() else []
    for p in found:
        shutil.rmtree(p, ignore_errors=True)
    return found

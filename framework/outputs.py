"""Writing output directories atomically: all files appear together, or none do."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from framework.errors import VadblocksError

TMP_PREFIX = ".vadblocks-tmp-"


@contextmanager
def atomic_directory(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success its files land in ``out``, on error nothing does.

    When ``out`` already exists (e.g. a mounted volume) the temporary folder lives inside it
    and each file is renamed into place; otherwise a sibling folder is renamed to ``out``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VadblocksError(f"output {out} exists and is not a directory")
    existed = out.is_dir()
    parent = out if existed else out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the result should look like any new folder
    except OSError as exc:
        raise VadblocksError(f"cannot write to {parent}: {exc}") from None
    try:
        yield tmp
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

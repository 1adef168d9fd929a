"""``vadblocks eim``: pack a model directory into one executable that speaks Edge Impulse's runner protocol.

The file is a Python zip application: a ``#!`` line, then a zip holding the portable runner
(:mod:`framework.portable`: numpy + one runtime, no torch, no vadblocks), the model's metadata and
one exported model file. Edge Impulse's Linux SDKs start it as ``model.eim SOCKET_PATH``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import zipfile
from pathlib import Path

from framework.errors import VadblocksError
from framework.portable import impulse
from framework.portable.formats import EXPORT_FILES, RUNTIME_PACKAGES
from framework.portable.modelfiles import METADATA_FILE, check_model_dir

EIM_RUNTIMES = tuple(EXPORT_FILES)  # every exported file; tflite is the default
PORTABLE_MODULES = ("__init__", "errors", "silence", "formats", "engines", "micro", "modelfiles", "impulse")
MAIN = """import os
import sys

from portable.impulse import eim_main

sys.exit(eim_main(os.path.dirname(os.path.abspath(__file__)), sys.argv[1:]))
"""


def write_eim(
    model_dir: str | Path, out: str | Path, runtime: str = "tflite", interpreter: str = "/usr/bin/env python3"
) -> Path:
    """Write ``out``: an executable .eim serving ``model_dir``'s ``runtime`` file; returns its path.

    ``interpreter`` is the ``#!`` line's Python (it needs numpy and the runtime's package).
    """
    if runtime not in EIM_RUNTIMES:
        raise VadblocksError(f"--runtime {runtime!r} is not one of {', '.join(EIM_RUNTIMES)}")
    model_dir, out = Path(model_dir), Path(out)
    meta = check_model_dir(model_dir)
    model_file = model_dir / EXPORT_FILES[runtime]
    if not model_file.is_file():
        raise VadblocksError(f"{model_file} does not exist: train with --export including {runtime}")
    if importlib.util.find_spec(RUNTIME_PACKAGES[runtime]) is not None:  # load it here, where we can say why not
        impulse.ExportedModel.from_directory(model_dir, runtime, 1, meta)
    if out.is_dir():
        raise VadblocksError(f"--out {out} is a directory; give the path of the .eim file to write")
    source = Path(impulse.__file__).parent
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".vadblocks-eim-", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(f"#!{interpreter}\n".encode())
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("__main__.py", MAIN)
                for name in PORTABLE_MODULES:
                    z.write(source / f"{name}.py", f"portable/{name}.py")
                z.write(model_dir / METADATA_FILE, METADATA_FILE)
                z.write(model_file, model_file.name, compress_type=zipfile.ZIP_STORED)
                z.writestr(impulse.EIM_MANIFEST, json.dumps({"format": runtime, "file": model_file.name}))
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out

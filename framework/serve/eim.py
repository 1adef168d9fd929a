"""``vadblocks eim``: pack a model directory into one executable that speaks Edge Impulse's runner protocol.

The file is a Python zip application: a ``#!`` line, then a zip holding the portable runner
(:mod:`framework.portable`: numpy + one runtime, no torch, no vadblocks), the model's metadata and
one exported model file. Edge Impulse's Linux SDKs start it as ``model.eim SOCKET_PATH``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from framework.errors import VadblocksError
from framework.portable import impulse
from framework.portable.formats import EXPORT_FILES, RUNTIME_PACKAGES
from framework.portable.modelfiles import METADATA_FILE, check_model_dir

EIM_RUNTIMES = tuple(EXPORT_FILES)  # every exported file; tflite is the default
PORTABLE_MODULES = (
    "__init__",
    "errors",
    "silence",
    "framing",
    "formats",
    "engines",
    "micro",
    "modelfiles",
    "impulse",
)
# The .eim's entry point. Where numpy is missing, the standard library answers the SDK with the reason.
MAIN = """import os
import sys

try:
    from portable.impulse import eim_main
except ImportError as exc:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        raise
    from portable.framing import serve_unavailable

    serve_unavailable(
        sys.argv[1],
        f"this .eim runs on Python 3 with numpy and its model runtime ({exc}): pip install numpy "
        "ai-edge-litert (onnxruntime for an ONNX .eim), or build a self-contained one with vadblocks eim --standalone",
    )
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


# --- a self-contained .eim -------------------------------------------------------------------------------

STANDALONE_MAIN = """import os
import sys

from portable.impulse import eim_main

sys.exit(eim_main(os.path.join(sys._MEIPASS, "model.eim"), sys.argv[1:]))
"""
# packages a standalone .eim must not carry: vadblocks itself (the portable modules fall back to their own
# error class), torch, and the runtimes of the other formats
STANDALONE_EXCLUDES = ("framework", "blocks", "vadblocks", "torch", "torchvision", "litert_torch", "tensorflow")


def write_standalone_eim(model_dir: str | Path, out: str | Path, runtime: str = "tflite") -> Path:
    """Write ``out``: a self-contained .eim (PyInstaller one-file executable for this machine's architecture)
    holding a Python, numpy, the runtime of ``runtime``'s file and the packed model; the target needs nothing.
    """
    if importlib.util.find_spec("PyInstaller") is None:
        raise VadblocksError("vadblocks eim --standalone freezes the runner with PyInstaller: pip install pyinstaller")
    if importlib.util.find_spec(RUNTIME_PACKAGES[runtime]) is None:
        raise VadblocksError(
            f"--standalone packs this machine's {runtime} runtime: {RUNTIME_PACKAGES[runtime]} is not installed"
        )
    out = Path(out)
    if out.is_dir():
        raise VadblocksError(f"--out {out} is a directory; give the path of the .eim file to write")
    others = {pkg for name, pkg in RUNTIME_PACKAGES.items() if pkg != RUNTIME_PACKAGES[runtime]}
    with tempfile.TemporaryDirectory(prefix="vadblocks-standalone-") as tmp_name:
        tmp = Path(tmp_name)
        packed = write_eim(model_dir, tmp / "model.eim", runtime)
        src = tmp / "src"
        (src / "portable").mkdir(parents=True)
        for name in PORTABLE_MODULES:
            shutil.copy(Path(impulse.__file__).parent / f"{name}.py", src / "portable" / f"{name}.py")
        (src / "main.py").write_text(STANDALONE_MAIN)
        excluded = (*STANDALONE_EXCLUDES, *sorted(others), "tflite_runtime")
        command = [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--log-level", "WARN"]
        command += ["--name", "model", "--distpath", str(tmp / "dist"), "--workpath", str(tmp / "build")]
        command += ["--specpath", str(tmp), "--paths", str(src), "--add-data", f"{packed}{os.pathsep}."]
        command += [arg for pkg in excluded for arg in ("--exclude-module", pkg)] + [str(src / "main.py")]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
        built = tmp / "dist" / "model"
        if proc.returncode or not built.is_file():
            raise VadblocksError(f"PyInstaller could not build the standalone .eim: {proc.stderr.strip()[-1500:]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        staged = out.with_name(f".{out.name}.partial")
        shutil.copy2(built, staged)
        os.chmod(staged, 0o755)
        os.replace(staged, out)
    return out

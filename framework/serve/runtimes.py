"""Running a trained model through torch or one of its exported files (ONNX Runtime, LiteRT).

An exported file is always run by :class:`~framework.portable.impulse.ExportedModel`, the one front door
that the .eim runner, ``vadblocks serve`` and the Python API share.

The exported-file runtimes import neither torch nor the export toolchain: ``predict``, ``test``
and ``serve`` through them start in about a second and a fraction of torch's memory.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from framework.errors import VadblocksError
from framework.portable.formats import AUTO_ORDER, EXPORT_FILES, RUNTIME_PACKAGES, RUNTIMES
from framework.portable.impulse import ExportedModel


class Runtime(Protocol):
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grids (N, G, G) and scores (N,) for internal 0..1 RGB images (N, H, W, 3)."""


def resolve_runtime(model_dir: str | Path, runtime: str = "auto") -> str:
    """``auto`` -> the first float export of ``model_dir`` whose runtime is installed, else ``torch``.

    Order: model.tflite (LiteRT), model.onnx (ONNX Runtime): the exported graph is 2-3x faster than
    torch eager at one thread and matches it within 1e-3 / 1e-4. Other names pass through unchanged.
    """
    if runtime != "auto":
        return runtime
    for fmt in AUTO_ORDER:  # fastest first (docs/benchmarks.md)
        if (Path(model_dir) / EXPORT_FILES[fmt]).is_file() and importlib.util.find_spec(RUNTIME_PACKAGES[fmt]):
            return fmt
    return "torch"


def open_runtime(
    model_dir: str | Path,
    runtime: str = "auto",
    threads: int = 1,
    model: Any = None,
    meta: dict[str, Any] | None = None,
) -> Runtime:
    """A runtime for a trained model directory: torch, one of its exported files, or ``auto``.

    ``model``: the already loaded :class:`~framework.train.pipeline.AnomalyModel` of ``model_dir``, if any;
    ``meta``: its already checked metadata. Only the torch runtime loads a model (and so imports torch).
    """
    if runtime not in RUNTIMES:
        raise VadblocksError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    runtime = resolve_runtime(model_dir, runtime)
    if runtime == "torch":
        if model is None:
            from framework.train.pipeline import AnomalyModel

            model = AnomalyModel.load(model_dir)
        return model
    meta = model.metadata if model is not None else meta
    return ExportedModel.from_directory(model_dir, runtime, threads, meta)

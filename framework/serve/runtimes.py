"""Running a trained model through torch or one of its exported files (ONNX Runtime, LiteRT).

The exported-file runtimes import neither torch nor the export toolchain: ``predict``, ``test``
and ``serve`` through them start in about a second and a fraction of torch's memory.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from framework.errors import VadblocksError
from framework.portable.engines import load_engine, to_input_scaling
from framework.portable.formats import AUTO_ORDER, EXPORT_FILES, RUNTIME_PACKAGES, RUNTIMES
from framework.portable.modelfiles import check_model_dir, engine_shapes


class Runtime(Protocol):
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grids (N, G, G) and scores (N,) for internal 0..1 RGB images (N, H, W, 3)."""


class FileRuntime:
    """One exported file of a model directory, run image by image (batch 1, as on a device).

    ``meta``: the directory's metadata as :func:`check_model_dir` returned it; checked here when None.
    """

    def __init__(self, model_dir: str | Path, fmt: str, meta: dict[str, Any] | None = None, threads: int = 1) -> None:
        self.path = Path(model_dir) / EXPORT_FILES[fmt]
        if not self.path.is_file():
            raise VadblocksError(f"{self.path} does not exist: train with --export including {fmt}")
        meta = meta if meta is not None else check_model_dir(model_dir)
        self.scaling = meta.get("imageInputScaling", "0..1")
        self.channels = int(meta["inputShape"][2])
        self.engine = load_engine(fmt, str(self.path), threads, **engine_shapes(meta))

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = to_input_scaling(images, self.scaling, self.channels)
        grids, scores = zip(*(self.engine.run_one(x[i : i + 1]) for i in range(len(x))))
        return np.concatenate(grids), np.concatenate(scores)


class OnnxRuntime(FileRuntime):
    """model.onnx through onnxruntime (CPU)."""

    def __init__(self, model_dir: str | Path, meta: dict[str, Any] | None = None, threads: int = 1) -> None:
        super().__init__(model_dir, "onnx", meta, threads)


class LiteRTRuntime(FileRuntime):
    """model.tflite / model_quantized_int8_io.tflite through the LiteRT interpreter."""


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
    if runtime == "onnx":
        return OnnxRuntime(model_dir, meta, threads)
    return LiteRTRuntime(model_dir, runtime, meta, threads)

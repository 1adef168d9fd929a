"""Running a trained model through torch or one of its exported files (ONNX Runtime, LiteRT)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from framework.errors import VadblocksError
from framework.export import FILES, INPUT_NAME, quiet, to_input_scaling

RUNTIMES = ("auto", "torch", "onnx", "tflite", "tflite-int8")


class Runtime(Protocol):
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grids (N, G, G) and scores (N,) for internal 0..1 RGB images (N, H, W, 3)."""


class _FileRuntime:
    def __init__(self, model_dir: Path, fmt: str, meta: dict[str, Any], threads: int) -> None:
        self.path = model_dir / FILES[fmt]
        if not self.path.is_file():
            raise VadblocksError(f"{self.path} does not exist: train with --export including {fmt}")
        self.scaling = meta.get("imageInputScaling", "0..1")
        self.channels = int(meta["inputShape"][2])
        self.threads = threads

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = to_input_scaling(images, self.scaling, self.channels)
        grids, scores = zip(*(self.run_one(x[i:i + 1]) for i in range(len(x))))
        return np.concatenate(grids), np.concatenate(scores)

    def run_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class OnnxRuntime(_FileRuntime):
    """model.onnx through onnxruntime (CPU)."""

    def __init__(self, model_dir: Path, meta: dict[str, Any], threads: int = 1) -> None:
        super().__init__(model_dir, "onnx", meta, threads)
        try:
            import onnxruntime as ort
        except ImportError:
            raise VadblocksError("--runtime onnx needs onnxruntime: pip install 'vadblocks[export]'") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def run_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grid, score = self.session.run(["grid", "score"], {INPUT_NAME: x})
        return grid, score


class LiteRTRuntime(_FileRuntime):
    """model.tflite / model_quantized_int8_io.tflite through the LiteRT interpreter."""

    def __init__(self, model_dir: Path, fmt: str, meta: dict[str, Any], threads: int = 1) -> None:
        super().__init__(model_dir, fmt, meta, threads)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise VadblocksError(f"--runtime {fmt} needs ai-edge-litert: pip install 'vadblocks[export]'") from None
        with quiet():  # the interpreter announces its XNNPACK delegate on the stderr file descriptor
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_output_details()
        self.grid_out = next(d for d in outputs if len(d["shape"]) == 3)
        self.score_out = next(d for d in outputs if len(d["shape"]) == 1)

    def run_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.input["dtype"] == np.int8:
            scale, zero = self.input["quantization"]
            x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return (self.interpreter.get_tensor(self.grid_out["index"]).copy(),
                self.interpreter.get_tensor(self.score_out["index"]).copy())


AUTO_ORDER = (("tflite", "ai_edge_litert"), ("onnx", "onnxruntime"))  # fastest first (docs/benchmarks.md)


def resolve_runtime(model_dir: str | Path, runtime: str = "auto") -> str:
    """``auto`` -> the first float export of ``model_dir`` whose runtime is installed, else ``torch``.

    Order: model.tflite (LiteRT), model.onnx (ONNX Runtime): the exported graph is 2-3x faster than
    torch eager at one thread and matches it within 1e-3 / 1e-4. Other names pass through unchanged.
    """
    if runtime != "auto":
        return runtime
    for fmt, module in AUTO_ORDER:
        if (Path(model_dir) / FILES[fmt]).is_file() and importlib.util.find_spec(module) is not None:
            return fmt
    return "torch"


def open_runtime(model_dir: str | Path, runtime: str = "auto", threads: int = 1, model: Any = None) -> Runtime:
    """A runtime for a trained model directory: torch, one of its exported files, or ``auto``.

    ``model``: the already loaded :class:`~framework.pipeline.AnomalyModel` of ``model_dir``, if any.
    """
    from framework.pipeline import AnomalyModel

    if runtime not in RUNTIMES:
        raise VadblocksError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    model = model or AnomalyModel.load(model_dir)
    runtime = resolve_runtime(model_dir, runtime)
    if runtime == "torch":
        return model
    if runtime == "onnx":
        return OnnxRuntime(Path(model_dir), model.metadata, threads)
    return LiteRTRuntime(Path(model_dir), runtime, model.metadata, threads)

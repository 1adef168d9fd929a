"""Exported model files and the runtimes that run them: LiteRT (TFLite) and ONNX Runtime.

The exported graph takes one NHWC float32 image ``(1, H, W, C)`` scaled per the model's
``imageInputScaling`` (int8 for ``model_quantized_int8_io.tflite``) and returns ``grid (1, G, G)``
and ``score (1,)``. Needs numpy and the chosen runtime only.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .errors import ServingError
from .formats import RUNTIME_FILES
from .silence import quiet

SCALINGS = {  # imageInputScaling -> (low, high) of the stored values
    "0..1": (0.0, 1.0),
    "0..255": (0.0, 255.0),
    "-1..1": (-1.0, 1.0),
    "-128..127": (-128.0, 127.0),
}
INPUT_NAME = "image"
OUTPUT_NAMES = ("grid", "score")


def to_input_scaling(images: np.ndarray, scaling: str, channels: int) -> np.ndarray:
    """Internal 0..1 RGB images ``(N, H, W, 3)`` -> the exported graph's input (per ``scaling``, C channels)."""
    lo, hi = SCALINGS[scaling]
    x = images[..., :channels] if channels == 1 else images
    return np.ascontiguousarray(lo + x * (hi - lo), dtype=np.float32)


class Engine(Protocol):
    input_shape: tuple[int, ...]  # (1, H, W, C) as the file declares it
    grid_shape: tuple[int, ...]  # (1, G, G)

    def run_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x`` (1, H, W, C) float32 in the input scaling -> (grid (1, G, G), score (1,))."""


class TFLiteEngine:
    """A .tflite file (float or int8 input) through LiteRT (``ai_edge_litert``, else ``tflite_runtime``)."""

    def __init__(self, model: str | bytes, threads: int = 1, name: str = "tflite") -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            try:
                from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
            except ImportError:
                raise ServingError(f"running {name} needs LiteRT: pip install ai-edge-litert") from None
        source = {"model_content": model} if isinstance(model, bytes) else {"model_path": model}
        with quiet(f"loading {name} with LiteRT"):  # the interpreter announces its delegate on fd 2
            self.interpreter = Interpreter(num_threads=threads, **source)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_output_details()
        grid = [d for d in outputs if len(d["shape"]) == 3]
        score = [d for d in outputs if len(d["shape"]) == 1]
        if len(self.interpreter.get_input_details()) != 1 or len(grid) != 1 or len(score) != 1:
            raise ServingError(
                f"{name} is not a vadblocks model: expected one image input and outputs grid (1, G, G) and score (1,)"
            )
        self.grid_out, self.score_out = grid[0], score[0]
        self.input_shape = tuple(int(v) for v in self.input["shape"])
        self.grid_shape = tuple(int(v) for v in self.grid_out["shape"])

    def run_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.input["dtype"] == np.int8:
            scale, zero = self.input["quantization"]
            x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return (
            self.interpreter.get_tensor(self.grid_out["index"]).copy(),
            self.interpreter.get_tensor(self.score_out["index"]).copy(),
        )


class OnnxEngine:
    """model.onnx through ONNX Runtime (CPU)."""

    def __init__(self, model: str | bytes, threads: int = 1, name: str = "onnx") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ServingError(f"running {name} needs ONNX Runtime: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for bad files
            raise ServingError(f"ONNX Runtime cannot load {name}: {exc}") from None
        inputs, outputs = self.session.get_inputs(), {o.name: o for o in self.session.get_outputs()}
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or set(outputs) != set(OUTPUT_NAMES):
            raise ServingError(
                f"{name} is not a vadblocks model: expected input {INPUT_NAME!r} and outputs {', '.join(OUTPUT_NAMES)}"
            )
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in inputs[0].shape)
        self.grid_shape = tuple(d if isinstance(d, int) else -1 for d in outputs["grid"].shape)

    def run_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grid, score = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        return grid, score


def load_engine(
    fmt: str,
    model: str | bytes,
    threads: int = 1,
    input_shape: tuple[int, ...] | None = None,
    grid_shape: tuple[int, ...] | None = None,
) -> Engine:
    """The engine for runtime ``fmt`` (``tflite``, ``tflite-int8``, ``tflm`` or ``onnx``) of a path or bytes.

    ``input_shape`` (H, W, C) and ``grid_shape`` (G, G), when given, must be what the file declares.
    """
    if fmt not in RUNTIME_FILES:
        raise ServingError(f"unknown model format {fmt!r}; choose from {', '.join(RUNTIME_FILES)}")
    name = RUNTIME_FILES[fmt] if isinstance(model, bytes) else str(model)
    engine: Engine
    if fmt == "onnx":
        engine = OnnxEngine(model, threads, name)
    elif fmt == "tflm":
        from .micro import MicroEngine

        engine = MicroEngine(model, threads, name)
    else:
        engine = TFLiteEngine(model, threads, name)
    for what, want, got in (("input", input_shape, engine.input_shape), ("grid", grid_shape, engine.grid_shape)):
        if want is not None and tuple(got) != (1, *want):
            raise ServingError(
                f"{name} declares a {what} of shape {tuple(got)} but the model's metadata records "
                f"{(1, *want)}: the file does not belong to this model directory"
            )
    return engine

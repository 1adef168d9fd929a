"""TensorFlow Lite Micro on the host: an int8 .tflite run by TFLM's own reference kernels (PyPI
``tflite-micro``), and the tensor arena it needs, as a microcontroller would allocate it.

A model that loads here uses only operators TFLM registers; the arena measured here (head: the planned
activations and scratch buffers; tail: persistent allocations; with TFLM's alignment) is what a
``MicroInterpreter`` needs on a device, up to the size of its pointers (measured on a 64-bit host).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ServingError
from .silence import captured

PROBE_ARENA_BYTES = 256 << 20  # the arena a model is first loaded with, to measure what it really takes
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '(\w+)'")
_ARENA = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


@dataclass(frozen=True)
class Arena:
    """The tensor arena TFLM allocated for a model, in bytes."""

    head: int  # non-persistent: activations and scratch buffers, as TFLM's memory planner lays them out
    tail: int  # persistent: tensor structs, quantisation data, kernels' persistent buffers

    @property
    def total(self) -> int:
        return self.head + self.tail

    def as_dict(self) -> dict[str, int]:
        return {"arenaBytes": self.total, "headBytes": self.head, "tailBytes": self.tail}


def _runtime() -> Any:
    try:
        from tflite_micro import runtime
    except ImportError:
        raise ServingError("running a model under TensorFlow Lite Micro needs it: pip install tflite-micro") from None
    return runtime


def load(model: bytes, name: str, arena_size: int = PROBE_ARENA_BYTES) -> Any:
    """A TFLM interpreter of ``model`` with an arena of ``arena_size`` bytes; operators TFLM does not
    register, or an arena too small, are refused with a message naming them."""
    runtime = _runtime()
    with captured() as text:
        try:
            return runtime.Interpreter.from_bytes(model, arena_size=arena_size)
        except (RuntimeError, ValueError) as exc:
            said = text()
            missing = sorted(set(_MISSING_OP.findall(said)))
            if missing:
                raise ServingError(
                    f"TensorFlow Lite Micro cannot run {name}: it does not register the operator(s) "
                    f"{', '.join(missing)} that the file uses; a scorer for microcontrollers must build its "
                    "graph from operators TFLM has (no SELECT: use masks instead of index lookups); a built-in "
                    "scorer's model exported by an older vadblocks: train it again"
                ) from None
            if "Failed to resize buffer" in said or "Failed to allocate" in said:
                raise ServingError(f"{name} does not fit a TFLM arena of {arena_size:,} bytes") from None
            raise ServingError(f"TensorFlow Lite Micro cannot load {name}: {exc} {said.strip()[-500:]}") from None


def measure_arena(model: bytes, name: str = "model") -> Arena:
    """The arena TFLM allocates for ``model`` after one inference (RecordingMicroAllocator's figures)."""
    interpreter = load(model, name)
    inp = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(inp["shape"], dtype=inp["dtype"]), 0)
    with captured() as text:
        interpreter.invoke()
        interpreter.print_allocations()
        said = text()
    found = {k: int(v) for k, v in _ARENA.findall(said)}
    if "head" not in found or "tail" not in found:
        raise ServingError(f"TFLM did not report the arena of {name}: {said.strip()[-300:]}")
    return Arena(found["head"], found["tail"])


def operators(model: bytes) -> list[str]:
    """The builtin operators a .tflite file uses, by name, in order of first use."""
    _runtime()
    from tflite_micro.python.tflite_micro.runtime import get_builtin_code_from_operator_code
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model, 0))
    out: list[str] = []
    for graph in m.subgraphs:
        for op in graph.operators or []:
            name = names[get_builtin_code_from_operator_code(m.operatorCodes[op.opcodeIndex])]
            if name not in out:
                out.append(name)
    return out


def describe(model: bytes, name: str) -> dict[str, Any]:
    """The metadata's ``tflm`` entry of an int8 file: ``runs`` and the measured arena, or why it does not run."""
    try:
        return {"runs": True, **measure_arena(model, name).as_dict()}
    except ServingError as exc:
        return {"runs": False, "reason": str(exc)}


class MicroEngine:
    """An int8-input .tflite run by TensorFlow Lite Micro's reference kernels (batch 1, one thread)."""

    def __init__(self, model: str | bytes, threads: int = 1, name: str = "tflm") -> None:
        """``threads`` is accepted for the engine interface; TFLM runs on one."""
        if isinstance(model, str):
            with open(model, "rb") as fh:
                model = fh.read()
        self.interpreter = load(model, name)
        self.input = self.interpreter.get_input_details(0)
        outputs = [self.interpreter.get_output_details(i) for i in range(2)]
        shapes = [len(o["shape"]) for o in outputs]
        if sorted(shapes) != [1, 3] or self.input["dtype"] != np.int8:
            raise ServingError(
                f"{name} is not a vadblocks int8 model: expected an int8 image input and outputs grid (1, G, G) "
                "and score (1,)"
            )
        self.grid_index, self.score_index = shapes.index(3), shapes.index(1)
        self.input_shape = tuple(int(v) for v in self.input["shape"])
        self.grid_shape = tuple(int(v) for v in outputs[self.grid_index]["shape"])
        q = self.input["quantization_parameters"]
        self.scale, self.zero = float(q["scales"][0]), int(q["zero_points"][0])

    def run_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.clip(np.round(x / self.scale) + self.zero, -128, 127).astype(np.int8)
        self.interpreter.set_input(q, 0)
        self.interpreter.invoke()
        return (
            np.array(self.interpreter.get_output(self.grid_index), dtype=np.float32),
            np.array(self.interpreter.get_output(self.score_index), dtype=np.float32).reshape(1),
        )

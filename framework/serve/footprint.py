"""What a model costs on a device, measured on its exported file: latency, file size and peak memory.

Peak memory is the activation arena the file needs: every tensor an operator produces (and the
input) lives from the operator that writes it to the last one that reads it, and a greedy planner
(largest tensor first, lowest free offset; the scheme of TensorFlow Lite Micro's
``GreedyMemoryPlanner``) lays them out in one buffer. Weights are counted in the file size, not here;
operator scratch buffers are not counted. Needs numpy and the file's runtime only (no torch). For the
int8 file, TensorFlow Lite Micro's own measured arena (:mod:`framework.portable.micro`) replaces this
estimate where tflite-micro is installed.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from framework.errors import VadblocksError
from framework.portable.formats import EXPORT_FILES

LATENCY_RUNS = 20

Lifetime = tuple[int, int, int]  # (bytes, first operator, last operator)


def measure_latency(runtime: Any, image: np.ndarray, runs: int = LATENCY_RUNS) -> float:
    """Median milliseconds of one single-image prediction (after one warm-up)."""
    runtime.predict(image[None])
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runtime.predict(image[None])
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def plan_arena(tensors: list[Lifetime]) -> int:
    """Bytes of one buffer holding every tensor during its lifetime (greedy, largest first)."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    end = 0
    for size, first, last in sorted(tensors, key=lambda t: -t[0]):
        if size <= 0:
            continue
        live = sorted((o, s) for o, s, f, la in placed if f <= last and first <= la)
        offset = 0
        for o, s in live:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, first, last))
        end = max(end, offset + size)
    return end


def _lifetimes(
    ops: list[tuple[list[int], list[int]]], inputs: list[int], outputs: list[int], nbytes: dict[int, int]
) -> list[Lifetime]:
    """Lifetimes of the activations of a graph given as operators (input ids, output ids) in run order."""
    first = {t: 0 for t in inputs}
    last: dict[int, int] = {}
    for i, (ins, outs) in enumerate(ops):
        for t in outs:
            first.setdefault(t, i)
        for t in ins:
            last[t] = i
    for t in outputs:
        last[t] = len(ops)
    return [(nbytes.get(t, 0), f, max(last.get(t, f), f)) for t, f in first.items()]


def tflite_lifetimes(path: str | Path) -> list[Lifetime]:
    """Activation lifetimes of a .tflite file (its own operators, no delegate rewriting them)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    nbytes = {d["index"]: int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize for d in it.get_tensor_details()}
    ops = [([int(t) for t in o["inputs"] if t >= 0], [int(t) for t in o["outputs"]]) for o in it._get_ops_details()]
    return _lifetimes(
        ops, [d["index"] for d in it.get_input_details()], [d["index"] for d in it.get_output_details()], nbytes
    )


def onnx_lifetimes(path: str | Path) -> list[Lifetime]:
    """Activation lifetimes of an .onnx file (shapes from ONNX shape inference; initializers are weights)."""
    import onnx
    from onnx import helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    names: dict[str, int] = {}
    nbytes: dict[int, int] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        dims = [d.dim_value for d in t.shape.dim]
        idx = names.setdefault(vi.name, len(names))
        if dims and all(d > 0 for d in dims):
            nbytes[idx] = int(np.prod(dims)) * helper.tensor_dtype_to_np_dtype(t.elem_type).itemsize
        elif not dims:
            nbytes[idx] = helper.tensor_dtype_to_np_dtype(t.elem_type).itemsize
    constants = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    ops = [
        (
            [names.setdefault(t, len(names)) for t in n.input if t and t not in constants],
            [names.setdefault(t, len(names)) for t in n.output if t],
        )
        for n in g.node
        if n.op_type != "Constant"
    ]
    return _lifetimes(
        ops, [names[i.name] for i in g.input if i.name not in constants], [names[o.name] for o in g.output], nbytes
    )


def peak_ram_bytes(path: str | Path, fmt: str) -> int:
    """The activation arena of exported file ``path`` (format ``onnx``, ``tflite`` or ``tflite-int8``)."""
    try:
        return plan_arena(onnx_lifetimes(path) if fmt == "onnx" else tflite_lifetimes(path))
    except (OSError, ValueError, RuntimeError) as exc:
        raise VadblocksError(f"cannot read the operators of {path}: {exc}") from None


MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")


def tflite_macs(path: str | Path) -> int:
    """Multiply-accumulates of one inference of a .tflite file: its convolutions, depthwise convolutions,
    fully connected layers and matrix products (the rest is a few percent at most)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    shapes = {d["index"]: [int(v) for v in d["shape"]] for d in it.get_tensor_details()}
    total = 0
    for op in it._get_ops_details():
        if op["op_name"] not in MAC_OPS:
            continue
        out = int(np.prod(shapes[int(op["outputs"][0])]))
        weights = shapes[int(op["inputs"][1])]
        if op["op_name"] == "CONV_2D":  # (Cout, kh, kw, Cin)
            total += out * int(np.prod(weights[1:]))
        elif op["op_name"] == "DEPTHWISE_CONV_2D":  # (1, kh, kw, C x multiplier)
            total += out * weights[1] * weights[2]
        elif op["op_name"] == "FULLY_CONNECTED":  # (units, inputs)
            total += out * weights[-1]
        else:  # BATCH_MATMUL: (..., n, k) x (..., k, m)
            total += out * shapes[int(op["inputs"][0])][-1]
    return total


def measure(
    model_dir: str | Path, fmt: str, image: np.ndarray, runs: int = LATENCY_RUNS, micro: bool = False
) -> dict[str, float | None]:
    """Latency (ms, one thread, batch 1, median), file size (KB), peak activation memory (KB) and millions of
    multiply-accumulates of the ``fmt`` file of a model directory, running ``image`` (H, W, 3, 0..1) through
    the file's own runtime.

    For the int8 file with tflite-micro installed, ``ram_kb`` is TensorFlow Lite Micro's measured arena
    (``arena_kb``), else the planner's estimate (``planner_ram_kb``, always given); ``micro``: the file must run
    under TFLM (a microcontroller target), else this raises naming what TFLM lacks.
    """
    from framework.portable import micro as tflm
    from framework.serve.runtimes import open_runtime

    path = Path(model_dir) / EXPORT_FILES[fmt]
    engine = open_runtime(model_dir, fmt, threads=1)
    planner_kb = peak_ram_bytes(path, fmt) / 1024
    arena_kb = None
    if fmt == "tflite-int8" and (micro or importlib.util.find_spec("tflite_micro") is not None):
        try:
            arena_kb = tflm.measure_arena(path.read_bytes(), path.name).total / 1024
        except VadblocksError:
            if micro:
                raise
    return {
        "latency_ms": measure_latency(engine, image, runs),
        "model_kb": os.path.getsize(path) / 1024,
        "ram_kb": planner_kb if arena_kb is None else arena_kb,
        "planner_ram_kb": planner_kb,
        "arena_kb": arena_kb,
        "macs_m": None if fmt == "onnx" else tflite_macs(path) / 1e6,
    }

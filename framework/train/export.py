"""Standardised model outputs: the whole pipeline (image -> grid, score) as one graph.

``ExportGraph`` wraps input scaling, ImageNet-style normalisation, the backbone and the
scorer's torch scoring module (memory bank / Gaussian components baked in as constants).
Input: NHWC float32 ``(1, H, W, C)`` scaled per ``imageInputScaling``; outputs ``grid
(1, G, G)`` and ``score (1,)``. Written as ``model.onnx`` (torch.onnx, TorchScript exporter),
``model.tflite`` (litert-torch, float32 I/O) and ``model_quantized_int8_io.tflite`` (PT2E
static quantisation of everything but the scorer, and at ``int8-precision mixed`` but the input
normalisation and the backbone's first layers; int8 input, float32 outputs, calibrated on
training images). Scorer plugins need no export code: their scoring module is the graph.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from framework import interrupts
from framework.errors import VadblocksError
from framework.portable import micro
from framework.portable.engines import INPUT_NAME, OUTPUT_NAMES, SCALINGS, to_input_scaling
from framework.portable.formats import EXPORT_FILES as FILES
from framework.portable.silence import quiet
from framework.train import int8
from framework.train.pipeline import AnomalyModel
from framework.training_params import INT8_PRECISION

FORMATS = tuple(FILES)
CALIBRATION_IMAGES = 256  # training images used to calibrate the int8 model (evenly spaced)
ONNX_OPSET = 17


class InputNormalization(nn.Module):
    """NHWC input scaled to ``lo..hi`` -> NCHW normalised by the backbone's ``mean``/``std`` (grey made RGB)."""

    def __init__(self, lo: float, hi: float, mean: Sequence[float], std: Sequence[float], channels: int) -> None:
        super().__init__()
        mean_t = torch.tensor(mean, dtype=torch.float32)
        std_t = torch.tensor(std, dtype=torch.float32)
        # (x - lo) / (hi - lo), then (v - mean) / std, folded into one multiply-add x * a + b
        self.register_buffer("a", (1.0 / ((hi - lo) * std_t)).view(1, 1, 1, 3))
        self.register_buffer("b", ((-lo / (hi - lo) - mean_t) / std_t).view(1, 1, 1, 3))
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 1:
            x = x.expand(-1, -1, -1, 3)
        return (x * self.a + self.b).permute(0, 3, 1, 2)


class ExportGraph(nn.Module):
    """NHWC image scaled per ``imageInputScaling`` -> (grid (1, G, G), score (1,))."""

    def __init__(self, model: AnomalyModel) -> None:
        super().__init__()
        lo, hi = SCALINGS[model.metadata.get("imageInputScaling", "0..1")]
        self.normalize = InputNormalization(lo, hi, model.backbone.mean, model.backbone.std, model.input_shape[2])
        self.backbone = model.extractor.backbone
        self.scoring = model.scorer.build_scoring_module().eval()
        for module in self.modules():  # tensors made under inference_mode cannot be traced: copy them
            for name, buf in list(module.named_buffers(recurse=False)):
                if buf is not None and buf.is_inference():
                    module.register_buffer(name, buf.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scoring(self.backbone(self.normalize(x)))


def _require(module: str, fmt: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise VadblocksError(
            f"writing {FILES[fmt]} needs {module.split('.')[0]}: pip install 'vadblocks[export]' "
            f"(or choose other formats with --export)"
        ) from None


def export_onnx(graph: ExportGraph, sample: torch.Tensor, path: Path) -> None:
    """Write ``graph`` as ONNX with a fixed (1, H, W, C) input."""
    _require("onnx", "onnx")
    with torch.no_grad(), interrupts.deferred(), quiet():
        torch.onnx.export(
            graph,
            (sample,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def export_tflite(graph: ExportGraph, sample: torch.Tensor, path: Path) -> None:
    """Write ``graph`` as a float32 TFLite model with litert-torch."""
    with interrupts.deferred(), quiet():
        litert_torch = _require("litert_torch", "tflite")
        litert_torch.convert(graph, (sample,)).export(str(path))


def _quantizer(scaling: str, scorer_type: type, float_modules: Sequence[str] = ()) -> Any:
    """litert-torch's PT2E quantiser: static int8 everywhere but the scorer (and ``float_modules``, module
    paths in :class:`ExportGraph` such as ``backbone.features.6``), fixed input qparams.

    Works around three things in litert-torch 0.10 with torch 2.14: its module-type and module-name
    filters read what torch's ``nn_module_stack`` used to record (classes; ``L__self___`` keys) while
    it now records qualified class names and plain module paths; ``set_module_name`` refuses the
    ``None`` config that leaves a module in float; and the input observer must be fixed to the
    declared input range (scale (hi - lo) / 255, zero point -128) so every representable input maps
    to int8 without clipping.
    """
    pq = _require("litert_torch.quantize.pt2e_quantizer", "tflite-int8")
    from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec, QuantizationAnnotation

    def type_filter(tp: type):
        names = {tp, f"{tp.__module__}.{tp.__qualname__}"}
        return lambda n: any(t in names for _, t in n.meta.get("nn_module_stack", {}).values())

    def name_filter(name: str):
        def inside(n: Any) -> bool:
            return any(p == name or p.startswith(name + ".") for p, _ in n.meta.get("nn_module_stack", {}).values())

        return inside

    pq._get_module_type_filter = type_filter
    pq._get_module_name_filter = name_filter
    lo, hi = SCALINGS[scaling]
    scale = (hi - lo) / 255.0
    zero_point = int(round(-128 - lo / scale))

    class InputFixedQuantizer(pq.PT2EQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            image = [n for n in model.graph.nodes if n.op == "placeholder"][-1]
            for user in image.users:
                ann = user.meta.get("quantization_annotation")
                if ann is None:  # a float first operation: the int8 input is dequantised into it
                    ann = user.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
                ann.input_qspec_map[image] = FixedQParamsQuantizationSpec(
                    dtype=torch.int8,
                    scale=scale,
                    zero_point=zero_point,
                    quant_min=-128,
                    quant_max=127,
                    qscheme=torch.per_tensor_affine,
                )
            return model

    q = InputFixedQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    q.set_module_type(scorer_type, None)
    for name in float_modules:
        q.module_name_config[name] = None
    return q


def export_tflite_int8(
    graph: ExportGraph, calibration: np.ndarray, scaling: str, path: Path, float_modules: Sequence[str] = ()
) -> None:
    """Write ``graph`` as TFLite with int8 input and an int8 backbone (scorer float), calibrated.

    ``float_modules``: module paths of ``graph`` kept in float too (e.g. ``backbone.features.6``).
    """
    names = dict(graph.named_modules())
    unknown = [m for m in float_modules if m not in names]
    if unknown:
        raise VadblocksError(
            f"int8 float modules {unknown} are not modules of the exported graph; "
            f"choose paths such as {', '.join([n for n in names if n.count('.') == 2][:3])}"
        )
    sample = torch.from_numpy(calibration[:1])
    with interrupts.deferred(), quiet():
        litert_torch = _require("litert_torch", "tflite-int8")
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = _quantizer(scaling, type(graph.scoring), float_modules)
        exported = torch.export.export(graph, (sample,), strict=True).module()
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for i in range(len(calibration)):
                prepared(torch.from_numpy(calibration[i : i + 1]))
        converted = convert_pt2e(prepared, fold_quantize=False)
        litert_torch.convert(converted, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))


def save_with_exports(
    model: AnomalyModel,
    out_dir: str | Path,
    formats: Sequence[str] = (),
    calibration: np.ndarray | None = None,
    int8_float_modules: Sequence[str] | None = None,
) -> Path:
    """Save ``model`` into ``out_dir`` (atomically) with the exported files of ``formats``.

    ``calibration``: training images (0..1 RGB) for the int8 model's quantisation;
    ``int8_float_modules``: module paths the int8 model keeps in float (see :func:`export_tflite_int8`);
    None: those of the model's ``int8-precision``.
    """
    return model.save(out_dir, lambda folder: write_exports(model, folder, formats, calibration, int8_float_modules))


def write_exports(
    model: AnomalyModel,
    out_dir: Path,
    formats: Sequence[str],
    calibration: np.ndarray | None = None,
    int8_float_modules: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write the requested model files into ``out_dir``; returns their metadata entries."""
    unknown = [f for f in formats if f not in FILES]
    if unknown:
        raise VadblocksError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)} or none")
    if not formats:
        return {}
    h, w, c = model.input_shape
    scaling = model.metadata.get("imageInputScaling", "0..1")
    graph = ExportGraph(model).eval()
    images = calibration if calibration is not None and len(calibration) else np.full((1, h, w, 3), 0.5, np.float32)
    sample_np = to_input_scaling(images[:1], scaling, c)
    sample = torch.from_numpy(sample_np)
    gh, gw = model.grid_shape
    precision = model.config.training[INT8_PRECISION.attr]
    if int8_float_modules is None:
        int8_float_modules = int8.float_modules(precision, model.backbone)
    entries: dict[str, Any] = {}
    for fmt in formats:
        path = out_dir / FILES[fmt]
        t0 = time.perf_counter()
        if fmt == "onnx":
            export_onnx(graph, sample, path)
        elif fmt == "tflite":
            export_tflite(graph, sample, path)
        else:
            step = max(1, len(images) // CALIBRATION_IMAGES)
            export_tflite_int8(
                graph,
                to_input_scaling(images[::step][:CALIBRATION_IMAGES], scaling, c),
                scaling,
                path,
                int8_float_modules,
            )
        entries[fmt] = {
            "file": FILES[fmt],
            "input": {
                "name": INPUT_NAME,
                "shape": [1, h, w, c],
                "dtype": "int8" if fmt == "tflite-int8" else "float32",
                "scaling": scaling,
            },
            "outputs": [
                {"name": "grid", "shape": [1, gh, gw], "dtype": "float32"},
                {"name": "score", "shape": [1], "dtype": "float32"},
            ],
            "bytes": os.path.getsize(path),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if fmt == "tflite-int8":
            entries[fmt]["precision"] = precision
            entries[fmt]["floatModules"] = list(int8_float_modules)
            if importlib.util.find_spec("tflite_micro") is not None:  # what a microcontroller would need
                entries[fmt]["tflm"] = micro.describe(path.read_bytes(), FILES[fmt])
    return entries

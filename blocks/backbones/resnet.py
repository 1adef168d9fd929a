"""ResNet18 and WideResNet50-2 backbones (torchvision), cut after layer2/layer3/layer4.

layer2 (stride 8) and layer3 (stride 16) are the maps of the PatchCore paper. ImageNet
weights come from torchvision's download cache (no offline copy is available) or --weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from framework import hookimpl
from framework.backbone import Backbone, FeatureLevel, load_state_by_position, load_weights_file
from framework.weights import torchvision_state

if TYPE_CHECKING:  # pragma: no cover - torch is imported on use (resnet_net.py)
    from torch import nn


class _TorchvisionResNet(Backbone):
    factory: ClassVar[str]  # torchvision.models function
    weights_enum: ClassVar[str]  # torchvision.models weights enum, member IMAGENET1K_V1
    offline_weights: ClassVar[bool] = False

    def create_module(self, num_levels: int) -> "nn.Module":
        import torchvision

        from blocks.backbones.resnet_net import ResNetFeatures

        self.levels_for(num_levels)
        return ResNetFeatures(getattr(torchvision.models, type(self).factory), num_levels)

    def load_pretrained(self, module: "nn.Module", weights: str | None = None) -> str:
        if weights:
            state, source = load_weights_file(weights), f"file:{weights}"
        else:
            import torchvision

            enum = getattr(torchvision.models, type(self).weights_enum).IMAGENET1K_V1
            state, source = torchvision_state(lambda: enum, self.name), f"torchvision:{enum}"
        # A full classification state dict (conv1, bn1, layer1..4, fc) has the same order as ours.
        load_state_by_position(module, state, source)
        return source


class ResNet18(_TorchvisionResNet):
    name: ClassVar[str] = "resnet18"
    description: ClassVar[str] = "ResNet18 (layer2/3/4), ImageNet weights by torchvision download"
    levels: ClassVar[tuple[FeatureLevel, ...]] = (FeatureLevel(8, 128), FeatureLevel(16, 256), FeatureLevel(32, 512))
    factory: ClassVar[str] = "resnet18"
    weights_enum: ClassVar[str] = "ResNet18_Weights"


class WideResNet50(_TorchvisionResNet):
    name: ClassVar[str] = "wide-resnet50"
    description: ClassVar[str] = (
        "WideResNet50-2 (layer2/3/4, the PatchCore paper's backbone), ImageNet weights by torchvision download"
    )
    levels: ClassVar[tuple[FeatureLevel, ...]] = (FeatureLevel(8, 512), FeatureLevel(16, 1024), FeatureLevel(32, 2048))
    factory: ClassVar[str] = "wide_resnet50_2"
    weights_enum: ClassVar[str] = "Wide_ResNet50_2_Weights"


@hookimpl
def register_backbones(register):
    register(ResNet18)
    register(WideResNet50)

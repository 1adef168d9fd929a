"""ResNet18 and WideResNet50-2 backbones (torchvision), cut after layer2/layer3/layer4.

layer2 (stride 8) and layer3 (stride 16) are the maps of the PatchCore paper. ImageNet
weights come from torchvision's download cache (no offline copy is available) or --weights.
"""

from __future__ import annotations

from typing import Callable, ClassVar

import torch
import torchvision
from torch import nn

from framework import hookimpl
from framework.backbone import Backbone, FeatureLevel, load_state_by_position, load_weights_file
from framework.weights import torchvision_state


class ResNetFeatures(nn.Module):
    """A torchvision ResNet's stem and layers up to the last selected one."""

    def __init__(self, factory: Callable[..., nn.Module], num_levels: int) -> None:
        super().__init__()
        net = factory(weights=None)
        self.num_levels = num_levels
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2 = net.layer1, net.layer2
        if num_levels >= 2:
            self.layer3 = net.layer3
        if num_levels >= 3:
            self.layer4 = net.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        outs = [self.layer2(x)]
        if self.num_levels >= 2:
            outs.append(self.layer3(outs[-1]))
        if self.num_levels >= 3:
            outs.append(self.layer4(outs[-1]))
        return outs


class _TorchvisionResNet(Backbone):
    factory: ClassVar[Callable[..., nn.Module]]
    weights_enum: ClassVar[Callable[[], object]]
    offline_weights: ClassVar[bool] = False

    def create_module(self, num_levels: int) -> nn.Module:
        self.levels_for(num_levels)
        return ResNetFeatures(type(self).factory, num_levels)

    def load_pretrained(self, module: nn.Module, weights: str | None = None) -> str:
        if weights:
            state, source = load_weights_file(weights), f"file:{weights}"
        else:
            enum = type(self).weights_enum()
            state, source = torchvision_state(lambda: enum, self.name), f"torchvision:{enum}"
        # A full classification state dict (conv1, bn1, layer1..4, fc) has the same order as ours.
        load_state_by_position(module, state, source)
        return source


class ResNet18(_TorchvisionResNet):
    name: ClassVar[str] = "resnet18"
    description: ClassVar[str] = "ResNet18 (layer2/3/4), ImageNet weights by torchvision download"
    levels: ClassVar[tuple[FeatureLevel, ...]] = (FeatureLevel(8, 128), FeatureLevel(16, 256), FeatureLevel(32, 512))
    factory = staticmethod(torchvision.models.resnet18)
    weights_enum = staticmethod(lambda: torchvision.models.ResNet18_Weights.IMAGENET1K_V1)


class WideResNet50(_TorchvisionResNet):
    name: ClassVar[str] = "wide-resnet50"
    description: ClassVar[str] = ("WideResNet50-2 (layer2/3/4, the PatchCore paper's backbone), ImageNet "
                                  "weights by torchvision download")
    levels: ClassVar[tuple[FeatureLevel, ...]] = (FeatureLevel(8, 512), FeatureLevel(16, 1024),
                                                  FeatureLevel(32, 2048))
    factory = staticmethod(torchvision.models.wide_resnet50_2)
    weights_enum = staticmethod(lambda: torchvision.models.Wide_ResNet50_2_Weights.IMAGENET1K_V1)


@hookimpl
def register_backbones(register):
    register(ResNet18)
    register(WideResNet50)

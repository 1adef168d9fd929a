"""The torchvision ResNet feature module (torch): stem and layers up to the last selected one."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


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

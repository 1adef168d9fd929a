"""The MobileNetV2 feature module (torch): torchvision's MobileNetV2 ``features``, truncated.

Built here layer for layer as torchvision builds it (same module names, parameter order and shapes, so
its state dicts load as they are), without importing torchvision: that import alone costs about two
seconds of every training run (it loads torch._dynamo), a tenth of a default fit.
"""

from __future__ import annotations

import torch
from torch import nn

from blocks.backbones.mobilenetv2 import _make_divisible
from framework.backbone import tap_features

# `features` indices after which each level is taken: features.6 (stride 8),
# features.13 (stride 16), features.17 (stride 32) -- as anomalib's layer names.
CUTS = (7, 14, 18)
# torchvision's inverted-residual settings: expansion t, output channels c, repeats n, first stride s
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn_relu6(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` with batch norm and ReLU6 (children 0, 1, 2)."""
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: expand (1x1), depthwise 3x3, project (1x1, linear); residual if shapes match."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = [conv_bn_relu6(inp, hidden, kernel=1)] if expand_ratio != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def mobilenet_v2_features(width_mult: float) -> nn.Sequential:
    """``torchvision.models.mobilenet_v2(width_mult=...).features`` (untrained): stem, 17 blocks, last 1x1 conv."""
    inp = _make_divisible(32 * width_mult)
    layers: list[nn.Module] = [conv_bn_relu6(3, inp, stride=2)]
    for t, c, n, s in SETTINGS:
        out = _make_divisible(c * width_mult)
        for i in range(n):
            layers.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
            inp = out
    layers.append(conv_bn_relu6(inp, _make_divisible(1280 * max(1.0, width_mult)), kernel=1))
    return nn.Sequential(*layers)


class MobileNetV2Features(nn.Module):
    """MobileNetV2's ``features`` truncated after the last selected level."""

    def __init__(self, width_mult: float, num_levels: int) -> None:
        super().__init__()
        self.cuts = CUTS[:num_levels]
        self.features = mobilenet_v2_features(width_mult)[: self.cuts[-1]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return tap_features(self.features, x, self.cuts)

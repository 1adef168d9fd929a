"""The MobileNetV2 feature module (torch): torchvision's MobileNetV2 ``features``, truncated."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from framework.backbone import tap_features

# `features` indices after which each level is taken: features.6 (stride 8),
# features.13 (stride 16), features.17 (stride 32) -- as anomalib's layer names.
CUTS = (7, 14, 18)


class MobileNetV2Features(nn.Module):
    """``torchvision.models.mobilenet_v2(...).features`` truncated after the last selected level."""

    def __init__(self, width_mult: float, num_levels: int) -> None:
        super().__init__()
        self.cuts = CUTS[:num_levels]
        full = torchvision.models.mobilenet_v2(weights=None, width_mult=width_mult).features
        self.features = full[: self.cuts[-1]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return tap_features(self.features, x, self.cuts)

"""PaDiM scorer plugin for vadblocks: a Gaussian per grid cell, Mahalanobis distance."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.covariance import ledoit_wolf
from torch import nn

from framework import hookimpl
from framework.errors import VadblocksError
from framework.params import Param
from framework.scorer import Features, Scorer, check_features

__version__ = "0.1.0"


def stack_levels(features: Features, levels: int) -> torch.Tensor:
    """Upsample deeper maps to the stride-8 grid and concatenate channels: (N, C, H, W)."""
    size = features[0].shape[-2:]
    maps = [
        f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        for f in features[:levels]
    ]
    return torch.cat(maps, dim=1)


class PaDiMModule(nn.Module):
    """Feature maps -> (Mahalanobis distance per cell, max over cells)."""

    def __init__(self, channels: torch.Tensor, mean: torch.Tensor, inv_cov: torch.Tensor, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.register_buffer("channels", channels)  # (D,) selected channel indices
        self.register_buffer("mean", mean)  # (L, D), L = H*W cells
        self.register_buffer("inv_cov", inv_cov)  # (L, D, D)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = stack_levels(features, self.levels).index_select(1, self.channels)
        n, d, h, w = x.shape
        delta = x.reshape(n, d, h * w).permute(0, 2, 1) - self.mean  # (N, L, D)
        m2 = torch.einsum("nld,lde,nle->nl", delta, self.inv_cov, delta).clamp_min(0.0)
        grid = m2.sqrt().reshape(n, h, w)
        return grid, grid.flatten(1).amax(1)


class PaDiM(Scorer):
    name: ClassVar[str] = "padim"
    description: ClassVar[str] = "PaDiM: Gaussian per grid cell with shrunk covariance, Mahalanobis distance"
    parameters: ClassVar[tuple[Param, ...]] = (
        Param(
            "padim-layers",
            "int",
            2,
            "Backbone feature levels to concatenate (1 = stride 8 only)",
            label="PaDiM layers",
            min=1,
            max=3,
        ),
        Param(
            "padim-dim",
            "int",
            64,
            "Feature channels kept (seeded random selection)",
            label="PaDiM dimensions",
            min=4,
            max=256,
        ),
    )
    seed: ClassVar[int] = 0

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.state: dict[str, np.ndarray] | None = None

    def feature_levels(self) -> int:
        return self.params["padim_layers"]

    def grid_size(self, input_size: int) -> int:
        return input_size // 8

    def fit(self, features: Features) -> "PaDiM":
        check_features(features, self.feature_levels())
        x = stack_levels(features, self.feature_levels())
        n, c, h, w = x.shape
        if n < 2:
            raise VadblocksError("PaDiM needs at least 2 training images to estimate covariances")
        d = min(self.params["padim_dim"], c)
        rng = np.random.default_rng(self.seed)
        channels = np.sort(rng.choice(c, size=d, replace=False)).astype(np.int64)
        cells = x[:, torch.from_numpy(channels)].reshape(n, d, h * w).permute(2, 0, 1).double().numpy()  # (L, N, D)
        mean = cells.mean(axis=1)
        inv_cov = np.empty((h * w, d, d))
        for i in range(h * w):
            cov, _ = ledoit_wolf(cells[i])
            inv_cov[i] = np.linalg.inv(cov + 1e-6 * np.eye(d))
        self.state = {"channels": channels, "mean": mean.astype(np.float32), "inv_cov": inv_cov.astype(np.float32)}
        self._invalidate()
        return self

    def build_scoring_module(self) -> nn.Module:
        if self.state is None:
            raise VadblocksError("PaDiM is not fitted: call fit() on normal images first")
        s = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.state.items()}
        return PaDiMModule(s["channels"], s["mean"], s["inv_cov"], self.feature_levels())

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.state is None:
            raise VadblocksError("PaDiM is not fitted")
        return dict(self.state), {"cells": int(self.state["mean"].shape[0]), "dim": int(self.state["mean"].shape[1])}

    def set_state(self, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> "PaDiM":
        if {"channels", "mean", "inv_cov"} - set(arrays):
            raise VadblocksError("PaDiM state is corrupt: expected arrays channels, mean, inv_cov")
        self.state = {k: np.asarray(arrays[k]) for k in ("channels", "mean", "inv_cov")}
        self._invalidate()
        return self


@hookimpl
def register_scorers(register):
    register(PaDiM)

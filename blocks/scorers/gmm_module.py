"""GMM's torch side: cell pooling and the scoring module (mixture baked in).

Imported on use by :mod:`blocks.scorers.gmm`, whose declarations load without torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def pool_cells(stride8: torch.Tensor, projection: torch.Tensor, pool: int, stride: int) -> torch.Tensor:
    """Project channels and average ``pool`` x ``pool`` windows with ``stride``: (N, C, H, W) -> (N, D, G, G)."""
    x = torch.einsum("nchw,cd->ndhw", stride8, projection)
    return F.avg_pool2d(x, pool, stride=stride)


class GMMModule(nn.Module):
    """Feature maps -> (standardised NLL grid, max cell score), equal to sklearn's ``score_samples``."""

    def __init__(
        self,
        projection: torch.Tensor,
        means: torch.Tensor,
        prec_chol: torch.Tensor,
        weights: torch.Tensor,
        nll_mean: float,
        nll_std: float,
        pool: int,
        stride: int,
    ) -> None:
        super().__init__()
        self.pool, self.stride = pool, stride
        d = means.shape[1]
        self.register_buffer("projection", projection)
        self.register_buffer("prec_chol", prec_chol)  # (K, D, D)
        self.register_buffer("mean_proj", torch.einsum("kd,kde->ke", means, prec_chol))  # (K, D)
        log_det = torch.log(torch.diagonal(prec_chol, dim1=1, dim2=2)).sum(1)
        self.register_buffer("log_const", torch.log(weights) + log_det - 0.5 * d * math.log(2 * math.pi))
        self.nll_mean = float(nll_mean)
        self.nll_std = float(nll_std)

    def nll(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Negative log-likelihood of each cell, (N, G, G)."""
        cells = pool_cells(features[0], self.projection, self.pool, self.stride)  # (N, D, G, G)
        n, d, gh, gw = cells.shape
        x = cells.permute(0, 2, 3, 1).reshape(n, gh * gw, d)
        y = torch.einsum("nld,kde->nlke", x, self.prec_chol) - self.mean_proj  # (N, L, K, D)
        log_prob = self.log_const - 0.5 * (y * y).sum(-1)  # (N, L, K)
        return -torch.logsumexp(log_prob, dim=-1).reshape(n, gh, gw)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        grid = (self.nll(features) - self.nll_mean) / self.nll_std
        return grid, grid.flatten(1).amax(1)

"""GMM scorer: a Gaussian mixture over pooled stride-8 patch features (Edge Impulse's FOMO-AD GMM).

Stride-8 features are reduced by a seeded random projection, averaged over 4x4 windows with
stride 2 (grid = (W/8)/2 - 1, 5x5 at 96x96), and modelled by one full-covariance
``sklearn.mixture.GaussianMixture`` shared by all cells. A cell's score is its negative
log-likelihood standardised by the mean and spread of the training cells' scores; the image
score is the largest cell score.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from framework import hookimpl
from framework.errors import VadblocksError
from framework.params import Param
from framework.scorer import Features, Scorer, check_features

if TYPE_CHECKING:  # pragma: no cover - torch is imported on use (gmm_module.py)
    import torch
    from torch import nn

CAPACITY_COMPONENTS = {"low": 2, "medium": 4, "high": 8}
PROJECTION_DIM = 32
POOL, POOL_STRIDE = 4, 2
REG_COVAR = 1e-3


class GMM(Scorer):
    name: ClassVar[str] = "gmm"
    description: ClassVar[str] = "Gaussian mixture per pooled cell (small and fast; for microcontrollers)"
    parameters: ClassVar[tuple[Param, ...]] = (
        Param(
            "capacity",
            "select",
            "medium",
            "Mixture components: "
            + ", ".join(f"{k} = {v}" for k, v in CAPACITY_COMPONENTS.items())
            + " (more fits more varied normal images)",
            label="Capacity",
            options=tuple(CAPACITY_COMPONENTS),
        ),
    )
    seed: ClassVar[int] = 0

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.state: dict[str, np.ndarray] | None = None

    def grid_size(self, input_size: int) -> int:
        return (input_size // 8 - POOL) // POOL_STRIDE + 1

    def _projection(self, channels: int) -> "torch.Tensor":
        import torch

        gen = torch.Generator().manual_seed(self.seed)
        return torch.randn(channels, PROJECTION_DIM, generator=gen) / math.sqrt(PROJECTION_DIM)

    def fit(self, features: Features) -> "GMM":
        import torch

        from blocks.scorers.gmm_module import pool_cells

        check_features(features, 1)
        if features[0].shape[-1] < POOL or features[0].shape[-2] < POOL:
            raise VadblocksError(f"GMM needs a stride-8 map of at least {POOL}x{POOL} cells (input >= 32 px)")
        projection = self._projection(features[0].shape[1])
        with torch.inference_mode():
            cells = pool_cells(features[0], projection, POOL, POOL_STRIDE)
        x = cells.permute(0, 2, 3, 1).reshape(-1, PROJECTION_DIM).double().numpy()
        k = min(CAPACITY_COMPONENTS[self.params["capacity"]], len(x))
        from sklearn.mixture import GaussianMixture  # imported on use: scikit-learn costs ~100 MB of RSS

        gm = GaussianMixture(k, covariance_type="full", reg_covar=REG_COVAR, max_iter=200, random_state=self.seed).fit(
            x
        )
        nll = -gm.score_samples(x)
        self.state = {
            "projection": projection.numpy(),
            "means": gm.means_.astype(np.float32),
            "precisions_cholesky": gm.precisions_cholesky_.astype(np.float32),
            "weights": gm.weights_.astype(np.float32),
            "nll_stats": np.array([nll.mean(), max(nll.std(), 1e-6)], np.float64),
        }
        self.mixture = gm
        self._invalidate()
        return self

    def build_scoring_module(self) -> "nn.Module":
        import torch

        from blocks.scorers.gmm_module import GMMModule

        if self.state is None:
            raise VadblocksError("GMM is not fitted: call fit() on normal images first")
        s = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.state.items()}
        return GMMModule(
            s["projection"],
            s["means"],
            s["precisions_cholesky"],
            s["weights"],
            float(s["nll_stats"][0]),
            float(s["nll_stats"][1]),
            POOL,
            POOL_STRIDE,
        )

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.state is None:
            raise VadblocksError("GMM is not fitted")
        return dict(self.state), {"components": int(self.state["means"].shape[0]), "projection_dim": PROJECTION_DIM}

    def set_state(self, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> "GMM":
        need = ("projection", "means", "precisions_cholesky", "weights", "nll_stats")
        missing = [k for k in need if k not in arrays]
        if missing:
            raise VadblocksError(f"GMM state is corrupt: missing arrays {missing}")
        k, d = arrays["means"].shape
        if arrays["precisions_cholesky"].shape != (k, d, d) or arrays["weights"].shape != (k,):
            raise VadblocksError("GMM state is corrupt: inconsistent component shapes")
        self.state = {n: np.asarray(arrays[n]) for n in need}
        self._invalidate()
        return self


@hookimpl
def register_scorers(register):
    register(GMM)

"""PatchCore (Roth et al. 2022, "Towards Total Recall in Industrial Anomaly Detection").

Locally aware patch features (neighbourhood average pooling, deeper maps upsampled to the
stride-8 grid and concatenated), a greedy k-center coreset chosen on a seeded random
projection, and nearest-neighbour distances to that memory bank. The image score is the
largest patch distance reweighted as in the paper (softmax over the distances from the
most anomalous patch to the nearest bank entry's neighbourhood).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from framework import hookimpl
from framework.errors import VadblocksError
from framework.params import Param
from framework.scorer import Features, Scorer, check_features

PROJECTION_DIM = 128
DISTANCE_CHUNK = 4096  # rows of a pairwise distance block
BANK_CHUNK = 8192  # bank entries scored at once: bounds scoring memory to HW x 8192 floats per image


def embed(features: Features, num_levels: int, pool_size: int) -> torch.Tensor:
    """Pool each level over a ``pool_size`` neighbourhood, upsample to the stride-8 grid, concatenate.

    The pooling counts the zero padding (as the reference implementation does): border cells get
    features of their own, which measurably helps (demo image AUROC 0.967-0.983 -> 1.000).
    """
    maps = []
    size = features[0].shape[-2:]
    for f in features[:num_levels]:
        if pool_size > 1:
            f = F.avg_pool2d(f, pool_size, stride=1, padding=pool_size // 2, count_include_pad=True)
        if f.shape[-2:] != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        maps.append(f)
    return torch.cat(maps, dim=1)


def squared_distances(x: torch.Tensor, y: torch.Tensor, y_sq: torch.Tensor | None = None) -> torch.Tensor:
    """``|x - y|^2`` for all row pairs by matmul (``|x|^2 + |y|^2 - 2 x.y``), clamped at 0."""
    if y_sq is None:
        y_sq = (y * y).sum(-1)
    d = (x * x).sum(-1, keepdim=True) + y_sq - 2.0 * x @ y.transpose(-1, -2)
    return d.clamp_min(0.0)


def greedy_coreset(points: torch.Tensor, n_select: int, seed: int, progress: bool = True) -> torch.Tensor:
    """Indices of a greedy k-center coreset of ``points`` (approximate: run on a random projection)."""
    n, dim = points.shape
    gen = torch.Generator().manual_seed(seed)
    if dim > PROJECTION_DIM:
        proj = torch.randn(dim, PROJECTION_DIM, generator=gen) / math.sqrt(PROJECTION_DIM)
        points = points @ proj
    sq = (points * points).sum(1)
    selected = torch.empty(n_select, dtype=torch.long)
    idx = torch.randint(n, (1,), generator=gen)[0]
    min_d = torch.full((n,), float("inf"))
    for i in tqdm(range(n_select), desc="coreset", unit="pt", disable=not progress, mininterval=1.0,
                  leave=False):
        selected[i] = idx
        d = sq + sq[idx] - 2.0 * (points @ points[idx])
        torch.minimum(min_d, d, out=min_d)
        idx = torch.argmax(min_d)
    return selected


class PatchCoreModule(nn.Module):
    """Feature maps -> (grid of nearest-bank distances, reweighted image score)."""

    def __init__(self, bank: torch.Tensor, bank_knn: torch.Tensor, num_levels: int, pool_size: int) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.pool_size = pool_size
        self.register_buffer("bank", bank)
        self.register_buffer("bank_sq", (bank * bank).sum(1))
        self.register_buffer("bank_knn", bank_knn)

    def nearest(self, x: torch.Tensor, exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distance to, and index of, the nearest bank entry for each row of ``x`` (N, L, C).

        The bank is scanned in static chunks of ``BANK_CHUNK`` entries, so the distance block never
        exceeds N x L x BANK_CHUNK floats whatever the bank size (also in exported graphs).
        """
        best_d = best_i = None
        for start in range(0, self.bank.shape[0], BANK_CHUNK):
            stop = min(start + BANK_CHUNK, self.bank.shape[0])
            d2 = squared_distances(x, self.bank[start:stop], self.bank_sq[start:stop])  # (N, L, chunk)
            if exclude is not None:
                d2 = d2.masked_fill(exclude[:, None, start:stop], float("inf"))
            d, i = d2.min(dim=-1)
            i = i + start
            if best_d is None:
                best_d, best_i = d, i
            else:
                closer = d < best_d
                best_d, best_i = torch.where(closer, d, best_d), torch.where(closer, i, best_i)
        return best_d, best_i

    def forward(self, features: list[torch.Tensor],
                exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``exclude`` (N, M) bool masks bank entries per image (leave-one-out training scores)."""
        emb = embed(features, self.num_levels, self.pool_size)
        n, c, h, w = emb.shape
        x = emb.permute(0, 2, 3, 1).reshape(n, h * w, c)
        min_d2, nearest = self.nearest(x, exclude)
        patch = min_d2.sqrt()
        grid = patch.reshape(n, h, w)
        top, where = patch.max(dim=1)
        if self.bank_knn.shape[1] < 2:
            return grid, top
        m_star = nearest.gather(1, where[:, None])[:, 0]
        support = self.bank_knn[m_star]  # (N, k)
        x_star = x.gather(1, where[:, None, None].expand(n, 1, c))  # (N, 1, C)
        sup = self.bank[support]  # (N, k, C)
        d_sup = squared_distances(x_star, sup, self.bank_sq[support][:, None, :])[:, 0].sqrt()
        weight = 1.0 - torch.softmax(d_sup, dim=-1)[:, 0]
        return grid, weight * top


class PatchCore(Scorer):
    name: ClassVar[str] = "patchcore"
    description: ClassVar[str] = "coreset memory bank + k nearest neighbours (accurate; for capable targets)"
    parameters: ClassVar[tuple[Param, ...]] = (
        Param("num-layers", "int", 2, "Backbone feature levels to use: 1 = stride 8 only, 2 adds stride 16, "
              "3 adds stride 32", label="Number of layers", min=1, max=3),
        Param("pool-size", "int", 3, "Neighbourhood average pooling window around each patch (odd; 1 = none)",
              label="Pool size", min=1, max=9),
        Param("sampling-ratio", "float", 0.1, "Fraction of training patches kept in the coreset memory bank",
              label="Sampling ratio", min=0.0001, max=1.0),
        Param("num-nearest-neighbors", "int", 9, "Nearest neighbours of a memory-bank entry used to reweight "
              "the image score (1 = plain maximum)", label="Number of nearest neighbors", min=1, max=100),
    )
    seed: ClassVar[int] = 0

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["pool_size"] % 2 == 0:
            raise VadblocksError(f"--pool-size: {self.params['pool_size']} is not valid; expected an odd number")
        self.bank: torch.Tensor | None = None
        self.bank_knn: torch.Tensor | None = None
        self._bank_images: torch.Tensor | None = None  # training image index of each bank entry

    def feature_levels(self) -> int:
        return self.params["num_layers"]

    def grid_size(self, input_size: int) -> int:
        return input_size // 8

    def fit(self, features: Features) -> "PatchCore":
        check_features(features, self.feature_levels())
        with torch.inference_mode():
            emb = embed(features, self.feature_levels(), self.params["pool_size"])
            patches = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).contiguous()
            n_select = max(1, min(len(patches), int(round(self.params["sampling_ratio"] * len(patches)))))
            if n_select < len(patches):
                chosen = greedy_coreset(patches, n_select, self.seed, self.verbose)
            else:
                chosen = torch.arange(len(patches))
            bank = patches[chosen].clone()
            self._bank_images = chosen // (emb.shape[2] * emb.shape[3])  # training image of each entry
            self._set_bank(bank, bank_neighbours(bank, self.params["num_nearest_neighbors"]))
        return self

    def training_scores(self, features: Features) -> np.ndarray:
        """Leave-one-image-out scores: each training image is scored without its own bank entries.

        Scoring an image against patches memorised from itself gives distances near 0 and a
        threshold that every unseen normal image exceeds; excluding them estimates how
        normal unseen images score.
        """
        owners = self._bank_images
        if owners is None or int(owners.max()) + 1 != features[0].shape[0] or len(set(owners.tolist())) < 2:
            return super().training_scores(features)
        module = self.scoring_module()
        out = []
        with torch.inference_mode():
            for i in range(0, features[0].shape[0], self.batch_size):
                batch = [f[i:i + self.batch_size] for f in features]
                ids = torch.arange(i, i + batch[0].shape[0])
                out.append(module(batch, exclude=ids[:, None] == owners[None, :])[1].numpy())
        return np.concatenate(out)

    def _set_bank(self, bank: torch.Tensor, knn: torch.Tensor) -> None:
        self.bank, self.bank_knn = bank, knn
        self._invalidate()

    def build_scoring_module(self) -> nn.Module:
        if self.bank is None or self.bank_knn is None:
            raise VadblocksError("PatchCore is not fitted: call fit() on normal images first")
        return PatchCoreModule(self.bank, self.bank_knn, self.feature_levels(), self.params["pool_size"])

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.bank is None or self.bank_knn is None:
            raise VadblocksError("PatchCore is not fitted")
        arrays = {"bank": self.bank.numpy(), "bank_knn": self.bank_knn.numpy()}
        if self._bank_images is not None:
            arrays["bank_images"] = self._bank_images.numpy()
        return (arrays,
                {"bank_size": int(self.bank.shape[0]), "feature_dim": int(self.bank.shape[1])})

    def set_state(self, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> "PatchCore":
        bank, knn = arrays.get("bank"), arrays.get("bank_knn")
        if bank is None or knn is None or bank.ndim != 2 or knn.ndim != 2 or knn.shape[0] != bank.shape[0]:
            raise VadblocksError("PatchCore state is corrupt: expected arrays bank (M, C) and bank_knn (M, k)")
        self._set_bank(torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32)),
                       torch.from_numpy(np.ascontiguousarray(knn, dtype=np.int64)))
        owners = arrays.get("bank_images")
        self._bank_images = None if owners is None else torch.from_numpy(owners.astype(np.int64))
        return self


def bank_neighbours(bank: torch.Tensor, k: int) -> torch.Tensor:
    """For each bank entry the indices of its ``k`` nearest bank entries, itself first."""
    k = min(k, bank.shape[0])
    sq = (bank * bank).sum(1)
    out = []
    for i in range(0, bank.shape[0], DISTANCE_CHUNK):
        d = squared_distances(bank[i:i + DISTANCE_CHUNK], bank, sq)
        rows = torch.arange(i, min(i + DISTANCE_CHUNK, bank.shape[0]))
        d[torch.arange(len(rows)), rows] = -1.0  # itself first, even among duplicates
        out.append(torch.topk(d, k, dim=1, largest=False).indices)
    return torch.cat(out)


@hookimpl
def register_scorers(register):
    register(PatchCore)

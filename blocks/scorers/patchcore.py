"""PatchCore (Roth et al. 2022, "Towards Total Recall in Industrial Anomaly Detection").

Locally aware patch features (neighbourhood average pooling, deeper maps upsampled to the
stride-8 grid and concatenated), a greedy k-center coreset chosen on a seeded random
projection, and nearest-neighbour distances to that memory bank. The image score is the
largest patch distance reweighted as in the paper (softmax over the distances from the
most anomalous patch to the nearest bank entry's neighbourhood).
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from blocks.scorers.coreset import StreamingCoreset
from framework import hookimpl
from framework.errors import VadblocksError
from framework.params import Param
from framework.scorer import Features, Scorer, check_features

CHUNK_PATCHES = 32768  # stage-1 coreset chunk: up to 2x this many training patches get the exact coreset
BANK_CHUNK = 8192  # bank entries scored at once: bounds scoring memory to HW x 8192 floats per image
BLOCK_ELEMENTS = 1 << 19  # in-process distance blocks (patches x bank entries) stay within 2 MB (L2-sized)


def pooled_levels(features: Features, num_levels: int, pool_size: int) -> list[torch.Tensor]:
    """Each level averaged over a ``pool_size`` neighbourhood, at its own resolution.

    The pooling counts the zero padding (as the reference implementation does): border cells get
    features of their own, which measurably helps (demo image AUROC 0.967-0.983 -> 1.000).
    """
    if pool_size == 1:
        return list(features[:num_levels])
    return [F.avg_pool2d(f, pool_size, stride=1, padding=pool_size // 2, count_include_pad=True)
            for f in features[:num_levels]]


def upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of an NCHW map to ``size`` (identity when it already has that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def concat_levels(maps: list[torch.Tensor]) -> torch.Tensor:
    """Pooled levels upsampled to the stride-8 grid and concatenated along channels (NCHW)."""
    return torch.cat([upsample(m, maps[0].shape[-2:]) for m in maps], dim=1)


def embed(features: Features, num_levels: int, pool_size: int) -> torch.Tensor:
    """PatchCore's patch features as an NCHW map: :func:`pooled_levels`, then :func:`concat_levels`."""
    return concat_levels(pooled_levels(features, num_levels, pool_size))


def patch_rows(emb: torch.Tensor) -> torch.Tensor:
    """An NCHW patch-feature map as ``(N, H*W, C)`` rows."""
    n, c, h, w = emb.shape
    return emb.permute(0, 2, 3, 1).reshape(n, h * w, c)


def patches_of(features: Features, num_levels: int, pool_size: int) -> torch.Tensor:
    """Patch features ``(N, H*W, C)`` of a batch of feature maps."""
    return patch_rows(embed(features, num_levels, pool_size))


def level_channels(maps: list[torch.Tensor]) -> list[tuple[int, int]]:
    """``(first, count)`` of each level's channels in the concatenated patch feature (and the bank)."""
    out, first = [], 0
    for f in maps:
        out.append((first, f.shape[1]))
        first = first + f.shape[1]  # not +=: under tracing, shapes are tensors that += would mutate
    return out


class PatchCoreModule(nn.Module):
    """Feature maps -> (grid of nearest-bank distances, reweighted image score).

    ``|x - b|^2 = |x|^2 + (|b|^2 - 2 x.b)``; the bracket is one GEMM per level with the bias folded
    in (``addmm`` -> ONNX Gemm), then one min-reduction. Deeper levels reach the stride-8 grid by
    bilinear upsampling, which is linear, so their dot products are taken at the level's own
    resolution and upsampled instead of the features: 4x (16x) fewer multiply-adds for a stride-16
    (32) level, the same distances. The nearest entry's index is only looked up for the most
    anomalous patch, which the score reweighting needs.
    """

    def __init__(self, bank: torch.Tensor, bank_knn: torch.Tensor, num_levels: int, pool_size: int) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.pool_size = pool_size
        self.register_buffer("bank_t", bank.t().contiguous())  # (C, M)
        self.register_buffer("bank_sq", (bank * bank).sum(1))
        self.register_buffer("bank_knn", bank_knn)

    def min_distances(self, maps: list[torch.Tensor], exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Squared distance from each stride-8 patch to its nearest bank entry, (N, H*W).

        ``maps``: the pooled levels (:func:`pooled_levels`). The bank is scanned in static chunks of
        ``BANK_CHUNK`` entries and the images in groups, so a distance block never exceeds
        H*W x BANK_CHUNK floats per image (also in exported graphs). ``exclude`` (N, M) bool leaves
        bank entries out per image.
        """
        n, _, h, w = maps[0].shape
        l, m = h * w, self.bank_t.shape[1]
        group = max(1, BLOCK_ELEMENTS // (l * min(m, BANK_CHUNK)))
        parts = []
        for g in range(0, n, group):
            rows = [f[g:g + group].permute(0, 2, 3, 1) for f in maps]  # NHWC per level
            ng = rows[0].shape[0]
            best = None
            for start in range(0, m, BANK_CHUNK):
                stop = min(start + BANK_CHUNK, m)
                d = None
                for r, (first, c) in zip(rows, level_channels(maps)):
                    bank = self.bank_t[first:first + c, start:stop]
                    if d is None:
                        d = torch.addmm(self.bank_sq[start:stop], r.reshape(-1, c), bank, alpha=-2.0)
                    else:  # -2 x.b at the level's resolution, upsampled (channels last: no copies)
                        dots = (r.reshape(-1, c) @ bank).view(ng, r.shape[1], r.shape[2], -1)
                        d = d + upsample(dots.permute(0, 3, 1, 2), (h, w)).permute(0, 2, 3, 1).reshape(
                            ng * l, -1) * -2.0
                if exclude is not None:
                    d = d.view(ng, l, -1).masked_fill_(exclude[g:g + group, None, start:stop], float("inf"))
                    d = d.view(ng * l, -1)
                d = d.amin(dim=1)
                best = d if best is None else torch.minimum(best, d)
            parts.append(best.view(ng, l))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def forward(self, features: list[torch.Tensor],
                exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``exclude`` (N, M) bool masks bank entries per image (leave-one-out training scores)."""
        maps = pooled_levels(features, self.num_levels, self.pool_size)
        n, _, h, w = maps[0].shape
        x = patch_rows(concat_levels(maps))
        c = x.shape[-1]
        patch = (self.min_distances(maps, exclude) + (x * x).sum(-1)).clamp_min(0.0).sqrt()
        grid = patch.reshape(n, h, w)
        top, where = patch.max(dim=1)
        if self.bank_knn.shape[1] < 2:
            return grid, top
        x_star = x.gather(1, where[:, None, None].expand(n, 1, c))[:, 0]  # (N, C)
        d_star = self.bank_sq  # (N, M), by the same bank slices as the grid (no second copy in files)
        for first, c_l in level_channels(maps):
            d_star = torch.addmm(d_star, x_star[:, first:first + c_l], self.bank_t[first:first + c_l], alpha=-2.0)
        if exclude is not None:
            d_star = d_star.masked_fill(exclude, float("inf"))
        support = self.bank_knn[d_star.argmin(dim=1)]  # (N, k): nearest entry first, then its neighbours
        sup = self.bank_t[:, support].permute(1, 2, 0)  # (N, k, C)
        d_sup = (x_star[:, None, :] - sup).pow(2).sum(-1).sqrt()
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
        self.coreset_stats: dict[str, Any] = {}

    def feature_levels(self) -> int:
        return self.params["num_layers"]

    def grid_size(self, input_size: int) -> int:
        return input_size // 8

    def fit(self, features: Features) -> "PatchCore":
        return self.fit_batches([features])

    def fit_batches(self, batches: Iterable[Features]) -> "PatchCore":
        """Stream the training patches into the two-stage coreset (exact up to 2 chunks of patches)."""
        stream = StreamingCoreset(self.params["sampling_ratio"], CHUNK_PATCHES, self.seed)
        n_images = 0
        with torch.inference_mode():
            for features in batches:
                check_features(features, self.feature_levels())
                x = patches_of(features, self.feature_levels(), self.params["pool_size"])
                n, l, c = x.shape
                stream.add(x.reshape(n * l, c).numpy(), np.repeat(np.arange(n_images, n_images + n), l))
                n_images += n
        if not n_images:
            raise VadblocksError("no images to fit (empty feature stream)")
        bank, owners = stream.finish()
        self.coreset_stats = stream.stats
        bank = torch.from_numpy(np.ascontiguousarray(bank))
        self._bank_images = torch.from_numpy(owners)
        self._set_bank(bank, bank_neighbours(bank, self.params["num_nearest_neighbors"]))
        return self

    def training_scores(self, features: Features) -> np.ndarray:
        return self.training_scores_batches([features])

    def training_scores_batches(self, batches: Iterable[Features]) -> np.ndarray:
        """Leave-one-image-out scores: each training image is scored without its own bank entries.

        Scoring an image against patches memorised from itself gives distances near 0 and a
        threshold that every unseen normal image exceeds; excluding them estimates how
        normal unseen images score. ``batches`` must be the stream given to :meth:`fit_batches`.
        """
        owners = self._bank_images
        if owners is not None and len(torch.unique(owners)) < 2:
            owners = None  # a single training image: nothing would be left to compare with
        module = self.scoring_module()
        out, offset = [], 0
        with torch.inference_mode():
            for features in tqdm(batches, desc="threshold", unit="batch", disable=not self.verbose, leave=False,
                                 mininterval=1.0):
                check_features(features, self.feature_levels())
                for i in range(0, features[0].shape[0], self.batch_size):
                    batch = [f[i:i + self.batch_size] for f in features]
                    ids = torch.arange(offset, offset + batch[0].shape[0])
                    exclude = None if owners is None else ids[:, None] == owners[None, :]
                    out.append(module(batch, exclude=exclude)[1].numpy())
                    offset += batch[0].shape[0]
        if owners is not None and int(owners.max()) >= offset:
            raise VadblocksError(f"training_scores got {offset} images but the bank was fitted on more; "
                                 "pass the training set fit() saw")
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
        return (arrays, {"bank_size": int(self.bank.shape[0]), "feature_dim": int(self.bank.shape[1]),
                         "coreset": self.coreset_stats})

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
    m = bank.shape[0]
    k = min(k, m)
    sq = (bank * bank).sum(1)
    bank_t = bank.t().contiguous()
    rows = max(1, BLOCK_ELEMENTS // m)
    out = []
    with torch.inference_mode():
        for i in range(0, m, rows):
            d = torch.addmm(sq, bank[i:i + rows], bank_t, alpha=-2.0)  # |b|^2 - 2 a.b: same order as |a - b|^2
            own = torch.arange(i, min(i + rows, m))
            d[torch.arange(len(own)), own] = -float("inf")  # itself first, even among duplicates
            out.append(torch.topk(d, k, dim=1, largest=False).indices)
    return torch.cat(out)


@hookimpl
def register_scorers(register):
    register(PatchCore)

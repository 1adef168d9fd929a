"""PatchCore's torch side: locally aware patch features and the scoring module (bank baked in).

Imported on use by :mod:`blocks.scorers.patchcore`, whose declarations load without torch.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from framework.scorer import Features

BANK_CHUNK = 512  # bank entries scored at once: bounds scoring memory to HW x 512 floats per image (also on devices)
MAX_CONCAT = 10  # inputs of one concatenation in exported graphs (TensorFlow Lite Micro's limit)
BLOCK_ELEMENTS = 1 << 19  # in-process distance blocks (patches x bank entries) stay within 2 MB (L2-sized)


def join_columns(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(parts, dim=1)`` of (N, M_i) blocks; beyond :data:`MAX_CONCAT` blocks each is zero-padded to
    its place and the blocks are added (converters merge nested concatenations into one, and TensorFlow Lite
    Micro concatenates at most 10 inputs)."""
    if len(parts) <= MAX_CONCAT:
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    total, start, out = sum(p.shape[1] for p in parts), 0, None
    for p in parts:
        placed = F.pad(p, (start, total - start - p.shape[1]))
        out = placed if out is None else out + placed
        start += p.shape[1]
    return out


def pooled_levels(features: Features, num_levels: int, pool_size: int, unpooled: bool = False) -> list[torch.Tensor]:
    """Each level averaged over a ``pool_size`` neighbourhood, at its own resolution; with ``unpooled``
    (and a pool above 1) the stride-8 level also comes first as it is, so small defects stay sharp
    while the pooled maps see their neighbourhood.

    The pooling counts the zero padding (as the reference implementation does): border cells get
    features of their own, which measurably helps (demo image AUROC 0.967-0.983 -> 1.000).
    """
    if pool_size == 1:
        return list(features[:num_levels])
    pooled = [
        F.avg_pool2d(f, pool_size, stride=1, padding=pool_size // 2, count_include_pad=True)
        for f in features[:num_levels]
    ]
    return [features[0], *pooled] if unpooled else pooled


def upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of an NCHW map to ``size`` (identity when it already has that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def concat_levels(maps: list[torch.Tensor]) -> torch.Tensor:
    """Pooled levels upsampled to the stride-8 grid and concatenated along channels (NCHW)."""
    return torch.cat([upsample(m, maps[0].shape[-2:]) for m in maps], dim=1)


def embed(features: Features, num_levels: int, pool_size: int, unpooled: bool = False) -> torch.Tensor:
    """PatchCore's patch features as an NCHW map: :func:`pooled_levels`, then :func:`concat_levels`."""
    return concat_levels(pooled_levels(features, num_levels, pool_size, unpooled))


def patch_rows(emb: torch.Tensor) -> torch.Tensor:
    """An NCHW patch-feature map as ``(N, H*W, C)`` rows."""
    n, c, h, w = emb.shape
    return emb.permute(0, 2, 3, 1).reshape(n, h * w, c)


def patches_of(features: Features, num_levels: int, pool_size: int, unpooled: bool = False) -> torch.Tensor:
    """Patch features ``(N, H*W, C)`` of a batch of feature maps."""
    return patch_rows(embed(features, num_levels, pool_size, unpooled))


def level_channels(maps: list[torch.Tensor]) -> list[tuple[int, int]]:
    """``(first, count)`` of each level's channels in the concatenated patch feature (and the bank)."""
    out, first = [], 0
    for f in maps:
        out.append((first, f.shape[1]))
        first = first + f.shape[1]  # not +=: under tracing, shapes are tensors that += would mutate
    return out


def resolution_blocks(maps: list[torch.Tensor]) -> list[tuple[torch.Tensor, int, int]]:
    """Adjacent levels at the same resolution joined along channels, each block with ``(first, count)`` of its
    channels in the patch feature: one GEMM per resolution instead of one per level (the unpooled and pooled
    stride-8 maps are scored together)."""
    out: list[tuple[torch.Tensor, int, int]] = []
    for f, (first, c) in zip(maps, level_channels(maps)):
        if out and tuple(out[-1][0].shape[-2:]) == tuple(f.shape[-2:]):
            prev, p_first, p_c = out[-1]
            out[-1] = (torch.cat([prev, f], 1), p_first, p_c + c)
        else:
            out.append((f, first, c))
    return out


class PatchCoreModule(nn.Module):
    """Feature maps -> (grid of nearest-bank distances, reweighted image score).

    ``|x - b|^2 = |x|^2 + (|b|^2 - 2 x.b)``; the bracket is one GEMM per resolution with the bias folded
    in (``addmm`` -> ONNX Gemm), then one min-reduction. Deeper levels reach the stride-8 grid by
    bilinear upsampling, which is linear, so their dot products are taken at the level's own
    resolution and upsampled instead of the features: 4x (16x) fewer multiply-adds for a stride-16
    (32) level, the same distances. The score reweighting needs the most anomalous patch's nearest
    entry and that entry's neighbourhood: one-hot masks and a constant-index gather, so the graph
    only uses operators TensorFlow Lite Micro registers.
    """

    def __init__(
        self,
        bank: torch.Tensor,
        bank_knn: torch.Tensor,
        num_levels: int,
        pool_size: int,
        unpooled: bool = False,
        top_patches: int = 1,
    ) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.pool_size = pool_size
        self.unpooled = unpooled
        self.top_patches = top_patches
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
        blocks = resolution_blocks(maps)
        parts = []
        for g in range(0, n, group):
            rows = [f[g : g + group].permute(0, 2, 3, 1) for f, _, _ in blocks]  # NHWC per resolution
            ng = rows[0].shape[0]
            best = None
            for start in range(0, m, BANK_CHUNK):
                stop = min(start + BANK_CHUNK, m)
                d = None
                for r, (_, first, c) in zip(rows, blocks):
                    bank = self.bank_t[first : first + c, start:stop]
                    if d is None:
                        d = torch.addmm(self.bank_sq[start:stop], r.reshape(-1, c), bank, alpha=-2.0)
                    else:  # -2 x.b at the level's resolution, upsampled (channels last: no copies)
                        dots = (r.reshape(-1, c) @ bank).view(ng, r.shape[1], r.shape[2], -1)
                        d = (
                            d
                            + upsample(dots.permute(0, 3, 1, 2), (h, w)).permute(0, 2, 3, 1).reshape(ng * l, -1) * -2.0
                        )
                if exclude is not None:
                    d = d.view(ng, l, -1).masked_fill_(exclude[g : g + group, None, start:stop], float("inf"))
                    d = d.view(ng * l, -1)
                d = d.amin(dim=1)
                best = d if best is None else torch.minimum(best, d)
            parts.append(best.view(ng, l))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def forward(
        self, features: list[torch.Tensor], exclude: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``exclude`` (N, M) bool masks bank entries per image (leave-one-out training scores)."""
        maps = pooled_levels(features, self.num_levels, self.pool_size, self.unpooled)
        n, _, h, w = maps[0].shape
        x = patch_rows(concat_levels(maps))
        patch = (self.min_distances(maps, exclude) + (x * x).sum(-1)).clamp_min(0.0).sqrt()
        grid = patch.reshape(n, h, w)
        top = patch.amax(dim=1, keepdim=True)
        score = top_mean(patch, top, self.top_patches)
        if self.bank_knn.shape[1] < 2:
            return grid, score
        # The most anomalous patch and its nearest entry are picked by one-hot masks, not by indices:
        # index lookups become SELECT ops that TensorFlow Lite Micro does not have (ties, which
        # practically never occur, average the tied patches / entries).
        pick = (patch >= top).float()
        x_star = (pick[:, None, :] @ x)[:, 0] / pick.sum(1, keepdim=True)  # (N, C)
        m = self.bank_t.shape[1]
        parts = []  # (N, M) by the same bank slices as the grid (no second copy of the bank in files)
        for start in range(0, m, BANK_CHUNK):
            stop = min(start + BANK_CHUNK, m)
            part = self.bank_sq[start:stop]
            for first, c_l in level_channels(maps):
                part = torch.addmm(
                    part, x_star[:, first : first + c_l], self.bank_t[first : first + c_l, start:stop], alpha=-2.0
                )
            parts.append(part)
        d_star = join_columns(parts)
        dist = (d_star + (x_star * x_star).sum(1, keepdim=True)).clamp_min(0.0).sqrt()  # x* to every entry
        if exclude is not None:
            d_star = d_star.masked_fill(exclude, float("inf"))
        nearest = (d_star <= d_star.amin(dim=1, keepdim=True)).float()
        nearest = nearest / nearest.sum(1, keepdim=True)  # (N, M) one-hot of x*'s nearest entry
        k = self.bank_knn.shape[1]
        # distances from x* to each entry's neighbourhood (itself first), taken at the nearest entry
        hood = dist.index_select(1, self.bank_knn.reshape(-1)).view(n, m, k)
        d_sup = (nearest[:, :, None] * hood).sum(1)  # (N, k)
        weight = 1.0 - torch.softmax(d_sup, dim=-1)[:, 0]
        return grid, weight * score


def top_mean(patch: torch.Tensor, top: torch.Tensor, k: int) -> torch.Tensor:
    """The mean of the ``k`` largest of each row of ``patch`` (N, L) (non-negative distances; ``top`` is the
    row maximum, (N, 1)), by zeroing the maximum ``k - 1`` times: no TOPK operator, which TensorFlow Lite
    Micro lacks, and no value below 0 to widen int8 ranges. Ties leave together (practically never:
    distances are continuous)."""
    k = min(k, patch.shape[1])
    total, rest = top, patch
    for _ in range(k - 1):
        rest = rest * (rest < top).float()
        top = rest.amax(dim=1, keepdim=True)
        total = total + top
    return total[:, 0] / k


def nearest_patches(
    entries: torch.Tensor, patches: Iterable[torch.Tensor], limit: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``entries`` (M, C): the nearest row among the ``(P, C)`` blocks that ``patches``
    streams (the first ``limit`` rows are searched) and its squared distance (inf where none was streamed)."""
    best = torch.full((entries.shape[0],), float("inf"))
    out = entries.clone()
    sq = (entries * entries).sum(1, keepdim=True)
    seen = 0
    with torch.inference_mode():
        for x in patches:
            x = x[: max(0, limit - seen)]
            seen += x.shape[0]
            if not x.shape[0]:
                break
            x_t = x.t().contiguous()
            xsq = (x * x).sum(1)
            rows = max(1, BLOCK_ELEMENTS // x.shape[0])
            for i in range(0, entries.shape[0], rows):
                d = torch.addmm(sq[i : i + rows] + xsq, entries[i : i + rows], x_t, alpha=-2.0)
                v, j = d.min(1)
                closer = v < best[i : i + rows]
                best[i : i + rows] = torch.where(closer, v, best[i : i + rows])
                out[i : i + rows][closer] = x[j[closer]]
    return out, best


def nearest_rows(entries: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """For each row of ``entries`` (M, C): the indices of its ``k`` nearest rows of ``points`` (P, C), nearest first."""
    k = min(k, points.shape[0])
    psq = (points * points).sum(1)
    points_t = points.t().contiguous()
    rows = max(1, BLOCK_ELEMENTS // max(1, points.shape[0]))
    out = []
    with torch.inference_mode():
        for i in range(0, entries.shape[0], rows):
            d = torch.addmm(psq, entries[i : i + rows], points_t, alpha=-2.0)  # |p|^2 - 2 e.p: same order as |e - p|^2
            out.append(torch.topk(d, k, dim=1, largest=False).indices)
    return torch.cat(out) if out else torch.zeros((0, k), dtype=torch.long)


def bank_neighbours(bank: torch.Tensor, k: int) -> torch.Tensor:
    """For each bank entry the indices of its ``k`` nearest bank entries, itself first."""
    m = bank.shape[0]
    k = min(k, m)
    if k == 1:  # no reweighting: each entry's neighbourhood is itself (no M x M distances)
        return torch.arange(m)[:, None]
    sq = (bank * bank).sum(1)
    bank_t = bank.t().contiguous()
    rows = max(1, BLOCK_ELEMENTS // m)
    out = []
    with torch.inference_mode():
        for i in range(0, m, rows):
            d = torch.addmm(sq, bank[i : i + rows], bank_t, alpha=-2.0)  # |b|^2 - 2 a.b: same order as |a - b|^2
            own = torch.arange(i, min(i + rows, m))
            d[torch.arange(len(own)), own] = -float("inf")  # itself first, even among duplicates
            out.append(torch.topk(d, k, dim=1, largest=False).indices)
    return torch.cat(out)

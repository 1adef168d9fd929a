"""Greedy k-center coreset selection (Gonzalez), exact on the points it is given, in one compiled loop.

Each iteration adds the point farthest from the selected centres and updates every point's
distance to its nearest centre. Every point-centre distance is computed: the distance loop
vectorises, and on 32- to 128-dimensional patch features that beats skipping points by the
triangle inequality (a data-dependent branch per point; see docs/benchmarks.md, "Coreset and
nearest neighbours"). No Python per iteration.

:class:`StreamingCoreset` bounds memory and time for large training sets: each chunk of patches gets
its own exact coreset of twice the ratio as the patches stream in (stage 1), and a global greedy pass
over the union thins it to the ratio, dropping what the chunks selected twice (stage 2). See
docs/architecture.md.
"""

from __future__ import annotations

import math

import numba
import numpy as np

PROJECTION_DIM = 128


@numba.njit(cache=True, nogil=True, fastmath=True)
def _sqdist(a: np.ndarray, b: np.ndarray) -> float:
    s = np.float32(0.0)
    for j in range(a.shape[0]):
        t = a[j] - b[j]
        s += t * t
    return s


@numba.njit(cache=True, nogil=True)
def _greedy(points: np.ndarray, n_select: int, first: int, stop_sq: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center from ``first``; stops early once every point is within sqrt(stop_sq).

    Returns the selected indices and, for each, the squared covering radius after selecting it.
    """
    n = points.shape[0]
    min_d = np.full(n, np.inf, dtype=np.float32)
    selected = np.empty(n_select, dtype=np.int64)
    radius = np.empty(n_select, dtype=np.float32)
    idx = first
    count = 0
    for it in range(n_select):
        selected[it] = idx
        centre = points[idx]
        best, best_i = np.float32(-1.0), 0
        for p in range(n):
            m = min_d[p]
            d = _sqdist(points[p], centre)
            if d < m:
                m = d
                min_d[p] = d
            if m > best:
                best, best_i = m, p
        radius[it] = best
        idx = best_i
        count = it + 1
        if best <= stop_sq:
            break
    return selected[:count], radius[:count]


def projection(dim: int, seed: int) -> np.ndarray | None:
    """Seeded Gaussian random projection (dim, 128) for features wider than 128; None otherwise."""
    if dim <= PROJECTION_DIM:
        return None
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((dim, PROJECTION_DIM)) / math.sqrt(PROJECTION_DIM)).astype(np.float32)


def project(points: np.ndarray, seed: int) -> np.ndarray:
    """``points`` (N, C) on the seeded random projection (unchanged when C <= 128), contiguous float32."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    proj = projection(points.shape[1], seed)
    return points if proj is None else points @ proj


def greedy_coreset(
    points: np.ndarray, n_select: int, seed: int = 0, stop_radius: float = 0.0, projected: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a greedy k-center coreset of ``points`` (N, C) and the covering radius after each pick.

    Runs on a seeded random projection to 128 dimensions unless ``projected`` (points are already
    projected). The first centre is drawn with ``seed``. Stops after ``n_select`` centres or as soon
    as every point lies within ``stop_radius`` of one.
    """
    n = len(points)
    if n == 0 or n_select < 1:
        raise ValueError("greedy_coreset needs at least one point and one centre to select")
    pts = np.ascontiguousarray(points, dtype=np.float32) if projected else project(points, seed)
    first = int(np.random.default_rng(seed).integers(n))
    selected, radius_sq = _greedy(pts, min(n_select, n), first, float(stop_radius) ** 2)
    return selected, np.sqrt(radius_sq)


class StreamingCoreset:
    """Two-stage greedy coreset of a stream of patches, memory bounded by ``chunk_size``.

    Stage 1: every ``chunk_size`` patches get their own exact greedy coreset of ``oversample x ratio``
    of the chunk, as they arrive; only the selected patches are kept. Stage 2: a greedy pass over the
    union of the chunk selections keeps at most ``ratio`` of all patches and stops early once it covers
    the union within the largest stage-1 radius (every patch is then within twice that radius of the
    bank). Greedy k-center costs chunk x selection per chunk, so small chunks are fast; selecting twice
    the ratio in each keeps the bank as fine as one exact pass over a few chunks would make it.
    Streams of at most ``2 * chunk_size`` patches get the exact single-stage coreset of ``ratio``;
    memory holds at most that many patches plus the selections.

    After :meth:`finish`, :attr:`candidates` holds (patches, owners) that stand for the whole stream: the
    stage-1 selections (every patch within the stage-1 radius of one), or every patch of a single-stage
    stream. Validation searches them for what other images share with held-out ones.
    """

    def __init__(self, ratio: float, chunk_size: int, seed: int = 0, oversample: float = 2.0) -> None:
        self.ratio, self.chunk_size, self.seed, self.oversample = ratio, chunk_size, seed, oversample
        self._buffer: list[tuple[np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (points, owners, projected)
        self._radius = 0.0
        self.total = 0
        self.stats: dict[str, int | float] = {}
        self.candidates: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, points: np.ndarray, owners: np.ndarray) -> None:
        """Add patches (N, C) float32 and the training-image index of each (N,)."""
        self._buffer.append((np.ascontiguousarray(points, dtype=np.float32), np.asarray(owners, np.int64)))
        self._buffered += len(points)
        self.total += len(points)
        while self._buffered > 2 * self.chunk_size:  # the last (up to 2 chunks) waits for finish()
            self._reduce(*self._take(self.chunk_size), min(1.0, self.oversample * self.ratio))

    def _take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pts, own = np.concatenate([b[0] for b in self._buffer]), np.concatenate([b[1] for b in self._buffer])
        self._buffer = [(pts[n:], own[n:])] if n < len(pts) else []
        self._buffered = len(pts) - n
        return pts[:n], own[:n]

    def _select(self, projected: np.ndarray, n_select: int, stop_radius: float = 0.0) -> tuple[np.ndarray, float]:
        sel, radius = greedy_coreset(projected, n_select, self.seed + len(self._kept), stop_radius, projected=True)
        return sel, float(radius[-1])

    def _reduce(self, points: np.ndarray, owners: np.ndarray, ratio: float) -> None:
        projected = project(points, self.seed)  # the same projection for every chunk
        n_select = max(1, int(round(ratio * len(points))))
        if n_select >= len(points):
            self._kept.append((points, owners, projected))
            return
        sel, radius = self._select(projected, n_select)
        self._radius = max(self._radius, radius)
        self._kept.append((points[sel], owners[sel], projected[sel]))

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """The memory bank (M, C) and the training image of each entry (M,)."""
        single = not self._kept  # at most two chunks' worth: one exact pass at the ratio
        if self._buffered:
            rest = self._take(self._buffered)
            if single:
                self.candidates = rest
            self._reduce(*rest, self.ratio if single else min(1.0, self.oversample * self.ratio))
        if not self._kept:
            raise ValueError("StreamingCoreset.finish() called before any patches were added")
        points, owners, projected = (np.concatenate([k[i] for k in self._kept]) for i in range(3))
        if not single:
            self.candidates = (points, owners)
        self.stats = {"patches": self.total, "chunks": len(self._kept)}
        n_bank = max(1, int(round(self.ratio * self.total)))
        if single or n_bank >= len(points):  # exact single stage, or the ratio keeps the whole union
            self.stats.update(bank=len(points), radius=self._radius)
            return points, owners
        sel, radius = self._select(np.ascontiguousarray(projected), n_bank, self._radius)
        self.stats.update(union=len(points), bank=len(sel), stage1_radius=self._radius, radius=radius)
        return points[sel], owners[sel]

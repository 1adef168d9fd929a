"""Greedy k-center coreset: exactness of the compiled loop, early stop, two-stage streaming."""

from __future__ import annotations

import numpy as np
import pytest

from blocks.scorers.coreset import StreamingCoreset, greedy_coreset, project


def textbook_greedy(points: np.ndarray, first: int, k: int) -> tuple[list[int], list[float]]:
    """The plain O(N k) greedy k-center loop in float64 (reference)."""
    p = points.astype(np.float64)
    sel, radius, mind = [first], [], np.full(len(p), np.inf)
    for _ in range(k):
        mind = np.minimum(mind, ((p - p[sel[-1]]) ** 2).sum(1))
        radius.append(float(np.sqrt(mind.max())))
        sel.append(int(mind.argmax()))
    return sel[:k], radius


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim)) * 4
    return (centres[rng.integers(20, size=n)] + rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("dim", [2, 16, 128])
def test_selection_equals_the_textbook_loop(dim):
    pts = clustered(3000, dim)
    sel, radius = greedy_coreset(pts, 300, seed=0)
    ref, ref_radius = textbook_greedy(pts, int(sel[0]), 300)
    assert sel.tolist() == ref
    np.testing.assert_allclose(radius, ref_radius, rtol=1e-4)
    assert np.all(np.diff(radius) <= 1e-6)  # the covering radius never grows


def test_wide_features_run_on_the_seeded_projection():
    pts = clustered(2000, 300)
    sel, _ = greedy_coreset(pts, 100, seed=4)
    assert sel.tolist() == textbook_greedy(project(pts, 4), int(sel[0]), 100)[0]
    assert np.array_equal(sel, greedy_coreset(pts, 100, seed=4)[0])
    assert len(set(sel.tolist())) == 100


def test_k_center_covers_far_better_than_random():
    pts = (np.random.default_rng(3).normal(size=(2000, 2)) * [1.0, 0.2]).astype(np.float32)
    sel, radius = greedy_coreset(pts, 100)

    def cover(idx):
        return np.sqrt(((pts[:, None] - pts[None, idx]) ** 2).sum(-1)).min(1).max()

    assert cover(sel) == pytest.approx(radius[-1], rel=1e-4)
    assert cover(sel) < 0.8 * cover(np.random.default_rng(0).permutation(2000)[:100])


def test_stop_radius_stops_once_everything_is_covered():
    pts = clustered(2000, 8)
    full, radius = greedy_coreset(pts, 500)
    part, part_radius = greedy_coreset(pts, 500, stop_radius=float(radius[99]))
    assert len(part) == 100 and np.array_equal(part, full[:100])
    assert part_radius[-1] <= radius[99]


def stream(sc: StreamingCoreset, pts: np.ndarray, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    for i in range(0, len(pts), batch):
        sc.add(pts[i : i + batch], np.arange(i, min(i + batch, len(pts))) // 10)
        assert sc._buffered < 2 * sc.chunk_size + batch  # memory stays bounded
    return sc.finish()


def test_short_streams_get_the_exact_coreset():
    pts = clustered(3000, 16)
    bank, owners = stream(StreamingCoreset(0.1, chunk_size=1500, seed=2), pts)
    sel, _ = greedy_coreset(pts, 300, seed=2)
    np.testing.assert_array_equal(bank, pts[sel])
    np.testing.assert_array_equal(owners, sel // 10)
    sc = StreamingCoreset(0.1, chunk_size=1500, seed=2)
    stream(sc, pts)
    np.testing.assert_array_equal(sc.candidates[0], pts)  # a single stage: every patch stands for itself
    np.testing.assert_array_equal(sc.candidates[1], np.arange(3000) // 10)


def test_two_stage_bounds_size_and_covering_radius():
    pts = clustered(20000, 16, seed=1)
    sc = StreamingCoreset(0.1, chunk_size=2000, seed=0)
    bank, owners = stream(sc, pts)
    assert sc.stats["chunks"] == 9 and len(bank) <= 2000
    assert sc.stats["union"] == 4000  # stage 1 keeps twice the ratio of each chunk; stage 2 thins to the ratio
    assert sc.stats["bank"] == len(bank) < sc.stats["union"]  # stage 2 dropped duplicates
    d = np.sqrt(((pts[::7, None] - bank[None]) ** 2).sum(-1)).min(1)
    assert d.max() <= 2 * sc.stats["stage1_radius"] + 1e-4  # every patch within twice the stage-1 radius
    hits = (pts[None, :, :] == bank[:50, None, :]).all(-1)  # entries are real patches with their owners
    assert np.array_equal(np.argmax(hits, axis=1) // 10, owners[:50])
    cand, cand_owners = sc.candidates  # the stage-1 union: every patch within the stage-1 radius of one
    assert len(cand) == sc.stats["union"] and len(cand_owners) == len(cand)
    d = np.sqrt(((pts[::7, None] - cand[None]) ** 2).sum(-1)).min(1)
    assert d.max() <= sc.stats["stage1_radius"] + 1e-4
    hits = (pts[None, :, :] == cand[::40, None, :]).all(-1)
    assert np.array_equal(np.argmax(hits, axis=1) // 10, cand_owners[::40])


def test_ratio_one_keeps_every_patch():
    pts = clustered(5000, 4)
    bank, _ = stream(StreamingCoreset(1.0, chunk_size=1000), pts)
    assert len(bank) == 5000


def test_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="at least one point"):
        greedy_coreset(np.zeros((0, 3), np.float32), 3)
    with pytest.raises(ValueError, match="before any patches"):
        StreamingCoreset(0.1, 100).finish()

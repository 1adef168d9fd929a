"""PatchCore: grid size, coreset, kNN scores, the paper's image-score reweighting, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blocks.scorers import patchcore
from blocks.scorers.patchcore_module import embed
from framework.errors import VadblocksError


def PatchCore(**params):  # noqa: N802 - two pooled levels: what these tests were written for
    return patchcore.PatchCore(**{"num_layers": 2, "pool_size": 3, **params})


def features(n=6, size=96, seed=0, levels=2):
    g = torch.Generator().manual_seed(seed)
    chans, strides = (32, 96, 320), (8, 16, 32)
    return [torch.randn(n, chans[i], size // strides[i], size // strides[i], generator=g) for i in range(levels)]


@pytest.mark.parametrize("size", [96, 160, 224])
def test_grid_is_width_over_8(size):
    pc = PatchCore().fit(features(4, size))
    grid, score = pc.predict(features(3, size, seed=1))
    assert pc.grid_size(size) == size // 8
    assert grid.shape == (3, size // 8, size // 8) and score.shape == (3,)
    assert grid.dtype == np.float32 and np.isfinite(grid).all()


@pytest.mark.parametrize("unpooled, top", [(True, 3), (False, 1)])
def test_scores_match_a_brute_force_reference(unpooled, top):
    train, test = features(5, seed=0), features(3, seed=1)
    pc = PatchCore(sampling_ratio=0.2, num_nearest_neighbors=4, keep_unpooled=unpooled, top_patches=top).fit(train)
    grid, score = pc.predict(test)
    bank = pc.bank.numpy().astype(np.float64)
    assert bank.shape[1] == (32 if unpooled else 0) + 32 + 96  # the unpooled stride-8 level comes first
    x = embed(test, 2, 3, unpooled).permute(0, 2, 3, 1).reshape(3, -1, bank.shape[1]).numpy().astype(np.float64)
    for i in range(3):
        d = np.sqrt(((x[i][:, None, :] - bank[None]) ** 2).sum(-1))  # (HW, M)
        patch = d.min(1)
        np.testing.assert_allclose(grid[i].reshape(-1), patch, rtol=1e-3, atol=1e-3)
        p = patch.argmax()
        m_star = d[p].argmin()
        nb = np.argsort(((bank - bank[m_star]) ** 2).sum(1))[:4]
        dist = np.sqrt(((x[i][p] - bank[nb]) ** 2).sum(1))
        w = 1 - np.exp(dist[0]) / np.exp(dist).sum()
        assert score[i] == pytest.approx(w * np.sort(patch)[-top:].mean(), rel=1e-3)


@pytest.mark.parametrize("top", [1, 3, 16])
def test_image_score_is_the_mean_of_the_top_patches(top):
    pc = PatchCore(num_nearest_neighbors=1, top_patches=top).fit(features(4))
    grid, score = pc.predict(features(2, seed=5))
    np.testing.assert_allclose(score, np.sort(grid.reshape(2, -1), 1)[:, -top:].mean(1), rtol=1e-6)


def test_top_mean_handles_ties_zeros_and_more_patches_than_exist():
    import torch

    from blocks.scorers.patchcore_module import top_mean

    rows = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 3.0, 2.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    top = rows.amax(1, keepdim=True)
    assert top_mean(rows, top, 2).tolist() == [0.0, 2.5, 2.5]
    assert top_mean(rows, top, 9).tolist() == pytest.approx([0.0, 1.5, 1.25])  # k above 4 patches: all 4


def test_sampling_ratio_sets_bank_size():
    pc = PatchCore(sampling_ratio=0.1).fit(features(10))
    assert pc.bank.shape == (round(0.1 * 10 * 144), 32 + 32 + 96)
    assert PatchCore(num_layers=1, sampling_ratio=1.0).fit(features(2)).bank.shape == (288, 32 + 32)
    assert PatchCore(num_layers=1, pool_size=1, sampling_ratio=1.0).fit(features(2)).bank.shape == (288, 32)


def test_state_round_trip_without_pickle(tmp_path):
    pc = PatchCore(pool_size=5).fit(features(4))
    arrays, config = pc.get_state()
    np.savez(tmp_path / "s.npz", **arrays)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        restored = PatchCore(pool_size=5).set_state({k: z[k] for k in z.files}, config)
    test = features(2, seed=9)
    for a, b in zip(pc.predict(test), restored.predict(test)):
        np.testing.assert_array_equal(a, b)


def test_holdout_keeps_covered_what_the_kept_images_share():
    """A coreset entry stands for every patch near it: holding out its owner must not uncover the patch the
    other images share (here one cell identical in all images), but must uncover what only the held-out
    image has (one unique cell)."""
    train = features(10, levels=1)
    train[0][:, :, 0, 0] = 5.0  # every image: the same corner feature, kept once by the coreset
    train[0][3, :, 6, 6] = -9.0  # image 3 alone: a feature far from everything
    pc = PatchCore(num_layers=1, pool_size=1, sampling_ratio=0.2).fit(train)
    corner = pc.bank.eq(5.0).all(1)
    assert int(corner.sum()) == 1
    owner = int(pc._bank_images[corner][0])
    held = np.array([owner])
    kept = np.setdiff1d(np.arange(10), held)
    kept_batches = [[train[0][kept[:4]]], [train[0][kept[4:]]]]  # streamed in batches
    forgot = pc.holdout(held, kept_batches)
    grid = forgot.predict([train[0][held]])[0][0]
    assert grid[0, 0] == pytest.approx(0.0, abs=1e-3)  # still covered by a kept image's identical patch
    assert not torch.isin(forgot._bank_images, torch.as_tensor(held)).any()
    dropped = pc.holdout(held)  # without the kept stream the shared patch is uncovered
    assert dropped.predict([train[0][held]])[0][0][0, 0] > 10
    unique = pc.holdout(np.array([3]), [[train[0][np.setdiff1d(np.arange(10), [3])]]])
    assert unique.predict([train[0][[3]]])[0][0][6, 6] > 10  # what only the held-out image had is gone
    restored = PatchCore(**pc.params).set_state(*pc.get_state())  # from a file: no candidates kept from the fit
    assert restored.holdout(held, kept_batches).predict([train[0][held]])[0][0][0, 0] == pytest.approx(0.0, abs=1e-3)
    # nothing streamed: no substitute, the entries dropped
    assert restored.holdout(held, []).bank.shape[0] == pc.bank.shape[0] - int((pc._bank_images == owner).sum())


@pytest.mark.parametrize("k", [1, 3])
def test_holdout_predict_is_what_the_two_holdout_copies_give(k):
    """One pass for the substituted and the strict copies (one neighbour: the strict bank is scanned once for
    both, and the held images' leave-one-image-out scores come along; more: two copies) gives their grids and
    scores."""
    train, test = features(12, seed=0), features(3, seed=4)
    pc = PatchCore(sampling_ratio=0.3, num_nearest_neighbors=k, top_patches=2).fit(train)
    held = np.array([1, 5, 8])
    kept = [[f[np.setdiff1d(np.arange(12), held)] for f in train]]
    own = [f[held] for f in train]
    on_test, on_own = pc.holdout_predict(held, kept, [test, own], own=1)
    forgot, dropped = pc.holdout(held, kept), pc.holdout(held)
    assert (forgot._bank_images == -1).any()  # there are substitutes to take the minimum with
    for x, r in ((test, on_test), (own, on_own)):
        ref_g, ref_s = forgot.predict(x)
        np.testing.assert_allclose(r.grids, ref_g, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r.scores, ref_s, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r.strict, dropped.predict(x)[1], rtol=1e-5, atol=1e-5)
    assert on_test.leave_one_out is None
    if k == 1:  # nothing in place of their own memory: the held-out images score higher
        assert (on_own.strict > on_own.scores).all()
        loo = pc.training_scores(train)[held]  # each image without its own entries only
        np.testing.assert_allclose(on_own.leave_one_out, loo, rtol=1e-5, atol=1e-5)
        assert (on_own.leave_one_out <= on_own.strict).all() and (on_own.leave_one_out < on_own.strict).any()
    else:  # reweighted scores: the two copies, nothing more
        assert on_own.leave_one_out is None


def test_holdout_substitutes_come_from_the_stage1_selections(monkeypatch):
    """Fitted in this process, the substitutes are patches the coreset's first stage selected from the other
    images; restored from a file (no such record) they are searched in the kept stream, with the same effect."""
    monkeypatch.setattr(patchcore, "CHUNK_PATCHES", 300)  # 20 images x 144 patches: a two-stage coreset
    train = features(20, levels=1, seed=3)
    pc = PatchCore(num_layers=1, pool_size=1, sampling_ratio=0.1).fit(train)
    points, owners = pc._candidates
    assert len(points) == pc.coreset_stats["union"] > len(pc.bank)
    held = np.array([2, 7, 11, 19])
    kept_ids = np.setdiff1d(np.arange(20), held)
    forgot = pc.holdout(held, [[train[0][kept_ids]]])
    subs = forgot.bank[forgot._bank_images == -1]
    allowed = points[~torch.isin(owners, torch.as_tensor(held))]
    assert len(subs) and (subs[:, None, :] == allowed[None]).all(-1).any(1).all()
    # each substitute is the held-out entry's nearest allowed candidate: the choices every holdout shares give
    # what a search of the allowed candidates gives, also where too few choices are kept and the search runs
    entries = pc.bank[torch.isin(pc._bank_images, torch.as_tensor(held))]
    nearest = allowed[torch.cdist(entries, allowed).argmin(1)]
    assert torch.equal(torch.unique(nearest, dim=0), torch.unique(subs, dim=0))
    for choices in (1, 2):
        monkeypatch.setattr(patchcore, "SUBSTITUTE_CHOICES", choices)
        pc._choices = None
        assert int((~(~torch.isin(owners[pc._substitute_choices()], torch.as_tensor(held))).any(1)).sum())
        again = pc.holdout(held, [[train[0][kept_ids]]])
        assert torch.equal(torch.unique(again.bank[again._bank_images == -1], dim=0), torch.unique(subs, dim=0))
    arrays, config = pc.get_state()
    restored = patchcore.PatchCore(num_layers=1, pool_size=1, sampling_ratio=0.1).set_state(arrays, config)
    assert restored._candidates is None  # not part of the saved state
    searched = restored.holdout(held, [[train[0][kept_ids]]])
    flat = train[0][kept_ids].permute(0, 2, 3, 1).reshape(-1, train[0].shape[1])
    other = searched.bank[searched._bank_images == -1]
    assert len(other) and (other[:, None, :] == flat[None]).all(-1).any(1).all()
    x = [train[0][held]]  # both stand in for the held-out memory about as closely
    near, coarse = searched.predict(x)[0], forgot.predict(x)[0]
    assert abs(coarse.mean() / near.mean() - 1) < 0.1, (coarse.mean(), near.mean())
    monkeypatch.setattr(patchcore, "HOLDOUT_BYTES", 100 * points.shape[1] * 4)  # memory for 100 candidates
    capped = PatchCore(num_layers=1, pool_size=1, sampling_ratio=0.1).fit(train)
    assert len(capped._candidates[0]) == 100 and torch.equal(capped.bank, pc.bank)  # the same bank
    assert (capped._candidates[0][:, None, :] == points[None]).all(-1).any(1).all()  # a subset of the union


def test_leave_one_out_training_scores_exceed_self_scores():
    train = features(8)
    pc = PatchCore(sampling_ratio=0.5).fit(train)
    own = pc.predict(train)[1]
    loo = pc.training_scores(train)
    assert (loo >= own - 1e-6).all() and loo.mean() > own.mean()


def test_bad_inputs():
    with pytest.raises(VadblocksError, match="odd"):
        PatchCore(pool_size=4)
    with pytest.raises(VadblocksError, match="not fitted"):
        PatchCore().predict(features(1))
    with pytest.raises(VadblocksError, match="needs 2 feature level"):
        PatchCore().fit(features(2, levels=1))
    with pytest.raises(VadblocksError, match="must be float32"):
        PatchCore().fit([f.double() for f in features(2)])
    with pytest.raises(VadblocksError, match="empty"):
        PatchCore().fit(features(0))
    with pytest.raises(VadblocksError, match="corrupt"):
        PatchCore().set_state({"bank": np.zeros((3, 4), np.float32)}, {})


@pytest.mark.parametrize("k", [1, 4])
def test_bank_neighbours_are_the_nearest_entries_itself_first(k):
    import torch

    from blocks.scorers.patchcore_module import bank_neighbours

    bank = torch.from_numpy(np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32))
    got = bank_neighbours(bank, k).numpy()
    d = ((bank[:, None] - bank[None]) ** 2).sum(-1).numpy()
    np.fill_diagonal(d, -1.0)
    np.testing.assert_array_equal(got, np.argsort(d, 1, kind="stable")[:, :k])


def test_holdout_predict_default_builds_both_copies_and_refuses_half_a_contract():
    """The base class scores each input with holdout(held, kept) and holdout(held); a plugin whose holdout gives
    a copy with ``kept`` but None without is told what to fix."""
    from framework.scorer import Scorer

    train = features(6, seed=2)
    pc = PatchCore(sampling_ratio=0.5, num_nearest_neighbors=1).fit(train)
    held, kept = np.array([0, 3]), [[f[[1, 2, 4, 5]] for f in train]]
    test = features(2, seed=8)
    (base,) = Scorer.holdout_predict(pc, held, kept, [test])
    (fast,) = pc.holdout_predict(held, kept, [test])
    for a, b in ((base.grids, fast.grids), (base.scores, fast.scores), (base.strict, fast.strict)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert base.leave_one_out is None  # the default does not compute them

    class HalfHoldout(patchcore.PatchCore):
        def holdout(self, held, kept=None):
            return None if kept is None else super().holdout(held, kept)

    half = HalfHoldout(num_layers=2, pool_size=3, sampling_ratio=0.5, num_nearest_neighbors=3).fit(train)
    with pytest.raises(VadblocksError, match=r"holdout\(held\) returned None but holdout\(held, kept\) did not"):
        half.holdout_predict(held, kept, [test])

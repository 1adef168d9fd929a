"""GMM scorer: fit/score/state, torch module == scikit-learn, grid sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blocks.scorers.gmm import CAPACITY_COMPONENTS, GMM, POOL, POOL_STRIDE
from blocks.scorers.gmm_module import pool_cells
from blocks.scorers.patchcore import PatchCore
from framework.errors import VadblocksError


def features(n=6, size=96, seed=0, channels=32):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, channels, size // 8, size // 8, generator=g)
    return [
        base,
        torch.randn(n, 96, size // 16, size // 16, generator=g),
        torch.randn(n, 320, size // 32, size // 32, generator=g),
    ]


@pytest.mark.parametrize("size, gmm_grid, patchcore_grid", [(96, 5, 12), (160, 9, 20), (224, 13, 28)])
def test_grid_sizes_for_both_scorers(size, gmm_grid, patchcore_grid):
    assert GMM().grid_size(size) == gmm_grid == (size // 8) // 2 - 1
    assert PatchCore().grid_size(size) == patchcore_grid == size // 8
    feats = features(4, size)
    assert GMM().fit(feats).score(features(2, size, 1)).shape == (2, gmm_grid, gmm_grid)
    assert PatchCore().fit(feats).score(features(2, size, 1)).shape == (2, patchcore_grid, patchcore_grid)


def test_torch_module_agrees_with_sklearn():
    feats = features(20)
    gmm = GMM(capacity="high").fit(feats)
    assert gmm.state["means"].shape == (CAPACITY_COMPONENTS["high"], 32)
    test = features(5, seed=3)
    cells = pool_cells(test[0], torch.from_numpy(gmm.state["projection"]), POOL, POOL_STRIDE)
    x = cells.permute(0, 2, 3, 1).reshape(-1, cells.shape[1]).double().numpy()
    sk_nll = -gmm.mixture.score_samples(x)
    with torch.inference_mode():
        torch_nll = gmm.scoring_module().nll(test).reshape(-1).double().numpy()
    np.testing.assert_allclose(torch_nll, sk_nll, rtol=1e-4)
    grid, score = gmm.predict(test)
    mean, std = gmm.state["nll_stats"]
    np.testing.assert_allclose(grid.reshape(-1), (sk_nll - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(score, grid.reshape(5, -1).max(1))


def test_training_scores_are_standardised():
    feats = features(30)
    grid, _ = GMM().fit(feats).predict(feats)
    assert abs(grid.mean()) < 1e-3 and grid.std() == pytest.approx(1.0, rel=1e-3)


def test_capacity_sets_components_and_is_deterministic():
    feats = features(10)
    for cap, k in CAPACITY_COMPONENTS.items():
        assert GMM(capacity=cap).fit(feats).state["weights"].shape == (k,)
    a, b = GMM().fit(feats), GMM().fit(feats)
    np.testing.assert_array_equal(a.score(feats), b.score(feats))


def test_state_round_trip_without_pickle(tmp_path):
    gmm = GMM().fit(features(8))
    arrays, config = gmm.get_state()
    np.savez(tmp_path / "g.npz", **arrays)
    with np.load(tmp_path / "g.npz", allow_pickle=False) as z:
        restored = GMM().set_state({k: z[k] for k in z.files}, config)
    test = features(3, seed=7)
    for a, b in zip(gmm.predict(test), restored.predict(test)):
        np.testing.assert_array_equal(a, b)


def test_bad_inputs():
    with pytest.raises(VadblocksError, match="--capacity: 'huge' is not valid; expected one of low, medium, high"):
        GMM(capacity="huge")
    with pytest.raises(VadblocksError, match="not fitted"):
        GMM().predict(features(1))
    with pytest.raises(VadblocksError, match="missing arrays"):
        GMM().set_state({"means": np.zeros((2, 32))}, {})
    with pytest.raises(VadblocksError, match="at least 4x4"):
        GMM().fit([torch.zeros(2, 32, 3, 3)])

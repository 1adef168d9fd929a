"""PaDiM: fit/predict, Mahalanobis reference, state round trip, discovery, training on real textures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vadblocks_padim import PaDiM, stack_levels

from framework.config import resolve
from framework.data import load_dataset
from framework.demo_data import make_texture_dataset
from framework.metrics import evaluate
from framework.plugins import get_registry
from framework.train.pipeline import train


def feats(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 32, 12, 12, generator=g), torch.randn(n, 96, 6, 6, generator=g)]


def test_matches_a_mahalanobis_reference():
    pd = PaDiM(padim_dim=16).fit(feats())
    test = feats(2, seed=1)
    grid, score = pd.predict(test)
    x = stack_levels(test, 2)[:, torch.from_numpy(pd.state["channels"])].double().numpy()
    for cell in (0, 77, 143):
        r, c = divmod(cell, 12)
        delta = x[:, :, r, c] - pd.state["mean"][cell]
        ref = np.sqrt(np.einsum("nd,de,ne->n", delta, pd.state["inv_cov"][cell], delta))
        np.testing.assert_allclose(grid[:, r, c], ref, rtol=1e-3)
    np.testing.assert_allclose(score, grid.reshape(2, -1).max(1))


def test_state_round_trip():
    pd = PaDiM().fit(feats())
    arrays, cfg = pd.get_state()
    other = PaDiM().set_state(arrays, cfg)
    np.testing.assert_array_equal(pd.score(feats(3, 5)), other.score(feats(3, 5)))


def test_discovered_through_the_entry_point():
    entry = get_registry().scorer("padim")
    assert entry.distribution == "vadblocks-padim" and entry.cls is PaDiM


def test_finds_defects_on_real_textures(tmp_path):
    paths = make_texture_dataset(tmp_path, "brick", n_train=60, n_test_good=12, n_test_defect=12)
    model = train(
        load_dataset(paths["edge-impulse"]), resolve(get_registry(), {"scoring-function": "padim"}), progress=False
    )
    ds = load_dataset(paths["folder"])
    assert evaluate(*model.predict(ds.test.images), ds.test, model.threshold)["image_auroc"] >= 0.9


def test_too_few_images():
    with pytest.raises(Exception, match="at least 2 training images"):
        PaDiM().fit(feats(1))

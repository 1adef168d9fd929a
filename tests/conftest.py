"""Shared fixtures: a small real-texture dataset, the plugin registry, CLI runner helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from framework.demo_data import make_texture_dataset
from framework.plugins import get_registry, reset_plugins
from tests.helpers import invoke

os.environ.setdefault("TQDM_DISABLE", "1")
# `vadblocks train` writes no model.onnx/.tflite in tests unless a test asks (--export); conversion
# takes tens of seconds. tests/train/test_export.py and the container tests cover the exports.
os.environ.setdefault("VADBLOCKS_EXPORT", "none")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> dict[str, Path]:
    """Brick texture: 40 normal training crops, 8 normal + 8 defective test crops (96x96)."""
    out = tmp_path_factory.mktemp("data")
    return make_texture_dataset(out, "brick", n_train=40, n_test_good=8, n_test_defect=8)


@pytest.fixture(scope="session")
def exported_model(small_data, tmp_path_factory) -> Path:
    """A PatchCore model of ``small_data`` with model.onnx and model.tflite (read-only: copy to change it)."""
    out = tmp_path_factory.mktemp("exported") / "model"
    invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--quiet",
        "--export",
        "onnx,tflite",
    )
    return out


@pytest.fixture
def registry():
    return get_registry()


@pytest.fixture
def fresh_plugins():
    """Rediscover plugins for this test and again afterwards (tests change sys.path/env)."""
    reset_plugins()
    yield
    reset_plugins()

"""Shared fixtures: a small real-texture dataset, the plugin registry, CLI runner helpers."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from framework.cli import cli
from framework.demo_data import make_texture_dataset
from framework.plugins import get_registry, reset_plugins

os.environ.setdefault("TQDM_DISABLE", "1")
# `vadblocks train` writes no model.onnx/.tflite in tests unless a test asks (--export); conversion
# takes tens of seconds. tests/test_export.py and the container tests cover the exports.
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


def invoke(*args: str, ok: bool = True):
    """Run the CLI in-process; assert the exit status (0 when ``ok``, else non-zero)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result


def write_plugin_dist(root: Path, dist: str, module: str, source: str, entry_name: str | None = None) -> Path:
    """Create a real installed distribution on ``root`` (dist-info + entry point + module)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[vadblocks]\n{entry_name or module} = {module}\n")
    (info / "RECORD").write_text("")
    return root

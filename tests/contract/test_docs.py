"""Documentation stays in step with the code."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from framework import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def test_every_hookspec_is_documented_with_its_signature():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    specs = [(n, f) for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "vadblocks_spec")]
    assert {n for n, _ in specs} == {"register_backbones", "register_scorers"}
    for name, func in specs:
        assert func.__doc__ and func.__doc__.strip(), name
        signature = f"{name}{inspect.signature(func)}".replace("'", "")
        assert f"`{signature}`" in doc, f"docs/plugins.md lacks `{signature}`"


def test_readme_quick_start_is_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    for command in ("plugins", "params", "train", "test", "predict"):
        assert f"vadblocks {command}" in readme


def test_readme_python_api_runs_as_written(small_data, tmp_path, monkeypatch):
    """The README's Python API block, executed in a folder holding data/brick-ei and data/brick."""
    import re

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "brick-ei").symlink_to(small_data["edge-impulse"])
    (tmp_path / "data" / "brick").symlink_to(small_data["folder"])
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)
    assert namespace["metrics"]["image_auroc"] > 0.9 and namespace["page"].is_file()
    assert (tmp_path / "out" / "brick" / "model.onnx").is_file()
    assert namespace["from_arrays"].predict(namespace["normal"][:2])[0].grid.shape == (12, 12)
    rows = namespace["rows"]
    assert len(rows) == 3 and all(Path(r["heatmap"]).is_file() for r in rows)
    assert {"patchcore", "gmm"} <= {s["name"] for s in namespace["vadblocks"].plugins()["scorers"]}
    exported = namespace["exported"]
    assert type(exported._model).__name__ == "ExportedModel" and "torch" not in type(exported._model).__module__
    with pytest.raises(namespace["vadblocks"].VadblocksError, match="cannot be saved: load it with runtime='torch'"):
        exported.save(tmp_path / "again")


def test_python_api_refuses_bad_images_with_one_clear_message(registry, small_data):
    import numpy as np
    import pytest
    import vadblocks

    with pytest.raises(vadblocks.VadblocksError, match=r"\(N, H, W, 3\)"):
        vadblocks.train(np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(vadblocks.VadblocksError, match="finite and in 0..1"):
        vadblocks.train(np.full((4, 96, 96, 3), np.nan, np.float32))
    with pytest.raises(vadblocks.VadblocksError, match="num-layers"):
        vadblocks.train(small_data["edge-impulse"], num_layers=7)


def test_the_wheel_lists_every_package():
    """pyproject names the packages (the API folder is installed as `vadblocks`): a new subpackage must be added."""
    import tomllib

    root = Path(__file__).parents[2]
    conf = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        ".".join(p.parent.relative_to(root).parts)
        for top in ("framework", "blocks")
        for p in (root / top).rglob("__init__.py")
    }
    assert conf["package-dir"] == {"vadblocks": "framework/api"}
    assert set(conf["packages"]) == (folders - {"framework.api"}) | {"vadblocks"}

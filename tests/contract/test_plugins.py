"""Plugin host: discovery through entry points, isolation of broken plugins, allowlist."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from framework.config import resolve
from framework.data import load_dataset
from framework.plugins import get_registry
from framework.train.pipeline import train
from tests.helpers import MEAN_SCORER, invoke, write_plugin_dist


def test_builtins_come_from_entry_points(fresh_plugins):
    reg = get_registry()
    assert reg.backbones["mobilenetv2"].distribution == "vadblocks"
    assert reg.scorers["patchcore"].distribution == "vadblocks"
    assert reg.scorers["patchcore"].plugin == "patchcore"
    assert reg.failures == []
    assert get_registry() is reg  # lazy and idempotent


def test_third_party_plugin_discovered_listed_and_usable(tmp_path, monkeypatch, fresh_plugins, small_data):
    site = write_plugin_dist(tmp_path / "site", "vad-meandist", "vad_meandist", MEAN_SCORER)
    monkeypatch.syspath_prepend(str(site))
    reg = get_registry()
    entry = reg.scorers["meandist"]
    assert (entry.distribution, entry.plugin) == ("vad-meandist", "vad_meandist")
    out = json.loads(invoke("plugins", "--json").output)
    assert {"name": "meandist", "distribution": "vad-meandist"}.items() <= next(
        s for s in out["scorers"] if s["name"] == "meandist"
    ).items()
    params = json.loads(invoke("params").output)
    item = next(p for p in params["parameters"] if p["param"] == "meandist-scale")
    assert item["showIf"] == {"parameter": "scoring-function", "operator": "eq", "value": "meandist"}
    assert "meandist" in next(p for p in params["parameters"] if p["param"] == "scoring-function")["valid"]
    model = train(
        load_dataset(small_data["edge-impulse"]),
        resolve(reg, {"scoring-function": "meandist"}),
        registry=reg,
        progress=False,
    )
    grids, scores = model.predict(load_dataset(small_data["folder"]).test.images)
    assert grids.shape == (16, 12, 12) and scores.shape == (16,)


def test_import_failure_is_reported_and_builtins_keep_working(tmp_path, monkeypatch, fresh_plugins):
    site = write_plugin_dist(tmp_path / "site", "vad-broken", "vad_broken", "import not_a_module_xyz\n")
    monkeypatch.syspath_prepend(str(site))
    reg = get_registry()
    assert "patchcore" in reg.scorers and "mobilenetv2" in reg.backbones
    (failure,) = reg.failures
    assert failure.distribution == "vad-broken" and "not_a_module_xyz" in failure.reason
    text = invoke("plugins").output
    assert "failed:" in text and "vad-broken" in text and "No module named 'not_a_module_xyz'" in text
    result = invoke(
        "train",
        "--data-directory",
        tmp_path,
        "--out-directory",
        tmp_path / "o",
        "--scoring-function",
        "vad_broken",
        ok=False,
    )
    assert "scorer 'vad_broken' is unavailable: plugin 'vad_broken' (vad-broken) failed" in result.output


def test_duplicate_name_reported_naming_both(tmp_path, monkeypatch, fresh_plugins):
    src = MEAN_SCORER.replace('name = "meandist"', 'name = "patchcore"').replace("meandist-scale", "dup-scale")
    monkeypatch.syspath_prepend(str(write_plugin_dist(tmp_path / "s", "vad-dup", "vad_dup", src)))
    reg = get_registry()
    assert reg.scorers["patchcore"].distribution == "vadblocks"
    (failure,) = reg.failures
    assert "duplicate scorer name 'patchcore'" in failure.reason and "(vadblocks)" in failure.reason
    assert failure.distribution == "vad-dup"


def test_parameter_name_clash_names_both_plugins(tmp_path, monkeypatch, fresh_plugins):
    src = MEAN_SCORER.replace('"meandist-scale"', '"pool-size"')
    monkeypatch.syspath_prepend(str(write_plugin_dist(tmp_path / "s", "vad-clash", "vad_clash", src)))
    reg = get_registry()
    assert "meandist" not in reg.scorers
    (failure,) = reg.failures
    assert "--pool-size" in failure.reason and "'meandist'" in failure.reason and "'patchcore'" in failure.reason
    with pytest.raises(Exception, match="unavailable"):
        reg.scorer("meandist")


def test_bad_parameter_declaration_is_reported(tmp_path, monkeypatch, fresh_plugins):
    src = MEAN_SCORER.replace('Param("meandist-scale", "float", 1.0,', 'Param("meandist-scale", "float", -1.0,')
    monkeypatch.syspath_prepend(str(write_plugin_dist(tmp_path / "s", "vad-badparam", "vad_badparam", src)))
    reg = get_registry()
    (failure,) = reg.failures
    assert "bad parameter declaration 'meandist-scale'" in failure.reason and "out of range" in failure.reason
    assert "patchcore" in reg.scorers


def test_hook_raising_is_isolated(tmp_path, monkeypatch, fresh_plugins):
    src = MEAN_SCORER.replace("    register(MeanDistance)", "    raise RuntimeError('boom')")
    monkeypatch.syspath_prepend(str(write_plugin_dist(tmp_path / "s", "vad-boom", "vad_boom", src)))
    reg = get_registry()
    (failure,) = reg.failures
    assert failure.reason == "register_scorers raised RuntimeError: boom"


def test_allowlist_environment_variable(tmp_path, monkeypatch, fresh_plugins):
    monkeypatch.syspath_prepend(str(write_plugin_dist(tmp_path / "s", "vad-meandist", "vad_meandist", MEAN_SCORER)))
    monkeypatch.setenv("VADBLOCKS_LOAD_PLUGINS", "mobilenetv2,patchcore")
    reg = get_registry()
    assert set(reg.scorers) == {"patchcore"}


def test_plugins_cli_in_a_real_process(tmp_path):
    site = write_plugin_dist(tmp_path / "site", "vad-meandist", "vad_meandist", MEAN_SCORER)
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run(
        [sys.executable, "-m", "framework.cli", "plugins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {s["name"]: s["distribution"] for s in json.loads(out)["scorers"]}
    assert names == {"gmm": "vadblocks", "patchcore": "vadblocks", "meandist": "vad-meandist"}


def test_the_plugin_host_imports_no_training_code():
    """Parameters are declared without their implementations: loading plugins and writing parameters.json
    import nothing from framework/train/ (nor torch)."""
    import subprocess
    import sys

    code = (
        "import sys; from framework.plugins import get_registry; from framework.config import parameters_json; "
        "parameters_json(get_registry()); "
        "print(sorted(m for m in sys.modules if m.startswith(('framework.train.', 'framework.train', 'torch'))"
        " and m != 'framework.training_params'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

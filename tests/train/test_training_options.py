"""Memory augmentation, threshold policies and train-time validation (declared once, used everywhere)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from framework.config import parameters_json, resolve, to_args
from framework.data import load_dataset
from framework.errors import VadblocksError
from framework.metrics import auroc, best_f1
from framework.train import augment, thresholds, validation
from framework.train.pipeline import AnomalyModel, train
from framework.train.synthetic import KINDS, SCALES, make_anomalies
from tests.helpers import invoke


def metrics_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    tp, fp, fn = (labels & predicted).sum(), (~labels & predicted).sum(), (labels & ~predicted).sum()
    return float(2 * tp / (2 * tp + fp + fn))


OPTIONS = {"augment": "flips", "threshold-policy": "fpr", "target-fpr": 0.1, "validation": False}


@pytest.fixture(scope="module")
def dataset(small_data):
    return load_dataset(small_data["edge-impulse"])


def test_training_parameters_reach_parameters_json_cli_container_and_metadata(registry, dataset):
    items = {p["param"]: p for p in parameters_json(registry)["parameters"]}
    assert items["augment"]["valid"] == ["none", "flips", "rot90", "dihedral"]
    assert items["threshold-policy"]["valid"] == ["max", "fpr", "f1"]
    assert items["target-fpr"]["showIf"] == {"parameter": "threshold-policy", "operator": "neq", "value": "max"}
    assert items["validation"]["type"] == "boolean"
    config = resolve(registry, OPTIONS)
    args = to_args(registry, config)
    for name, value in (
        ("--augment", "flips"),
        ("--threshold-policy", "fpr"),
        ("--target-fpr", "0.1"),
        ("--validation", "0"),
    ):
        assert args[args.index(name) + 1] == value
    model = train(dataset, config, progress=False)
    assert {k: model.metadata["parameters"][k] for k in OPTIONS} == OPTIONS
    assert model.metadata["augmentation"] == {"mode": "flips", "imagesLearned": 3 * len(dataset.train)}
    help_text = invoke("train", "--help").output
    assert all(f"--{name}" in help_text for name in OPTIONS)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"augment": "mirror"}, "--augment: 'mirror' is not valid; expected one of none, flips, rot90, dihedral"),
        ({"threshold-policy": "p99"}, "--threshold-policy: 'p99' is not valid; expected one of max, fpr, f1"),
        ({"target-fpr": "0.9"}, "--target-fpr: '0.9' is out of range; expected a number >= 0.001, <= 0.5"),
        ({"validation": "maybe"}, "--validation: 'maybe' is not valid; expected 1/0 (true/false)"),
    ],
)
def test_bad_training_options_are_refused(registry, values, message):
    with pytest.raises(VadblocksError) as err:
        resolve(registry, values)
    assert str(err.value) == message


def test_conformal_quantile():
    scores = np.arange(1, 20, dtype=np.float64)  # 19 held-out scores
    assert thresholds.conformal_quantile(scores, 0.1) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert thresholds.conformal_quantile(scores, 0.05) == 19.0  # ceil(20 * 0.95) = 19th
    assert thresholds.conformal_quantile(scores[:5], 0.05) == 5.0  # too few: the largest
    with pytest.raises(VadblocksError, match="needs held-out normal scores"):
        thresholds.conformal_quantile(np.array([]), 0.1)


def test_conformal_threshold_keeps_its_false_positive_rate():
    """Exchangeable normal scores: the fraction of new normal scores above the threshold stays <= rate."""
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(400):
        held, new = rng.gamma(2.0, size=40), rng.gamma(2.0, size=200)
        rates.append(float((new > thresholds.conformal_quantile(held, 0.1)).mean()))
    assert 0.06 < np.mean(rates) <= 0.1


def test_each_policy_gives_its_threshold(dataset):
    train_scores = np.array([1.0, 2.0, 3.0, 4.0])
    strict = {"normal_scores": np.linspace(1, 3, 19), "anomaly_scores": np.array([2.9, 5.0, 6.0])}
    held = {"strict": strict, "grouped": None}
    assert thresholds.suggest("max", 0.05, train_scores, held)[0] == 4.0
    assert thresholds.suggest("fpr", 0.1, train_scores, held)[0] == pytest.approx(np.linspace(1, 3, 19)[17])
    assert thresholds.suggest("fpr", 0.25, train_scores, None)[0] == 4.0  # ceil(5 * 0.75) = 4th of 4
    labels = np.r_[np.zeros(19, bool), np.ones(3, bool)]
    f1, thr = best_f1(labels, np.r_[strict["normal_scores"], strict["anomaly_scores"]])
    assert thresholds.suggest("f1", 0.5, train_scores, held)[0] == thr  # above the false positive bound (2.0)
    with pytest.raises(VadblocksError, match="needs validation"):
        thresholds.suggest("f1", 0.05, train_scores, None)
    # the groups of similar images, where given, set the false positive bound
    grouped = {"normal_scores": np.linspace(1, 5, 19), "groups": 3}
    bound = np.linspace(1, 5, 19)[17]
    t, how = thresholds.suggest("fpr", 0.1, train_scores, {**held, "grouped": grouped})
    assert t == pytest.approx(bound) and "3 groups of similar or near-duplicate images" in how
    # the same groups with their memory refilled cap the bound at their 1 - rate / 10 quantile, where lower
    refilled = np.linspace(0, 2, 200)
    t, how = thresholds.suggest(
        "fpr", 0.1, train_scores, {**held, "grouped": {**grouped, "substituted_scores": refilled}}
    )
    assert t == pytest.approx(refilled[198]) and t < bound  # ceil(201 * 0.99) = 199th of 200
    assert "0.99 quantile of the same 200 held-out normal images scored with their memory refilled" in how
    assert "below the conformal 0.9 quantile of 19 held-out normal scores with it dropped (3 groups" in how
    high = {**grouped, "substituted_scores": refilled + 10}
    assert thresholds.suggest("fpr", 0.1, train_scores, {**held, "grouped": high})[0] == pytest.approx(bound)


def test_f1_policy_never_flags_more_than_its_false_positive_bound():
    """Synthetic anomalies that barely separate: the best F1 on a balanced set is to flag everything; the f1
    policy keeps the threshold at the conformal bound of the held-out normal scores instead."""
    rng = np.random.default_rng(1)
    normal, anomalies = rng.normal(0, 1, 200), rng.normal(0.2, 1, 200)
    held = {"strict": {"normal_scores": normal, "anomaly_scores": anomalies}, "grouped": None}
    labels = np.r_[np.zeros(200, bool), np.ones(200, bool)]
    _, unbounded = best_f1(labels, np.r_[normal, anomalies])
    assert (normal > unbounded).mean() > 0.5  # unbounded, most normal images would be flagged
    t, how = thresholds.suggest("f1", 0.1, np.zeros(3), held)
    assert t == thresholds.conformal_quantile(normal, 0.1) and "lay below it" in how
    assert (normal > t).mean() <= 0.1


def _overlapping_crops(clusters: int, per: int, seed: int = 0) -> "torch.Tensor":
    """Stride-8 maps of ``clusters`` scenes, ``per`` shifted, slightly noisy crops of each (near-duplicates)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    scenes = torch.randn(clusters, 8, 16, 16, generator=g)
    crops = [
        scenes[i // per, :, (i % 5) : (i % 5) + 12, (i % 3) : (i % 3) + 12] + 0.1 * torch.randn(8, 12, 12, generator=g)
        for i in range(clusters * per)
    ]
    return torch.stack(crops)


def test_similar_groups_hold_out_look_alikes_together():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (4, 6))
    x = np.concatenate([c + rng.normal(0, 0.1, (15, 6)) for c in centres])
    groups = validation.similar_groups(x, k=4)
    assert sorted(len(g) for g in groups) == [15] * 4
    assert all(len(set(g // 15)) == 1 for g in groups)  # each group is one cluster
    assert [list(g) for g in groups] == [list(g) for g in validation.similar_groups(x, k=4)]  # seeded
    assert validation.similar_groups(x[:3], k=4) == []  # no group can leave 2 images on either side


def test_near_duplicate_groups_hold_out_each_scene_whole():
    import torch

    maps = _overlapping_crops(8, 10)
    groups = validation.near_duplicate_groups(maps, k=4)
    assert sorted(len(g) for g in groups) == [20] * 4  # two whole scenes per group
    assert sorted(i for g in groups for i in g) == list(range(80))
    assert all(len(set((g // 10).tolist())) == 2 for g in groups)  # no scene split between groups
    d = validation.image_distances(maps)
    scene = np.arange(80) // 10
    same = scene[:, None] == scene[None]
    assert d[same & ~np.eye(80, dtype=bool)].max() < d[~same].min()  # crops of one scene lie closest
    assert np.allclose(d, d.T) and np.allclose(validation.image_distances(maps, step=1).diagonal(), 0, atol=1e-2)
    assert [list(g) for g in groups] == [list(g) for g in validation.near_duplicate_groups(maps, k=4)]  # seeded
    assert validation.near_duplicate_groups(maps[:3], k=4) == []  # no group can leave 2 images on either side
    # no near-duplicates: average linkage chains into one cluster; split down, no group holds more than its share
    independent = torch.randn(100, 8, 12, 12, generator=torch.Generator().manual_seed(1))
    assert max(len(g) for g in validation.near_duplicate_groups(independent, k=5)) <= 20 + 1


def test_group_inputs_keep_maps_only_up_to_the_linked_images(monkeypatch):
    maps = _overlapping_crops(8, 10)
    descriptors, kept = validation._group_inputs([[maps[:40]], [maps[40:]]], len(maps))
    assert descriptors.shape == (80, 16) and kept is not None and torch_equal(kept, maps)
    monkeypatch.setattr(validation, "LINKED_IMAGES", 50)
    descriptors_again, none = validation._group_inputs([[maps[:40]], [maps[40:]]], len(maps))
    assert none is None and np.array_equal(descriptors, descriptors_again)  # memory bounded by the count


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_estimate_prints_the_folds_range_where_they_disagree():
    section = {
        "image_auroc": 0.8,
        "pixel_auroc": 0.9,
        "f1": 0.7,
        "fpr": 0.1,
        "method": {"heldOutNormal": 40, "folds": 5},
    }
    assert "across" not in next(validation.estimate_lines({**section, "image_auroc_folds": [0.78, 0.82]}))
    line = next(validation.estimate_lines({**section, "image_auroc_folds": [0.70, 0.90]}))
    assert "image AUROC 0.800 (0.700-0.900 across the 5 folds)" in line
    sizes = [3, 3]
    normal, anomalies = np.array([0, 1, 2, 0, 1, 2.0]), np.array([3, 4, 5, 0.5, 1.5, 2.5])
    assert validation.fold_aurocs(normal, anomalies, sizes) == [1.0, pytest.approx(6 / 9)]


@pytest.mark.parametrize("policy", ["max", "fpr", "f1"])
def test_trained_model_records_its_policy(registry, dataset, policy):
    model = train(dataset, resolve(registry, {"threshold-policy": policy, "sampling-ratio": 0.2}), progress=False)
    meta = model.metadata
    assert meta["thresholdPolicy"]["policy"] == policy and meta["nominalThresholdScore"] == model.threshold
    assert meta["maxTrainingScore"] == pytest.approx(max(meta["trainScores"]), rel=1e-5)
    if policy == "max":
        assert model.threshold == meta["maxTrainingScore"]
    else:
        assert model.threshold != meta["maxTrainingScore"]
        assert "held-out" in meta["thresholdPolicy"]["how"]
    assert meta["validation"]["threshold"] == model.threshold


def test_f1_policy_without_validation_falls_back_to_the_maximum(small_data, tmp_path):
    out = tmp_path / "m"
    result = invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--quiet",
        "--threshold-policy",
        "f1",
        "--validation",
        "0",
    )
    meta = json.loads((out / "anomaly_metadata.json").read_text())
    assert meta["nominalThresholdScore"] == meta["maxTrainingScore"]
    assert "the f1 policy needs validation, which is turned off" in meta["thresholdPolicy"]["how"]
    assert "the f1 policy needs validation, which is turned off" in result.output
    assert "Validation: turned off (--validation 0)" in result.output


@pytest.mark.parametrize("validate", [0, 1])
def test_augmented_copies_count_as_their_source_image(registry, dataset, validate, monkeypatch):
    """Leave-one-out training scores exclude the bank entries of an image's flipped copies too; with validation
    they come from its folds (each held-out image scored without its own entries), with the same values."""
    if validate:  # the folds give them: no second pass over the training set

        def second_pass(*args, **kwargs):
            raise AssertionError("validation gave the leave-one-out scores; training_scores_batches is not needed")

        monkeypatch.setattr(registry.scorer("patchcore").cls, "training_scores_batches", second_pass)
    model = train(
        dataset, resolve(registry, {"augment": "flips", "sampling-ratio": 0.5, "validation": validate}), progress=False
    )
    monkeypatch.undo()
    scorer = model.scorer
    owners = scorer._bank_images
    n = len(dataset.train)
    assert owners.min() == 0 and owners.max() == n - 1  # copies are owned by their source image
    feats = model.features(dataset.train.images)
    module = scorer.scoring_module()
    with torch.inference_mode():
        exclude = torch.arange(n)[:, None] == owners[None, :]
        manual = module(feats, exclude=exclude)[1].numpy()
        leaky = module(feats)[1].numpy()
    loo = scorer.training_scores(feats)
    np.testing.assert_allclose(loo, manual, rtol=1e-5)
    assert model.metadata["maxTrainingScore"] == pytest.approx(float(manual.max()), rel=1e-5)
    assert model.metadata["trainScoreRange"][0] == pytest.approx(float(manual.min()), rel=1e-5)
    assert (leaky < manual).mean() > 0.9  # scoring against its own copies would hide most of the distance


def test_augmentation_learns_the_transformed_images(registry, dataset):
    """A mirrored training image scores like a training image once flips are learned."""
    plain = train(dataset, resolve(registry, {"augment": "none", "validation": 0, "sampling-ratio": 1}), progress=False)
    flips = train(
        dataset, resolve(registry, {"augment": "flips", "validation": 0, "sampling-ratio": 1}), progress=False
    )
    mirrored = np.ascontiguousarray(dataset.train.images[:8, :, ::-1])
    assert flips.predict(mirrored)[1].max() < 0.01 * plain.predict(mirrored)[1].min()  # memorised exactly
    assert augment.copies("dihedral") == 8 and len({t(mirrored).tobytes() for t in augment.transforms("dihedral")}) == 7


def test_rot90_needs_square_images(registry, dataset):
    import dataclasses

    wide = dataclasses.replace(dataset, train=dataclasses.replace(dataset.train, images=dataset.train.images[:, :64]))
    with pytest.raises(VadblocksError, match="needs square images"):
        train(wide, resolve(registry, {"augment": "rot90"}), progress=False)


def test_exported_graph_of_an_augmented_model_matches_in_process(registry, dataset, tmp_path):
    from framework.serve.runtimes import open_runtime
    from framework.train.export import save_with_exports

    model = train(dataset, resolve(registry, {"augment": "rot90", "validation": 0}), progress=False)
    save_with_exports(model, tmp_path / "m", ("onnx",))
    test = load_dataset(dataset.source).test
    g_torch, s_torch = AnomalyModel.load(tmp_path / "m").predict(test.images)
    g_onnx, s_onnx = open_runtime(tmp_path / "m", "onnx").predict(test.images)
    np.testing.assert_allclose(s_onnx, s_torch, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(g_onnx, g_torch, rtol=1e-3, atol=1e-3)


def test_synthetic_anomalies_are_seeded_varied_and_masked(dataset):
    images = dataset.train.images[:12]
    a, masks, kinds = make_anomalies(images, dataset.train.images[12:20], seed=3)
    b, masks_b, _ = make_anomalies(images, dataset.train.images[12:20], seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(masks, masks_b)
    assert kinds == list(KINDS) * 3 and a.dtype == np.float32 and a.shape == images.shape
    for img, orig, mask in zip(a, images, masks):
        changed = np.abs(img - orig).max(-1) > 1e-3
        assert 0.0005 < mask.mean() < 0.15  # a defect of a few percent of the image, or less
        assert changed[mask].mean() > 0.5 and changed[~mask].mean() < 0.05  # the mask is where it changed
    # each kind at the scales in turn: smaller defects, and fainter ones
    assert len(SCALES) == 2
    scale = (np.arange(len(images)) // len(KINDS)) % len(SCALES)
    area = [masks[scale == k].mean() for k in range(len(SCALES))]
    contrast = np.array([np.abs(a[i] - images[i])[masks[i]].mean() for i in range(len(images))])
    assert area[0] > area[1]
    assert contrast[scale == 0].mean() > contrast[scale == 1].mean()
    assert not np.array_equal(make_anomalies(images, images, seed=4)[0], a)


def test_validation_section_and_labelled_figures(small_data, tmp_path):
    out = tmp_path / "m"
    result = invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--quiet",
        "--threshold-policy",
        "fpr",
        "--sampling-ratio",
        "0.2",
    )
    meta = json.loads((out / "anomaly_metadata.json").read_text())
    v = meta["validation"]
    # five folds of 8: each of the 40 training images held out once, with one synthetic anomaly each
    assert v["source"] == "synthetic" and v["method"]["heldOutNormal"] == 40 == v["method"]["syntheticAnomalies"]
    assert v["method"]["trainedOn"] == 32 and v["method"]["folds"] == 5 and v["counts"]["tp"] + v["counts"]["fn"] == 40
    for key in ("image_auroc", "pixel_auroc", "f1", "fpr"):
        assert 0.0 <= v[key] <= 1.0
    assert v["fpr"] == v["counts"]["fp"] / 40
    assert "Expected performance (synthetic anomalies on 40 held-out images): image AUROC" in result.output
    # the small dataset's Edge Impulse test split is labelled: real figures beside the estimates
    lab = v["labelled"]
    test = json.loads(
        invoke(
            "test",
            "--model-directory",
            out,
            "--data-directory",
            small_data["edge-impulse"],
            "--json",
            "--runtime",
            "torch",
        ).output
    )
    assert lab["source"] == "labelled" and lab["n_images"] == test["n_images"] == 16
    assert lab["image_auroc"] == pytest.approx(test["image_auroc"], abs=1e-6)
    assert lab["f1"] == pytest.approx(test["f1"], abs=1e-6) and lab["counts"] == test["counts"]
    assert "On the labelled test split (16 images)" in result.output


def test_validation_figures_are_what_the_held_out_images_give(registry, dataset):
    """Recompute the estimate by hand: for each fold, the bank with the held-out images' entries replaced by
    the nearest patches of the kept images (and their augmented copies) scores them and their synthetic
    anomalies; every training image is held out exactly once. The threshold (f1 policy), F1 and FPR come from
    the strict scores: the bank with those entries dropped and nothing in their place."""
    config = resolve(registry, {"sampling-ratio": 0.3})
    model = train(dataset, config, progress=False)
    images = dataset.train.images
    flips = augment.transforms(config.training["augment"])
    assert flips  # the default augments: the kept stream holds the copies the bank was fitted on
    splits = validation.fold_splits(len(images))
    assert len(splits) == 5 and sorted(np.concatenate([h for _, h in splits])) == list(range(len(images)))
    kept, held = splits[0]
    assert len(held) == 8 and not set(kept) & set(held) and list(held) == list(splits[0][1])
    normal, anomalous, strict_normal, strict_anomalous = [], [], [], []
    for fold, (kept, held) in enumerate(splits):
        kept_batches = [model.features(x) for x in [images[kept]] + [fn(images[kept]) for fn in flips]]
        forgot = model.scorer.holdout(held, kept_batches)
        assert not torch.isin(forgot._bank_images, torch.as_tensor(held)).any()
        assert (forgot._bank_images == -1).any()  # substitutes
        normal.append(forgot.predict(model.features(images[held]))[1])
        bad, _, _ = make_anomalies(images[held], images[kept], validation.SEED + fold)
        anomalous.append(forgot.predict(model.features(bad))[1])
        dropped = model.scorer.holdout(held)
        assert len(dropped.bank) < len(forgot.bank) and not (dropped._bank_images == -1).any()
        strict_normal.append(dropped.predict(model.features(images[held]))[1])
        strict_anomalous.append(dropped.predict(model.features(bad))[1])
    n = len(images)
    labels = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    scores = np.r_[np.concatenate(normal), np.concatenate(anomalous)]
    v = model.metadata["validation"]
    assert v["image_auroc"] == pytest.approx(auroc(labels, scores))
    strict = np.r_[np.concatenate(strict_normal), np.concatenate(strict_anomalous)]
    assert not np.allclose(strict, scores)  # nothing stands in for the held-out memory: higher normal scores
    # the threshold: the best F1 on the strict scores, never below the conformal quantile of the normal
    # scores of groups of similar images, each scored by the bank without its entries, capped by a higher
    # quantile of the same groups scored with those entries refilled
    descriptors, maps = validation._group_inputs([model.features(images)], len(images))
    groups = validation.similar_groups(descriptors) + validation.near_duplicate_groups(maps)
    assert len(groups) == 10 and model.metadata["thresholdPolicy"]["how"].count("10 groups of similar") == 1
    grouped = np.concatenate([model.scorer.holdout(g).predict(model.features(images[g]))[1] for g in groups])
    refilled = []  # the same groups, their entries replaced by the nearest patches of the other images
    for g in groups:
        kept = np.setdiff1d(np.arange(len(images)), g)
        kept_batches = [model.features(x) for x in [images[kept]] + [fn(images[kept]) for fn in flips]]
        refilled.append(model.scorer.holdout(g, kept_batches).predict(model.features(images[g]))[1])
    cap = thresholds.conformal_quantile(np.concatenate(refilled), 0.1 * thresholds.TAIL_FRACTION)
    _, best = best_f1(labels, strict)
    threshold = max(best, min(thresholds.conformal_quantile(grouped, 0.1), cap))
    assert model.threshold == pytest.approx(threshold, rel=1e-5)
    assert v["fpr"] == pytest.approx(float((strict[:n] > threshold).mean()))
    assert v["f1"] == pytest.approx(metrics_f1(labels, strict > threshold))
    method = model.metadata["validation"]["method"]
    assert method["folds"] == 5 and method["heldOutNormal"] == n == method["syntheticAnomalies"]


def test_validation_off_and_too_few_images(registry, dataset):
    import dataclasses

    off = train(dataset, resolve(registry, {"validation": 0}), progress=False)
    assert off.metadata["validation"] == {"source": None, "reason": "turned off (--validation 0)"}
    tiny = dataclasses.replace(dataset, train=dataclasses.replace(dataset.train, images=dataset.train.images[:6]))
    few = train(tiny, resolve(registry, {"threshold-policy": "f1"}), progress=False)
    assert few.metadata["validation"]["reason"] == f"fewer than {validation.MIN_IMAGES} training images"
    assert few.threshold == few.metadata["maxTrainingScore"]  # f1 falls back to the maximum training score
    assert "skipped below 10 training images" in few.metadata["thresholdPolicy"]["how"]


def test_gmm_validates_through_a_refit(registry, dataset):
    model = train(dataset, resolve(registry, {"scoring-function": "gmm", "threshold-policy": "f1"}), progress=False)
    v = model.metadata["validation"]
    assert "refitted" in v["method"]["description"] and math.isfinite(model.threshold)
    assert v["counts"]["tp"] + v["counts"]["fn"] == 8


def test_pixel_auroc_estimate_uses_a_bounded_seeded_subset(monkeypatch):
    """With many training images the pixel AUROC estimate comes from a seeded subset of the held-out images
    (10,000 training images would sort 184 M pixels); image-level figures still use every image."""
    rng = np.random.default_rng(0)
    n = 30
    masks = np.zeros((n, 8, 8), bool)
    masks[:, 2:5, 2:5] = True
    grids = rng.random((2 * n, 4, 4)).astype(np.float32)
    grids[n:, 1:3, 1:3] += 1.0  # the defective cells score higher
    scores = grids.reshape(2 * n, -1).max(1)
    result = {
        "normal_scores": scores[:n],
        "anomaly_scores": scores[n:],
        "grids": grids,
        "masks": masks,
        "kinds": ["line"] * n,
        "n_kept": 100,
        "folds": 5,
        "scorer": "test",
        "strict": {"normal_scores": scores[:n], "anomaly_scores": scores[n:]},
    }
    full = validation.summary(result, 1.2, "f1", 0.0)
    assert full["method"]["pixelAurocImages"] == 2 * n
    monkeypatch.setattr(validation, "PIXEL_IMAGES", 20)
    part, again = (validation.summary(result, 1.2, "f1", 0.0) for _ in range(2))
    assert part["method"]["pixelAurocImages"] == 20
    assert part["pixel_auroc"] == again["pixel_auroc"] and 0.5 < part["pixel_auroc"] <= 1.0
    assert part["pixel_auroc"] != full["pixel_auroc"]
    assert part["image_auroc"] == full["image_auroc"] and part["counts"] == full["counts"]

"""Data contract: Edge Impulse data directories, folder layouts and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from framework.data import load_dataset
from framework.errors import VadblocksError
from tests.helpers import invoke


def ei_dir(root: Path, x_train, y_train=None, x_test=None, y_test=None, info: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "X_split_train.npy", x_train, allow_pickle=True)
    np.save(
        root / "Y_split_train.npy", np.full((len(x_train), 1), 2) if y_train is None else y_train, allow_pickle=True
    )
    if x_test is not None:
        np.save(root / "X_split_test.npy", x_test, allow_pickle=True)
        np.save(root / "Y_split_test.npy", y_test, allow_pickle=True)
    if info is not None:
        (root / "train_input.json").write_text(json.dumps(info))
    return root


def rand_images(n, h=32, w=32, c=3, seed=0):
    return np.random.default_rng(seed).random((n, h, w, c), dtype=np.float32)


def test_edge_impulse_flattened_and_shape_inference(small_data):
    ds = load_dataset(small_data["edge-impulse"])
    assert ds.kind == "edge-impulse" and ds.image_shape == (96, 96, 3)
    assert ds.train.images.shape == (40, 96, 96, 3) and ds.train.images.dtype == np.float32
    assert ds.test.anomalous.sum() == 8 and (~ds.test.anomalous).sum() == 8
    folder = load_dataset(small_data["folder"])
    np.testing.assert_allclose(folder.train.images, ds.train.images, atol=1e-6)
    assert folder.test.masks is not None and folder.test.masks[folder.test.anomalous].any()
    assert not folder.test.masks[~folder.test.anomalous].any()


def test_nhwc_grayscale_onehot_and_scaling(tmp_path):
    x = (rand_images(4, c=1) * 255).astype(np.float32)
    y_test = np.array([[1, 0], [0, 1]])  # one-hot over ["anomaly", "no anomaly"]
    root = ei_dir(tmp_path / "d", x, x_test=x[:2], y_test=y_test, info={"imageInputScaling": "0..255"})
    ds = load_dataset(root)
    assert ds.channels == 1 and ds.image_shape == (32, 32, 1) and ds.train.images.shape[-1] == 3
    assert ds.train.images.max() <= 1.0 and list(ds.test.anomalous) == [True, False]
    np.testing.assert_allclose(ds.train.images[..., 0], x[..., 0] / 255, atol=1e-6)


def test_input_shape_option_for_non_square(tmp_path):
    x = rand_images(3, 32, 64).reshape(3, -1)
    root = ei_dir(tmp_path / "d", x)
    with pytest.raises(VadblocksError, match="cannot infer the image shape.*--input-shape"):
        load_dataset(root)
    assert load_dataset(root, input_shape="32,64,3").image_shape == (32, 64, 3)


def test_class_names_from_train_input(tmp_path):
    x = rand_images(2)
    root = ei_dir(
        tmp_path / "d",
        x,
        y_train=np.array([[1], [1]]),
        x_test=x,
        y_test=np.array([[1], [2]]),
        info={"classes": ["no anomaly", "anomaly"]},
    )
    assert list(load_dataset(root).test.anomalous) == [False, True]


# --- every bad input: clear message, non-zero exit, nothing written --------------------------


def _bad_cases(tmp: Path):
    good = rand_images(4)
    cases = {}
    cases["missing file"] = (ei_dir(tmp / "missing", good), "Y_split_train.npy is missing", "Y_split_train.npy")
    cases["wrong ndim"] = (ei_dir(tmp / "ndim", good[..., 0]), "has 3 dimensions", None)
    cases["non-float dtype"] = (ei_dir(tmp / "dtype", (good * 255).astype(np.uint8)), "has dtype uint8", None)
    nan = good.copy()
    nan[1, 0, 0, 0] = np.nan
    cases["nan"] = (ei_dir(tmp / "nan", nan), "contains NaN or infinite values in 1 sample(s)", None)
    cases["empty train"] = (ei_dir(tmp / "empty", good[:0]), "holds no samples", None)
    cases["inconsistent sizes"] = (
        ei_dir(tmp / "sizes", good, x_test=rand_images(2, 48, 48), y_test=np.array([[1], [2]])),
        "inconsistent image sizes",
        None,
    )
    obj = np.empty(4, dtype=object)
    obj[:] = [g for g in good]
    cases["pickled objects"] = (ei_dir(tmp / "pickle", obj), "holds pickled Python objects", None)
    cases["anomaly in train"] = (
        ei_dir(tmp / "anom", good, y_train=np.array([[1], [2], [2], [2]])),
        "1 training sample(s) are labelled 'anomaly'",
        None,
    )
    cases["out of scaling range"] = (ei_dir(tmp / "range", good * 255), "values span", None)
    cases["bad class index"] = (
        ei_dir(tmp / "cls", good, y_train=np.array([[2], [2], [2], [7]])),
        "class index 7 outside 1..2",
        None,
    )
    corrupt = tmp / "corrupt"
    (corrupt / "train" / "good").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 200, 30)).save(corrupt / "train" / "good" / "a.png")
    (corrupt / "train" / "good" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    cases["corrupt image"] = (corrupt, "b.png is corrupt or not an image", None)
    sizes = tmp / "foldersizes"
    (sizes / "train" / "good").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(sizes / "train" / "good" / "a.png")
    Image.new("RGB", (40, 32)).save(sizes / "train" / "good" / "b.png")
    cases["inconsistent folder sizes"] = (sizes, "inconsistent image sizes: train/good/a.png is 32x32", None)
    (tmp / "nodata").mkdir()
    cases["not a data directory"] = (tmp / "nodata", "neither an Edge Impulse data directory", None)
    bad_npy = ei_dir(tmp / "badnpy", good)
    (bad_npy / "X_split_train.npy").write_bytes(b"garbage")
    cases["corrupt npy"] = (bad_npy, "X_split_train.npy is not a valid .npy file", None)
    return cases


CASE_NAMES = [
    "missing file",
    "wrong ndim",
    "non-float dtype",
    "nan",
    "empty train",
    "inconsistent sizes",
    "pickled objects",
    "anomaly in train",
    "out of scaling range",
    "bad class index",
    "corrupt image",
    "inconsistent folder sizes",
    "not a data directory",
    "corrupt npy",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_clear_error_and_nothing_written(tmp_path, case):
    cases = _bad_cases(tmp_path)
    root, message, remove = cases[case]
    if remove:
        (root / remove).unlink()
    extra = ["--image-size", "0"] if case == "inconsistent folder sizes" else []
    out = tmp_path / "out"
    out.mkdir()  # like a mounted volume: it exists and must stay empty
    result = invoke("train", "--data-directory", root, "--out-directory", out, "--quiet", *extra, ok=False)
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert list(out.iterdir()) == []

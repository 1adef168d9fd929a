"""Fuzzing the data readers and the model-directory checks (Hypothesis, fixed seed, bounded), and a corpus
of bad command lines: the only failure anyone may see is a VadblocksError's message, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from framework.data import load_dataset
from framework.errors import VadblocksError
from framework.portable.impulse import ExportedModel
from framework.portable.modelfiles import check_model_dir, integrity, npz_layout
from framework.serve.runtimes import open_runtime

ROOT = Path(__file__).resolve().parents[2]
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.uint8, np.int64, np.bool_, np.complex64])


@st.composite
def arrays(draw, max_dims: int = 5):
    dtype = draw(DTYPES)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=7))
    if int(np.prod(shape)) > 4000:
        shape = shape[:1]
    elements = None
    if np.dtype(dtype).kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=np.dtype(dtype).itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements))


def expect_clean(fn) -> object:
    """Run ``fn``: success or a VadblocksError with a message; any other exception fails the test."""
    try:
        return fn()
    except VadblocksError as exc:
        assert str(exc).strip(), "empty error message"
        return exc


@FUZZ
@given(
    x=arrays(),
    y=arrays(max_dims=3),
    info=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["classes", "inputShapeString", "imageInputScaling", "inputShape"]),
            st.one_of(
                st.text(max_size=12),
                st.integers(-5, 300),
                st.lists(st.text(max_size=6), max_size=3),
                st.sampled_from(["(4, 4, 3)", "0..255", "-1..1", "2,2,3"]),
            ),
            max_size=4,
        ),
    ),
    with_test=st.booleans(),
)
def test_edge_impulse_reader_never_raises_anything_else(x, y, info, with_test):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        np.save(root / "X_split_train.npy", x)
        np.save(root / "Y_split_train.npy", y)
        if with_test:
            np.save(root / "X_split_test.npy", x)
            np.save(root / "Y_split_test.npy", y)
        if info is not None:
            (root / "train_input.json").write_text(json.dumps(info))
        expect_clean(lambda: load_dataset(root))


@pytest.fixture(scope="module")
def valid_files(small_data) -> dict[str, bytes]:
    ei, folder = small_data["edge-impulse"], small_data["folder"]
    png = sorted((folder / "test").glob("*/*.png"))[0]
    mask = sorted((folder / "ground_truth").glob("*/*.png"))[0]
    return {
        "X_split_train.npy": (ei / "X_split_train.npy").read_bytes(),
        "Y_split_train.npy": (ei / "Y_split_train.npy").read_bytes(),
        "train_input.json": (ei / "train_input.json").read_bytes(),
        "image.png": png.read_bytes(),
        "mask.png": mask.read_bytes(),
    }


@st.composite
def corruptions(draw, data: bytes) -> bytes:
    """Truncate, flip, insert or overwrite bytes of ``data``."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "overwrite"]))
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "truncate":
            del out[pos:]
        elif kind == "flip" and out:
            out[pos] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = draw(st.binary(min_size=1, max_size=16))
            out[pos : pos + len(chunk)] = chunk
    return bytes(out)


@FUZZ
@given(
    data=st.data(),
    which=st.sampled_from(["X_split_train.npy", "Y_split_train.npy", "train_input.json", "image.png", "mask.png"]),
)
def test_corrupt_bytes_in_data_files(valid_files, small_data, data, which):
    bad = data.draw(corruptions(valid_files[which]))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        if which.endswith((".npy", ".json")):
            for name in ("X_split_train.npy", "Y_split_train.npy", "train_input.json"):
                (root / name).write_bytes(bad if name == which else valid_files[name])
        else:
            shutil.copytree(small_data["folder"], root / "f")
            target = (
                sorted((root / "f" / "train" / "good").glob("*.png"))[0]
                if which == "image.png"
                else sorted((root / "f" / "ground_truth").glob("*/*.png"))[0]
            )
            target.write_bytes(bad)
            root = root / "f"
        expect_clean(lambda: load_dataset(root))


@pytest.fixture(scope="module")
def model_dir(exported_model) -> Path:
    return exported_model


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
FIELDS = [
    "formatVersion",
    "inputShape",
    "gridSize",
    "nominalThresholdScore",
    "imageInputScaling",
    "parameters",
    "integrity",
    "arrays",
    "scorer",
    "backbone",
    "scorerState",
]


def open_everything(model: Path) -> None:
    """Every way a model directory is read: the checks, both exported runtimes, torch, the Edge Impulse runner."""
    check_model_dir(model)
    for runtime in ("tflite", "onnx", "torch"):
        open_runtime(model, runtime).predict(np.full((1, 96, 96, 3), 0.5, np.float32))
    ExportedModel.from_directory(str(model), "tflite")


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, min_size=1, max_size=3))
def test_fuzzed_metadata(model_dir, changes):
    with tempfile.TemporaryDirectory() as d:
        model = Path(d) / "m"
        shutil.copytree(model_dir, model)
        meta = json.loads((model / "anomaly_metadata.json").read_text())
        meta.update(changes)
        (model / "anomaly_metadata.json").write_text(json.dumps(meta))
        expect_clean(lambda: open_everything(model))


@FUZZ
@given(
    data=st.data(),
    which=st.sampled_from(["scorer_state.npz", "backbone.npz", "model.tflite", "model.onnx", "anomaly_metadata.json"]),
    reseal=st.booleans(),
)
def test_corrupt_bytes_in_model_files(model_dir, data, which, reseal):
    """With ``reseal`` the corrupt file's size and checksum are recorded, so the deeper readers must cope."""
    with tempfile.TemporaryDirectory() as d:
        model = Path(d) / "m"
        shutil.copytree(model_dir, model)
        (model / which).write_bytes(data.draw(corruptions((model / which).read_bytes())))
        if reseal and which != "anomaly_metadata.json":
            meta = json.loads((model / "anomaly_metadata.json").read_text())
            meta["integrity"] = integrity(model, meta["integrity"]["files"])
            if which.endswith(".npz"):
                try:
                    meta["arrays"][which] = npz_layout(model / which)
                except VadblocksError:
                    pass
            (model / "anomaly_metadata.json").write_text(json.dumps(meta))
        expect_clean(lambda: open_everything(model))


# --- the command line over a corpus of bad inputs ---------------------------------------------------------------


def corpus(tmp: Path, small_data: dict, model: Path) -> list[list[str]]:
    ei, folder = small_data["edge-impulse"], small_data["folder"]
    bad_img = tmp / "bad.png"
    bad_img.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    empty = tmp / "empty"
    empty.mkdir()
    truncated = tmp / "truncated"
    shutil.copytree(model, truncated)
    (truncated / "scorer_state.npz").write_bytes((truncated / "scorer_state.npz").read_bytes()[:100])
    nan = tmp / "nan"
    nan.mkdir()
    x = np.load(ei / "X_split_train.npy")
    x[3, 5] = np.nan
    np.save(nan / "X_split_train.npy", x)
    shutil.copy(ei / "Y_split_train.npy", nan / "Y_split_train.npy")
    img = str(sorted((folder / "test").glob("*/*.png"))[0])
    out = str(tmp / "out")
    return [
        ["train", "--data-directory", str(ei), "--out-directory", out, "--num-layers", "0"],
        ["train", "--data-directory", str(ei), "--out-directory", out, "--pool-size", "4"],
        [
            "train",
            "--data-directory",
            str(ei),
            "--out-directory",
            out,
            "--capacity",
            "huge",
            "--scoring-function",
            "gmm",
        ],
        ["train", "--data-directory", str(ei), "--out-directory", out, "--export", "coreml"],
        ["train", "--data-directory", str(empty), "--out-directory", out],
        ["train", "--data-directory", str(nan), "--out-directory", out],
        ["train", "--data-directory", str(ei), "--out-directory", str(ei / "X_split_train.npy")],
        ["train", "--data-directory", str(ei), "--out-directory", out, "--input-shape", "7,7,7"],
        ["predict", "--model-directory", str(truncated), img],
        ["predict", "--model-directory", str(model), str(bad_img)],
        ["predict", "--model-directory", str(model), str(tmp / "missing.png")],
        ["predict", "--model-directory", str(empty), img],
        ["test", "--model-directory", str(model), "--data-directory", str(empty)],
        ["test", "--model-directory", str(model), "--data-directory", str(folder), "--threshold", "nan"],
        ["test", "--model-directory", str(truncated), "--data-directory", str(folder)],
        ["report", "--model-directory", str(model), "--data-directory", str(empty), "--out", str(tmp / "r.html")],
        ["eim", "--model-directory", str(model), "--out", str(tmp / "x.eim"), "--runtime", "tflite-int8"],
        ["eim", "--model-directory", str(truncated), "--out", str(tmp / "x.eim")],
        ["serve", "--model-directory", str(truncated), "--port", "0"],
        ["serve", "--model-directory", str(model), "--runtime", "tflite-int8", "--port", "0"],
        ["run", str(empty), "--data-directory", str(ei), "--out-directory", out],
        ["package", "--out", str(tmp / "pkg"), "--scorer", "nope"],
    ]


def test_no_traceback_over_a_corpus_of_bad_command_lines(small_data, model_dir, tmp_path):
    cases = corpus(tmp_path, small_data, model_dir)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}

    def run(args: list[str]) -> tuple[list[str], subprocess.CompletedProcess]:
        return args, subprocess.run(
            [sys.executable, "-m", "framework.cli", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env=env,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, cases))
    for args, proc in results:
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, (args, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1].startswith("Error: "), (args, proc.stderr)
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.eim").exists()

"""TensorFlow Lite Micro: every built-in scorer's `--int8-precision full` file runs under TFLM's own interpreter
within the arena its metadata states, gives LiteRT's reference-kernel results, and ships as C++ sources; a
third-party scorer whose graph needs an operator TFLM lacks is told which."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import blocks.scorers.patchcore_module as patchcore_module
from framework.data import load_dataset
from framework.errors import VadblocksError
from framework.portable import micro
from framework.portable.impulse import ExportedModel
from tests.helpers import MEAN_SCORER, invoke, write_plugin_dist

INT8 = "model_quantized_int8_io.tflite"
SCORERS = {"gmm": (), "patchcore": ("--sampling-ratio", "0.02")}  # a small bank: PatchCore as an MCU would hold it


@pytest.fixture(scope="module")
def full_models(small_data, tmp_path_factory) -> dict[str, Path]:
    """GMM and PatchCore of the demo brick, every layer int8 (`--int8-precision full`); PatchCore's bank is scored
    in more chunks than TFLM concatenates at once (its 10 inputs), as a large bank would be."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(patchcore_module, "BANK_CHUNK", 16)
        for scorer, extra in SCORERS.items():
            d = tmp_path_factory.mktemp("micro") / scorer
            invoke(
                "train", "--data-directory", small_data["edge-impulse"], "--out-directory", d, "--quiet",
                "--scoring-function", scorer, *extra, "--int8-precision", "full", "--export", "tflite-int8",
            )  # fmt: skip
            out[scorer] = d
    bank = np.load(out["patchcore"] / "scorer_state.npz")["bank"]
    assert len(bank) > patchcore_module.MAX_CONCAT * 16
    return out


@pytest.mark.parametrize("scorer", SCORERS)
def test_full_int8_files_run_under_tflm_within_the_arena_the_metadata_states(full_models, scorer):
    d = full_models[scorer]
    entry = json.loads((d / "anomaly_metadata.json").read_text())["exports"]["tflite-int8"]
    assert entry["precision"] == "full" and entry["tflm"]["runs"] is True
    arena = entry["tflm"]["arenaBytes"]
    assert arena == entry["tflm"]["headBytes"] + entry["tflm"]["tailBytes"] > 0
    data = (d / INT8).read_bytes()
    assert "SELECT" not in micro.operators(data)
    interpreter = micro.load(data, INT8, arena)  # the stated arena is enough ...
    inp = interpreter.get_input_details(0)
    assert inp["dtype"] == np.int8
    interpreter.set_input(np.zeros(inp["shape"], np.int8), 0)
    interpreter.invoke()
    with pytest.raises(VadblocksError, match="does not fit a TFLM arena"):
        micro.load(data, INT8, arena - 16)  # ... and it is what TFLM needs, not a margin


@pytest.mark.parametrize("scorer", SCORERS)
def test_tflm_gives_litert_reference_kernel_results(full_models, small_data, scorer):
    """TFLM runs the reference kernels: LiteRT's reference resolver on the same file agrees within 1e-3."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    d = full_models[scorer]
    images = load_dataset(small_data["edge-impulse"]).test.images[:6]
    grids, scores = ExportedModel.from_directory(d, "tflm").predict(images)
    lite = Interpreter(model_path=str(d / INT8), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    lite.allocate_tensors()
    inp, outs = lite.get_input_details()[0], lite.get_output_details()
    scale, zero = inp["quantization"]
    for image, grid, score in zip(images, grids, scores):
        lite.set_tensor(inp["index"], np.clip(np.round(image[None] / scale) + zero, -128, 127).astype(np.int8))
        lite.invoke()
        by_rank = {len(o["shape"]): lite.get_tensor(o["index"]) for o in outs}
        np.testing.assert_allclose(grid, by_rank[3][0], rtol=1e-3, atol=1e-3 * np.abs(by_rank[3]).max())
        np.testing.assert_allclose(score, by_rank[1][0], rtol=1e-3)
    # the CLI's `--runtime tflm` is the same run
    test = json.loads(invoke("test", "--model-directory", d, "--data-directory", small_data["edge-impulse"],
                             "--runtime", "tflm", "--json").output)  # fmt: skip
    assert test["image_auroc"] is not None and test["n_images"] == 16


GATHER_SCORER = (
    MEAN_SCORER.replace(
        "        return grid, grid.flatten(1).amax(1)",
        "        flat = grid.flatten(1)\n        return grid, flat.gather(1, flat.argmax(1, keepdim=True))[:, 0]",
    )
    .replace('name = "meandist"', 'name = "gatherdist"')
    .replace("meandist-scale", "gatherdist-scale")
)


def test_a_scorer_tflm_cannot_run_is_told_which_operator(small_data, tmp_path, monkeypatch, fresh_plugins):
    assert GATHER_SCORER != MEAN_SCORER
    monkeypatch.syspath_prepend(str(write_plugin_dist(tmp_path / "s", "vad-gather", "vad_gather", GATHER_SCORER)))
    out = tmp_path / "m"
    invoke(
        "train", "--data-directory", small_data["edge-impulse"], "--out-directory", out, "--quiet",
        "--scoring-function", "gatherdist", "--int8-precision", "full", "--export", "tflite-int8",
    )  # fmt: skip
    tflm = json.loads((out / "anomaly_metadata.json").read_text())["exports"]["tflite-int8"]["tflm"]
    assert tflm["runs"] is False and "does not register the operator(s)" in tflm["reason"]
    missing = re.search(r"operator\(s\) ([A-Z_0-9, ]+) that", tflm["reason"]).group(1).split(", ")
    assert set(missing) <= set(micro.operators((out / INT8).read_bytes()))
    image = sorted((small_data["folder"] / "test" / "good").iterdir())[0]
    refused = invoke("predict", "--model-directory", out, "--runtime", "tflm", image, ok=False)
    assert "TensorFlow Lite Micro cannot run" in refused.output and missing[0] in refused.output
    assert "Traceback" not in refused.output


def test_cpp_sources_hold_the_file_byte_for_byte_and_compile(full_models, tmp_path):
    d = full_models["gmm"]
    out = tmp_path / "cpp"
    said = invoke("export", "--model-directory", d, "--out", out).output
    meta = json.loads((d / "anomaly_metadata.json").read_text())
    header, main = (out / "model_data.h").read_text(), (out / "main.cc").read_text()
    data = (d / INT8).read_bytes()
    arena = meta["exports"]["tflite-int8"]["tflm"]["arenaBytes"]
    assert f"kTensorArenaSize = {arena};" in header and f"{arena:,} bytes (RAM)" in said
    assert f"kModelDataLength = {len(data)};" in header
    assert f"kGridHeight = {meta['gridSize'][0]};" in header and "kThreshold = " in header
    ops = micro.operators(data)
    assert f"MicroMutableOpResolver<{len(ops)}>" in main and main.count("  resolver.Add") == len(ops)
    assert "resolver.AddConv2D();" in main and "resolver.AddFullyConnected();" in main
    cxx = shutil.which("g++") or shutil.which("c++")
    assert cxx, "no C++ compiler: scripts/provision_system.sh installs g++"
    (tmp_path / "dump.cc").write_text(
        '#include <cstdio>\n#include "model_data.h"\n'
        "int main() { std::fwrite(vadblocks_model::kModelData, 1, vadblocks_model::kModelDataLength, stdout);"
        " return reinterpret_cast<unsigned long>(vadblocks_model::kModelData) % 16; }\n"
    )
    exe = tmp_path / "dump"
    subprocess.run(
        [cxx, "-std=c++17", "-O0", "-Wall", "-Werror", "-I", str(out), str(out / "model_data.cc"),
         str(tmp_path / "dump.cc"), "-o", str(exe)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    run = subprocess.run([str(exe)], capture_output=True, timeout=60)
    assert run.returncode == 0  # the array is 16-byte aligned
    assert run.stdout == data  # byte for byte

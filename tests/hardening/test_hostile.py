"""Hostile inputs and faults: checked model directories, fast refusals, signals, full disks, races.

Every failure must be one clear message, a non-zero exit, no traceback and no partial output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from framework.errors import VadblocksError
from framework.portable.impulse import ExportedModel
from framework.portable.modelfiles import check_model_dir, integrity, npz_layout
from framework.serve.eim import write_eim
from tests.helpers import EimProcess, invoke

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}


def cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process (signal handlers and all)."""
    return subprocess.run(
        [sys.executable, "-m", "framework.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env or ENV,
    )


@pytest.fixture(scope="module")
def model_dir(exported_model) -> Path:
    return exported_model


def rewrite_metadata(model: Path, **changes) -> None:
    meta = json.loads((model / "anomaly_metadata.json").read_text())
    meta.update(changes)
    (model / "anomaly_metadata.json").write_text(json.dumps(meta))


def reseal(model: Path, arrays: bool = False) -> None:
    """Record the current files' sizes and checksums (and with ``arrays`` their array layouts), as a
    consistent (if wrong) directory would."""
    names = [p.name for p in model.iterdir() if p.name != "anomaly_metadata.json"]
    changes = {"integrity": integrity(model, names)}
    if arrays:
        changes["arrays"] = {n: npz_layout(model / n) for n in ("scorer_state.npz", "backbone.npz")}
    rewrite_metadata(model, **changes)


def truncate(model: Path, name: str) -> None:
    data = (model / name).read_bytes()
    (model / name).write_bytes(data[: len(data) // 3])


def flip(model: Path, name: str) -> None:
    data = bytearray((model / name).read_bytes())
    data[len(data) // 2] ^= 0x5A
    (model / name).write_bytes(bytes(data))


def foreign_scorer_state(model: Path, relabel: bool) -> None:
    """A well-formed scorer_state.npz whose bank has the wrong number of channels for the backbone
    (with ``relabel`` the metadata's array layout is rewritten to match it)."""
    with np.load(model / "scorer_state.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["bank"] = arrays["bank"][:, :20].copy()
    np.savez(model / "scorer_state.npz", **arrays)
    reseal(model, arrays=relabel)


def foreign_tflite(model: Path, tmp: Path, small_data) -> None:
    other = tmp / "other"
    invoke(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        other,
        "--quiet",
        "--scoring-function",
        "gmm",
        "--export",
        "tflite",
    )
    shutil.copy(other / "model.tflite", model / "model.tflite")
    reseal(model)


ALL = ("torch", "tflite", "onnx")
CORRUPTIONS = {  # how, the file the message names, what it says, the runtimes that must refuse
    "truncated scorer state": (lambda m, t, d: truncate(m, "scorer_state.npz"), "scorer_state.npz", "truncated"),
    "flipped backbone byte": (lambda m, t, d: flip(m, "backbone.npz"), "backbone.npz", "SHA-256"),
    "missing onnx": (lambda m, t, d: (m / "model.onnx").unlink(), "model.onnx", "missing"),  # recorded: refused
    "flipped tflite byte": (lambda m, t, d: flip(m, "model.tflite"), "model.tflite", "SHA-256"),
    "newer format": (
        lambda m, t, d: rewrite_metadata(m, formatVersion=99),
        "anomaly_metadata.json",
        "upgrade vadblocks",
    ),
    "older format": (lambda m, t, d: rewrite_metadata(m, formatVersion=1), "anomaly_metadata.json", "older vadblocks"),
    "metadata not JSON": (
        lambda m, t, d: (m / "anomaly_metadata.json").write_text("{nope"),
        "anomaly_metadata.json",
        "corrupt",
    ),
    "no input shape": (lambda m, t, d: rewrite_metadata(m, inputShape=None), "anomaly_metadata.json", "inputShape"),
    "no integrity": (lambda m, t, d: rewrite_metadata(m, integrity=None), "anomaly_metadata.json", "integrity"),
    "bank of the wrong width": (
        lambda m, t, d: foreign_scorer_state(m, False),
        "scorer_state.npz",
        "shapes and dtypes the metadata records",
    ),
    "bank and metadata both rewritten": (
        lambda m, t, d: foreign_scorer_state(m, True),
        "model",
        "do not fit together",
        ("torch",),
    ),
    "another model's tflite": (lambda m, t, d: foreign_tflite(m, t, d), "model.tflite", "does not belong", ("tflite",)),
    "missing metadata": (
        lambda m, t, d: (m / "anomaly_metadata.json").unlink(),
        "anomaly_metadata.json",
        "not a vadblocks model directory",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_model_directories_are_refused_clearly(case, model_dir, small_data, tmp_path):
    corrupt, names, text, *only = CORRUPTIONS[case]
    model = tmp_path / "m"
    shutil.copytree(model_dir, model)
    corrupt(model, tmp_path, small_data)
    image = sorted((small_data["folder"] / "test").glob("*/*.png"))[0]
    runtimes = only[0] if only else ALL
    for runtime in runtimes:
        result = invoke("predict", "--model-directory", model, image, "--runtime", runtime, ok=False)
        assert result.exit_code == 2, (runtime, result.output)
        assert names in result.output and text in result.output, (runtime, result.output)
    out = invoke(
        "test", "--model-directory", model, "--data-directory", small_data["folder"], "--runtime", runtimes[0], ok=False
    ).output
    assert text in out
    if "tflite" in runtimes:  # the packer and the server of model.tflite refuse it too
        with pytest.raises(VadblocksError, match=text):
            write_eim(model, tmp_path / "x.eim")
        with pytest.raises(VadblocksError, match=text):
            ExportedModel.from_directory(str(model), "tflite")
        assert not (tmp_path / "x.eim").exists()


def test_the_eim_checks_the_model_it_carries(model_dir, tmp_path):
    eim = write_eim(model_dir, tmp_path / "m.eim")
    data = bytearray(eim.read_bytes())
    start = data.find(b"TFL3")  # the stored (uncompressed) model.tflite inside the zip
    assert start > 0
    data[start + 4000] ^= 0xFF
    bad = tmp_path / "bad.eim"
    bad.write_bytes(bytes(data))
    bad.chmod(0o755)
    runner = EimProcess(bad)  # it still opens its socket: an SDK waiting for it must learn why it cannot run
    answer = runner.send(json.dumps({"id": 7, "hello": 1}).encode())
    assert answer["id"] == 7 and answer["success"] is False
    assert "cannot open the model packed in" in answer["error"]
    assert "CRC-32" in answer["error"] or "SHA-256" in answer["error"]  # the zip's own check comes first
    assert runner.close() != 0
    stderr = runner.proc.stderr.read().decode()
    assert "Error: cannot open the model packed in" in stderr and "Traceback" not in stderr
    assert not Path(runner.path).exists()


def test_a_good_model_directory_passes(model_dir):
    meta = check_model_dir(model_dir)
    assert set(meta["integrity"]["files"]) == {"backbone.npz", "scorer_state.npz", "model.onnx", "model.tflite"}


# --- fail fast --------------------------------------------------------------------------------------------------

REFUSE = """
import sys, time
t0 = time.perf_counter()
from framework.cli import cli
code = cli(sys.argv[1:], prog_name="vadblocks", standalone_mode=False)
print("RESULT", code, round(time.perf_counter() - t0, 3), "torch" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize("case", ["bad parameter", "unknown scorer", "missing data", "corrupt data"])
def test_refusals_come_before_torch_is_imported(case, small_data, tmp_path):
    data = small_data["edge-impulse"]
    extra: list[str] = []
    if case == "bad parameter":
        extra = ["--num-layers", "9"]
    elif case == "unknown scorer":
        extra = ["--scoring-function", "nope"]
    elif case == "missing data":
        data = tmp_path / "nothing"
    else:
        data = tmp_path / "bad"
        data.mkdir()
        (data / "X_split_train.npy").write_bytes(b"\x93NUMPY garbage")
        (data / "Y_split_train.npy").write_bytes(b"")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            REFUSE,
            "train",
            "--data-directory",
            str(data),
            "--out-directory",
            str(tmp_path / "out"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=ENV,
    )
    assert "Error:" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    _, code, seconds, torch_loaded = proc.stderr.strip().splitlines()[-1].split()
    assert code == "2" and torch_loaded == "False", proc.stderr
    assert float(seconds) < 3.0  # measured about 0.3 s (docs/contract.md); generous for a loaded CI machine
    assert not (tmp_path / "out").exists()


# --- faults during work -----------------------------------------------------------------------------------------


def wait_for(condition, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.stderr.read() if proc.stderr else ''}")
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".vadblocks") or "lock" in p.name)


@pytest.mark.parametrize("sig,existing", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGTERM, True)])
def test_a_signal_during_train_leaves_nothing(sig, existing, small_data, tmp_path):
    out = tmp_path / "out"
    if existing:  # a mounted volume: the directory exists and must stay empty
        out.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "framework.cli",
            "train",
            "--data-directory",
            str(small_data["edge-impulse"]),
            "--out-directory",
            str(out),
            "--quiet",
            "--export",
            "tflite",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    where = out if existing else tmp_path
    # wait until it is writing: the temporary folder exists while the model files are written
    wait_for(lambda: any(p.name.startswith(".vadblocks-tmp-") for p in where.iterdir()), 120, proc)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert f"interrupted by {signal.Signals(sig).name}" in stderr and "Traceback" not in stderr
    assert leftovers(tmp_path) == []
    assert (not out.exists()) if not existing else list(out.iterdir()) == []


def test_two_trains_racing_for_one_out_directory(small_data, tmp_path):
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "framework.cli",
        "train",
        "--data-directory",
        str(small_data["edge-impulse"]),
        "--out-directory",
        str(out),
        "--quiet",
        "--export",
        "onnx",
    ]  # the export keeps the first one busy
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    wait_for(lambda: any("lock" in p.name for p in tmp_path.iterdir()), 60, first)
    second = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 2 and "another vadblocks process is writing" in second.stderr
    assert "Traceback" not in second.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "anomaly_metadata.json",
        "backbone.npz",
        "model.onnx",
        "scorer_state.npz",
    ]
    assert leftovers(tmp_path) == [] and leftovers(out) == []
    check_model_dir(out)


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB tmpfs (needs root and a machine that allows mounting; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("existing", [False, True])
def test_a_full_disk_while_writing_the_model(small_disk, existing, small_data):
    out = small_disk / "out"
    if existing:
        out.mkdir()
    proc = cli(
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--quiet",
        "--export",
        "none",
        "--num-layers",
        "2",
    )  # a 2 MB backbone: more than the 1 MiB disk holds
    assert proc.returncode == 2, proc.stderr
    assert "No space left on device" in proc.stderr and "nothing was written" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert leftovers(small_disk) == []
    assert (not out.exists()) if not existing else list(out.iterdir()) == []


def test_signals_inside_a_native_conversion_are_deferred_to_its_end(monkeypatch):
    """A signal that arrives while a converter runs is raised when the conversion ends, not inside it
    (a raise inside litert-torch's callbacks crashed the process under load)."""
    from framework import interrupts
    from framework.errors import Interrupted

    monkeypatch.setattr(interrupts, "_pending", [])
    old = signal.getsignal(signal.SIGTERM)
    interrupts.install()
    try:
        reached_end = False
        with pytest.raises(Interrupted):
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler has run by now: it only remembered the signal
                reached_end = True
        assert reached_end and interrupts.pending() == signal.SIGTERM
    finally:
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        signal.signal(signal.SIGTERM, old)

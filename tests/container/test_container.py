"""End-to-end container tests with a real Docker daemon (no mocks).

They skip, with the reason, only where no daemon answers; under CI (CI=true) a missing
daemon is a failure. Build arguments (base image, pip mirror) come from the file named by
VADBLOCKS_BUILD_ARGS_FILE, which .ci/run writes.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from framework.config import resolve
from framework.container import runner
from framework.data import load_dataset
from framework.errors import VadblocksError
from framework.train.pipeline import train
from tests.helpers import invoke

ROOT = Path(__file__).resolve().parents[2]
TAG = "vadblocks-test:latest"
MODEL_FILES = sorted(
    [
        "anomaly_metadata.json",
        "backbone.npz",
        "scorer_state.npz",
        "model.onnx",
        "model.tflite",
        "model_quantized_int8_io.tflite",
    ]
)
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def image():
    try:
        client = runner.docker_client()
    except VadblocksError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the container tests: {exc}")
        pytest.skip(f"no Docker daemon answers: {exc}")
    files = (Path(os.environ["VADBLOCKS_BUILD_ARGS_FILE"]),) if os.environ.get("VADBLOCKS_BUILD_ARGS_FILE") else ()
    logs: list[str] = []
    runner.build(ROOT, TAG, runner.read_build_args((), files), log=logs.append)
    assert any("Successfully tagged" in line for line in logs)
    return client


def run_block(data, out, log=None, **values):
    lines: list[str] = []
    code = runner.run(ROOT, data, out, values, tag=TAG, registry=None, log=lines.append)
    if log is not None:
        log.extend(lines)
    return code, "\n".join(lines)


@pytest.mark.parametrize("scorer", ["patchcore", "gmm"])
def test_container_output_matches_in_process(image, small_data, tmp_path, registry, scorer):
    out = tmp_path / "out"
    code, log = run_block(small_data["edge-impulse"], out, **{"scoring-function": scorer, "sampling-ratio": "0.2"})
    assert code == 0, log
    assert sorted(p.name for p in out.iterdir()) == MODEL_FILES
    meta = json.loads((out / "anomaly_metadata.json").read_text())
    assert set(meta["exports"]) == {"onnx", "tflite", "tflite-int8"}
    model = train(
        load_dataset(small_data["edge-impulse"]),
        resolve(registry, {"scoring-function": scorer, "sampling-ratio": 0.2}),
        progress=False,
    )
    assert meta["scorer"] == scorer and meta["gridSize"] == list(model.grid_shape)
    assert meta["parameters"] == model.metadata["parameters"]
    assert meta["inputShape"] == [96, 96, 3] and meta["imageInputScaling"] == "0..1"
    assert meta["nominalThresholdScore"] == pytest.approx(model.threshold, rel=1e-4)
    with np.load(out / "scorer_state.npz", allow_pickle=False) as z:
        ours, _ = model.scorer.get_state()
        for key, arr in ours.items():
            np.testing.assert_allclose(z[key], arr, rtol=1e-4, atol=1e-5)
    assert all(p.stat().st_uid == os.getuid() for p in out.iterdir())


def test_output_files_belong_to_the_calling_user(image, small_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    lines: list[str] = []
    code = runner.run(
        ROOT, small_data["edge-impulse"], out, {"scoring-function": "gmm"}, tag=TAG, user="4321:4321", log=lines.append
    )
    assert code == 0, "\n".join(lines)
    assert {p.stat().st_uid for p in out.iterdir()} == {4321}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"num-layers": "9"}, "--num-layers: '9' is out of range; expected an integer >= 1, <= 3"),
        ({"scoring-function": "magic"}, "--scoring-function: 'magic' is not valid; expected one of gmm, patchcore"),
    ],
)
def test_bad_parameters_fail_before_the_container_starts(image, small_data, tmp_path, registry, values, message):
    before = {c.id for c in image.containers.list(all=True)}
    with pytest.raises(VadblocksError) as in_container:
        runner.run(ROOT, small_data["edge-impulse"], tmp_path / "out", values, tag=TAG, registry=registry)
    with pytest.raises(VadblocksError) as in_process:
        resolve(registry, values)
    assert message in str(in_container.value) and str(in_container.value) == str(in_process.value)
    assert {c.id for c in image.containers.list(all=True)} == before
    assert not (tmp_path / "out").exists()
    cli = invoke(
        "run",
        ROOT,
        "--tag",
        TAG,
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        tmp_path / "o",
        *[w for k, v in values.items() for w in (f"--{k}", v)],
        ok=False,
    )
    assert f"Error: {message}" in cli.output


def test_bad_data_directory_fails_inside_the_container(image, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    x = np.random.default_rng(0).random((4, 32 * 32 * 3), dtype=np.float32)
    x[2, 5] = np.nan
    np.save(data / "X_split_train.npy", x)
    np.save(data / "Y_split_train.npy", np.full((4, 1), 2))
    out = tmp_path / "out"
    code, log = run_block(data, out)
    assert code == 2
    assert "Error: /data/X_split_train.npy contains NaN or infinite values in 1 sample(s)" in log
    assert out.is_dir() and list(out.iterdir()) == []


def test_runner_errors(image, tmp_path, small_data):
    with pytest.raises(VadblocksError, match="Dockerfile is missing"):
        runner.run(tmp_path, small_data["edge-impulse"], tmp_path / "o")
    block = tmp_path / "block"
    block.mkdir()
    (block / "Dockerfile").write_text("FROM scratch\n")
    (block / "parameters.json").write_text(json.dumps({"info": {"name": "never built xyz"}, "parameters": []}))
    with pytest.raises(VadblocksError, match=r"image never-built-xyz:latest does not exist; build it with"):
        runner.run(block, small_data["edge-impulse"], tmp_path / "o")


def test_cli_run_streams_logs_and_returns_the_exit_code(image, small_data, tmp_path):
    result = invoke(
        "run",
        ROOT,
        "--tag",
        TAG,
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        tmp_path / "o",
        "--scoring-function",
        "gmm",
        "--capacity",
        "low",
    )
    assert "docker run --network none" in result.output and "Trained gmm on mobilenetv2" in result.output
    assert (tmp_path / "o" / "anomaly_metadata.json").exists()
    assert stat.S_ISDIR((tmp_path / "o").stat().st_mode)


PROBE = r"""
import json, os
res = {}
for where in ("/etc/probe", "/usr/probe", "/data/probe", "/out/probe", "/tmp/probe"):
    try:
        with open(where, "w") as fh:
            fh.write("x")
        res[where] = "written"
    except OSError as exc:
        res[where] = exc.errno
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
res["CapEff"] = status["CapEff"].strip()
res["NoNewPrivs"] = status["NoNewPrivs"].strip()
res["interfaces"] = sorted(os.listdir("/sys/class/net"))
res["uid"] = os.getuid()
print(json.dumps(res))
"""


def test_block_containers_run_locked_down(image, small_data, tmp_path):
    """The options every `vadblocks run` uses: read-only root, tmpfs /tmp, no capabilities, no network."""
    out = tmp_path / "out"
    out.mkdir()
    opts = runner.container_options(Path(small_data["edge-impulse"]).resolve(), out, memory="1g", cpus=1.0)
    container = image.containers.create(TAG, entrypoint=["python3", "-c", PROBE], **opts)
    try:
        container.start()
        assert container.wait(timeout=120)["StatusCode"] == 0, container.logs().decode()
        res = json.loads(container.logs(stdout=True, stderr=False).decode().strip().splitlines()[-1])
        container.reload()
        host = container.attrs["HostConfig"]
    finally:
        container.remove(force=True)
    assert res["/etc/probe"] == 30 and res["/usr/probe"] == 30  # EROFS: the root filesystem is read-only
    assert res["/data/probe"] == 30  # the data is mounted read-only
    assert res["/out/probe"] == "written" and res["/tmp/probe"] == "written"
    assert res["CapEff"] == "0000000000000000" and res["NoNewPrivs"] == "1"
    assert res["interfaces"] == ["lo"]  # --network none: nothing but loopback to reach
    assert res["uid"] == os.getuid()
    assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"] and host["PidsLimit"] == runner.SECURITY["pids_limit"]
    assert host["Memory"] == 1 << 30 and host["NanoCpus"] == 10**9
    assert sorted(p.name for p in out.iterdir()) == ["probe"]


def test_sigterm_to_vadblocks_run_stops_and_removes_the_container(image, small_data, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = {c.id for c in image.containers.list(all=True, filters={"label": "vadblocks.run"})}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "framework.cli",
            "run",
            str(ROOT),
            "--tag",
            TAG,
            "--data-directory",
            str(small_data["edge-impulse"]),
            "--out-directory",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    deadline = time.time() + 300
    # the block inside is writing its model: the temporary folder exists in the (mounted) out directory
    while not (out.is_dir() and any(p.name.startswith(".vadblocks-tmp-") for p in out.iterdir())):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    after = {c.id for c in image.containers.list(all=True, filters={"label": "vadblocks.run"})}
    assert after == before  # stopped and removed
    assert list(out.iterdir()) == []  # the block removed its partial output (or the runner did)


def test_block_container_is_a_tune_worker_sharing_a_study_with_the_host(image, small_data, tmp_path):
    """`vadblocks run --tune`: the block's image runs trials of the study whose SQLite file lies in its out
    directory, while a worker on the host runs trials of the same study (the file shared through the mount)."""
    import optuna

    out = tmp_path / "out"
    out.mkdir()
    quick = [
        "--runtime",
        "onnx",
        "--backbone",
        "mobilenetv2",
        "--export",
        "onnx",
        "--study",
        "shared",
        "--max-latency-ms",
        "100",
        "--max-model-kb",
        "1000000",
    ]  # no trial pruned
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    host = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "framework.cli",
            "tune",
            "--data-directory",
            str(small_data["edge-impulse"]),
            "--out-directory",
            str(tmp_path / "host"),
            "--quiet",
            "--n-trials",
            "5",
            "--storage",
            f"sqlite:///{out / 'tune.db'}",
            *quick,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    result = invoke(
        "run",
        ROOT,
        "--tag",
        TAG,
        "--tune",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        out,
        "--n-trials",
        "5",
        *quick,
    )
    host_out, _ = host.communicate(timeout=600)
    assert host.returncode == 0, host_out[-3000:]
    assert "--entrypoint vadblocks" in result.output and "--network none" in result.output
    trials = optuna.load_study(study_name="shared", storage=f"sqlite:///{out / 'tune.db'}").get_trials()
    assert len({t.number for t in trials}) == len(trials) >= 5
    assert all(t.state.name == "COMPLETE" for t in trials)
    workers = {t.user_attrs["worker"].rsplit(":", 1)[0] for t in trials}
    assert len(workers) == 2  # the container's hostname and this machine's
    meta = json.loads((out / "model" / "anomaly_metadata.json").read_text())
    assert meta["tuning"]["study"] == "shared" and (out / "leaderboard.json").is_file()
    assert all(p.stat().st_uid == os.getuid() for p in out.iterdir())

"""vadblocks models under Edge Impulse's own Linux SDKs: the .eim protocol and the runner's HTTP API.

The Python SDK runs in a virtual environment of its own without vadblocks or torch (installed by
`make sdk`, scripts/install_sdks.sh), so these tests prove a .eim needs only numpy and its runtime.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framework.errors import VadblocksError
from framework.serve.eim import write_eim
from tests.helpers import EimProcess, invoke, packed_pixels

SDK_DIR = Path(os.environ.get("VADBLOCKS_SDK_DIR", Path(__file__).resolve().parents[2] / ".sdk"))
SDK_PYTHON = SDK_DIR / "python" / "bin" / "python"
NODE_MODULES = SDK_DIR / "node" / "node_modules"
CLIENTS = Path(__file__).with_name("sdk")
LOW = -1e9  # a threshold below every cell: the SDK then reports the whole grid


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    if not SDK_PYTHON.exists():
        pytest.skip(f"Edge Impulse's Python SDK is not installed in {SDK_DIR} (run `make sdk`)")
    return SDK_PYTHON


@pytest.fixture(scope="module")
def model_dir(exported_model) -> Path:
    return exported_model


@pytest.fixture(scope="module")
def images(small_data) -> list[Path]:
    root = small_data["folder"] / "test"
    return sorted(root.glob("good/*.png"))[:3] + sorted(p for p in root.glob("*/*.png") if p.parent.name != "good")[:3]


def predict(model_dir: Path, paths: list[Path], runtime: str) -> list[dict]:
    out = invoke("predict", "--model-directory", model_dir, *paths, "--json", "--runtime", runtime).output
    return [json.loads(line) for line in out.splitlines()]


def full_grid(result: dict, cell: int, shape: tuple[int, int]) -> np.ndarray:
    """The grid rebuilt from the reported cells (all of them, at a threshold below every cell)."""
    grid = np.full(shape, np.nan)
    for c in result["visual_anomaly_grid"]:
        grid[c["y"] // cell, c["x"] // cell] = c["value"]
    assert not np.isnan(grid).any(), "some cells were not reported"
    return grid


def check_against_predict(results_before: list, results_after: list, reference: list[dict], threshold: float) -> None:
    for before, after, ref in zip(results_before, results_after, reference):
        grid = np.asarray(ref["grid"])
        r = before["result"]
        assert abs(r["anomaly"] - ref["score"]) <= 1e-3
        assert abs(r["visual_anomaly_max"] - grid.max()) <= 1e-3
        assert abs(r["visual_anomaly_mean"] - grid.mean()) <= 1e-3
        above = {(c["y"] // 8, c["x"] // 8) for c in r["visual_anomaly_grid"]}
        assert above == {tuple(rc) for rc in np.argwhere(grid > threshold)}
        assert all(c["width"] == 8 and c["height"] == 8 and c["label"] == "anomaly" for c in r["visual_anomaly_grid"])
        np.testing.assert_allclose(full_grid(after["result"], 8, grid.shape), grid, atol=1e-3)


def run_python_sdk(sdk_python: Path, eim: Path, mode: str, paths: list[Path], *extra: str) -> dict:
    proc = subprocess.run(
        [str(sdk_python), str(CLIENTS / "python_client.py"), str(eim), mode, str(LOW), *map(str, paths), *extra],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("mode", ["shm", "socket"])
def test_python_sdk_classifies_like_predict(sdk_python, model_dir, images, tmp_path, mode):
    eim = write_eim(model_dir, tmp_path / "model.eim", "tflite", interpreter=str(sdk_python))
    out = run_python_sdk(sdk_python, eim, mode, images)
    params = out["hello"]["model_parameters"]
    threshold = json.loads((model_dir / "anomaly_metadata.json").read_text())["nominalThresholdScore"]
    assert out["shm"] is (mode == "shm")
    assert (params["image_input_width"], params["image_input_height"], params["image_channel_count"]) == (96, 96, 3)
    assert params["has_anomaly"] == 4 and params["sensor"] == 3 and params["input_features_count"] == 96 * 96
    assert params["thresholds"][0]["min_anomaly_score"] == pytest.approx(threshold)
    check_against_predict(out["before"], out["after"], predict(model_dir, images, "tflite"), threshold)


def test_python_sdk_runs_the_onnx_file(sdk_python, model_dir, images, tmp_path):
    eim = write_eim(model_dir, tmp_path / "onnx.eim", "onnx", interpreter=str(sdk_python))
    out = run_python_sdk(sdk_python, eim, "socket", images[-2:])
    threshold = out["hello"]["model_parameters"]["thresholds"][0]["min_anomaly_score"]
    check_against_predict(out["before"], out["after"], predict(model_dir, images[-2:], "onnx"), threshold)


def test_sdk_venv_has_neither_vadblocks_nor_torch(sdk_python):
    code = "import importlib.util as u; print([m for m in ('framework', 'torch', 'vadblocks') if u.find_spec(m)])"
    proc = subprocess.run([str(sdk_python), "-c", code], capture_output=True, text=True, cwd="/", timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


@pytest.mark.parametrize("shm", ["always", "never"])
def test_node_sdk_classifies_like_predict(sdk_python, model_dir, images, tmp_path, shm):
    if not (NODE_MODULES / "edge-impulse-linux").is_dir():
        pytest.skip(f"Edge Impulse's Node SDK is not installed in {SDK_DIR} (run `make sdk`)")
    eim = write_eim(model_dir, tmp_path / "model.eim", "tflite", interpreter=str(sdk_python))
    features = tmp_path / "features.json"
    features.write_text(json.dumps([packed_pixels(p) for p in images]))
    proc = subprocess.run(
        ["node", str(CLIENTS / "node_client.js"), str(eim), shm, str(LOW), str(features)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["shm"] is (shm == "always")
    threshold = out["model"]["modelParameters"]["thresholds"][0]["min_anomaly_score"]
    assert out["model"]["modelParameters"]["sensorType"] == "camera"
    check_against_predict(out["before"], out["after"], predict(model_dir, images, "tflite"), threshold)


# --- the raw protocol: bad requests never stop the runner ----------------------------------------------


def test_bad_requests_get_errors_and_the_runner_keeps_serving(sdk_python, model_dir, images, tmp_path):
    eim = write_eim(model_dir, tmp_path / "model.eim", "tflite", interpreter=str(sdk_python))
    runner = EimProcess(eim)
    try:
        hello = runner.send(b'{"hello": 1, "id": 1}')
        assert hello["success"] and hello["id"] == 1 and hello["features_shm"]["elements"] == 9216
        shm_name = hello["features_shm"]["name"].lstrip("/")
        assert os.path.exists(f"/dev/shm/{shm_name}")
        bad = [
            (b"this is not json\n", None, "request"),
            (b'{"id": 2, "classify": [1, 2, 3]}', 2, "expected 9216 features"),
            (b'{"id": 3, "classify": "abc"}', 3, "list of numbers"),
            (b'{"id": 4, "classify": ' + json.dumps([-5] * 9216).encode() + b"}", 4, "between 0 and 16777215"),
            (b'{"id": 5, "classify_shm": {"elements": 10}}', 5, "elements = 9216"),
            (b'{"id": 6, "set_threshold": {"id": 99, "min_anomaly_score": 1}}', 6, "threshold id 1"),
            (b'{"id": 7, "set_threshold": {"id": 1, "min_anomaly_score": "x"}}', 7, "finite number"),
            (b'{"id": 8, "frobnicate": 1}', 8, "unknown request"),
            (b'{"id": 9, "classify": [1, 2,]}', 9, "not valid JSON"),
            (b"[1, 2, 3]\n", None, "request"),
        ]
        for raw, rid, text in bad:
            answer = runner.send(raw)
            assert answer["success"] is False and answer["id"] == rid and text in answer["error"], (raw[:60], answer)
            assert "{" not in answer["error"] and "}" not in answer["error"]
        # one request in several writes, with braces and an escaped quote inside a string
        runner.sock.sendall(b'{"id": 10, "note": "a } and \\" {", ')
        time.sleep(0.2)
        assert runner.send(b'"hello": 1}')["id"] == 10
        good = runner.send(json.dumps({"id": 11, "classify": packed_pixels(images[-1])}).encode())
        assert good["success"] and good["id"] == 11 and "visual_anomaly_max" in good["result"]
    finally:
        code = runner.close()
    assert code == 0
    assert not os.path.exists(runner.path) and not os.path.exists(f"/dev/shm/{shm_name}")


# --- torch-free serving ------------------------------------------------------------------------------------


def test_predict_and_test_through_exported_files_import_no_torch(model_dir, small_data, images):
    code = f"""
import json, sys
from click.testing import CliRunner
from framework.cli import cli
for runtime in ("tflite", "onnx"):
    r = CliRunner().invoke(cli, ["predict", "--model-directory", {str(model_dir)!r}, {str(images[-1])!r},
                                 "--json", "--runtime", runtime])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["test", "--model-directory", {str(model_dir)!r}, "--data-directory",
                                 {str(small_data["folder"])!r}, "--json", "--runtime", runtime])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["pixel_auroc"] is not None
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "litert_torch", "torchvision", "sklearn"))
print(json.dumps(heavy))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


# --- the runner's HTTP API -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(model_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "framework.cli", "serve", "--model-directory", str(model_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    line = proc.stdout.readline()
    assert "http://127.0.0.1:" in line, line + proc.stderr.read()
    yield line.split("http://")[1].split()[0]
    proc.terminate()
    proc.wait(timeout=30)


def http(address: str, path: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(f"http://{address}{path}", data=body, method="POST" if body is not None else "GET")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_http_info_and_page(server):
    status, ctype, text = http(server, "/api/info")
    assert status == 200 and ctype == "application/json"
    info = json.loads(text)
    params = info["modelParameters"]
    assert params["has_visual_anomaly_detection"] is True and params["image_input_width"] == 96
    assert info["project"]["owner"] == "vadblocks"
    status, ctype, page = http(server, "/")
    assert status == 200 and ctype.startswith("text/html") and 'type="file"' in page


def test_http_image_upload_maps_cells_to_the_original_size(server, model_dir, images, tmp_path):
    big = tmp_path / "upload.png"
    Image.open(images[-1]).resize((192, 144), Image.Resampling.NEAREST).save(big)
    ref = predict(model_dir, [big], "tflite")[0]
    status, _, text = http(server, "/api/image", *multipart("file", big.name, big.read_bytes()))
    assert status == 200, text
    result = json.loads(text)["result"]
    assert result["resized"] == {"originalWidth": 192, "originalHeight": 144, "newWidth": 96, "newHeight": 96}
    assert result["resizeMode"] == "squash" and abs(result["anomaly"] - ref["score"]) <= 1e-3
    grid = np.asarray(ref["grid"])
    cells = {(round(c["y"] / 12), round(c["x"] / 16)): c for c in result["visual_anomaly_grid"]}
    threshold = json.loads((model_dir / "anomaly_metadata.json").read_text())["nominalThresholdScore"]
    assert set(cells) == {tuple(rc) for rc in np.argwhere(grid > threshold)}
    for (r, c), cell in cells.items():
        assert (cell["x"], cell["y"], cell["width"], cell["height"]) == (16 * c, 12 * r, 16, 12)
        assert abs(cell["value"] - grid[r, c]) <= 1e-3


def test_http_features_match_the_image_route(server, images):
    status, _, text = http(
        server, "/api/features", json.dumps({"features": packed_pixels(images[-1])}).encode(), "application/json"
    )
    assert status == 200, text
    by_features = json.loads(text)["result"]
    status, _, text = http(server, "/api/image", *multipart("file", "x.png", images[-1].read_bytes()))
    by_image = json.loads(text)["result"]
    assert by_features["anomaly"] == pytest.approx(by_image["anomaly"], abs=1e-5)
    assert len(by_features["visual_anomaly_grid"]) == len(by_image["visual_anomaly_grid"])


@pytest.mark.parametrize(
    "path,body,ctype,message",
    [
        (
            "/api/features",
            b"",
            "application/json",
            'Missing body on request. Did you set "Content-Type: application/json" ?',
        ),
        ("/api/features", b'{"x": 1}', "application/json", 'Missing "features" on body'),
        ("/api/features", b'{"features": 5}', "application/json", '"features" on body is not an array'),
        (
            "/api/features",
            b'{"features": [1, "a"]}',
            "application/json",
            'Not every element of the "features" array is a number',
        ),
        ("/api/features", b'{"features": [1, 2, 3]}', "application/json", "Expected 9216 features, but received 3"),
        ("/api/features", b'{"features": [1, 2, 3]}', "text/plain", 'Missing "features" on body'),
        (
            "/api/image",
            b'{"features": []}',
            "application/json",
            'No files posted, requiring a multipart/form-data body with 1 item "file"',
        ),
    ],
)
def test_http_bad_requests_get_the_runners_400_answers(server, path, body, ctype, message):
    assert http(server, path, body, ctype) == (400, "text/plain", message)


def test_http_bad_uploads(server):
    status, ctype, text = http(server, "/api/image", *multipart("image", "x.png", b"123"))
    assert (status, ctype, text) == (400, "text/plain", 'Missing "file" in the multipart/form-data')
    status, ctype, text = http(server, "/api/image", *multipart("file", "x.png", b"not an image"))
    assert status == 400 and "corrupt or not an image" in text
    png = io.BytesIO()
    Image.new("RGB", (10, 10)).save(png, format="PNG")
    status, _, text = http(server, "/api/image", *multipart("file", "x.png", png.getvalue()[:40]))
    assert status == 400 and "corrupt or not an image" in text
    assert http(server, "/api/nothing")[0] == 404
    assert http(server, "/api/info")[0] == 200  # still serving


# --- an .eim where the target has no numpy ----------------------------------------------------------------

BARE_CLIENT = """
import json, os, socket, subprocess, sys, time
eim, sock, features = sys.argv[1], "/tmp/runner.sock", json.load(open(sys.argv[2]))
runner = subprocess.Popen([eim, sock], stderr=subprocess.PIPE)
while not os.path.exists(sock):
    assert runner.poll() is None, runner.stderr.read()
    time.sleep(0.05)
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
def ask(msg):
    s.sendall(json.dumps(msg).encode())
    buf = b""
    while not buf.endswith(b"\\0"):
        buf += s.recv(1 << 16)
    return json.loads(buf[:-1])
try:
    import numpy
    has_numpy = True
except ImportError:
    has_numpy = False
out = {"numpy": has_numpy, "hello": ask({"id": 1, "hello": 1}), "classify": ask({"id": 2, "classify": features})}
runner.terminate()
runner.wait()
print(json.dumps(out))
"""


def bare_python(tmp_path: Path) -> Path:
    """A Python with the standard library only (a fresh virtual environment without pip)."""
    env = tmp_path / "bare"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import numpy"], capture_output=True).returncode != 0
    return python


def test_an_eim_without_numpy_tells_the_sdk_why(sdk_python, model_dir, tmp_path):
    """Where the runner cannot start, the SDK that waits for its socket gets the reason as its error."""
    eim = write_eim(model_dir, tmp_path / "model.eim", "tflite", interpreter=str(bare_python(tmp_path)))
    script = (
        "import sys\nfrom edge_impulse_linux.image import ImageImpulseRunner\n"
        "runner = ImageImpulseRunner(sys.argv[1])\n"
        "try:\n    runner.init()\nexcept Exception as exc:\n    print('SDK error:', exc)\nfinally:\n    runner.stop()\n"
    )
    proc = subprocess.run([str(sdk_python), "-c", script, str(eim)], capture_output=True, text=True, timeout=120)
    assert "SDK error: this .eim runs on Python 3 with numpy" in proc.stdout, proc.stdout + proc.stderr
    assert "No module named 'numpy'" in proc.stdout and "vadblocks eim --standalone" in proc.stdout


@pytest.fixture(scope="module")
def standalone_eim(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("standalone") / "model.eim"
    said = invoke("eim", "--model-directory", model_dir, "--out", out, "--standalone").output
    assert f"({out.stat().st_size / 1e6:.2f} MB, tflite)" in said and "needs nothing installed" in said
    return out


def test_standalone_eim_needs_no_python_packages(standalone_eim, model_dir, images, tmp_path):
    """hello and classify inside a container whose image has Python but neither numpy nor LiteRT."""
    from framework.container import runner

    try:
        client = runner.docker_client()
    except VadblocksError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the container tests: {exc}")
        pytest.skip(f"no Docker daemon answers: {exc}")
    args = (
        runner.read_build_args((), (Path(os.environ["VADBLOCKS_BUILD_ARGS_FILE"]),))
        if os.environ.get("VADBLOCKS_BUILD_ARGS_FILE")
        else {}
    )
    base = args.get("BASE_IMAGE", "vadblocks-base:bookworm-py311")
    share = tmp_path / "share"
    share.mkdir()
    shutil.copy(standalone_eim, share / "model.eim")
    (share / "client.py").write_text(BARE_CLIENT)
    (share / "features.json").write_text(json.dumps(packed_pixels(images[-1])))
    logs = client.containers.run(
        base, ["python3", "/share/client.py", "/share/model.eim", "/share/features.json"],
        volumes={str(share): {"bind": "/share", "mode": "ro"}}, network_disabled=True, remove=True,
    )  # fmt: skip
    out = json.loads(logs.decode().strip().splitlines()[-1])
    assert out["numpy"] is False and out["hello"]["success"] and out["classify"]["success"]
    [reference] = predict(model_dir, [images[-1]], "tflite")
    assert abs(out["classify"]["result"]["anomaly"] - reference["score"]) <= 1e-4


def test_python_sdk_classifies_through_the_standalone_eim(sdk_python, standalone_eim, model_dir, images):
    out = run_python_sdk(sdk_python, standalone_eim, "socket", images)
    threshold = json.loads((model_dir / "anomaly_metadata.json").read_text())["nominalThresholdScore"]
    check_against_predict(out["before"], out["after"], predict(model_dir, images, "tflite"), threshold)

"""Third-party scorers end to end: scaffold / example package -> fresh venv -> CLI -> block -> container.

Real pip (a fresh virtual environment that sees this vadblocks through a site .pth) and a real
Docker daemon for the block image (skipped with the reason where none answers; a failure in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from framework.container import runner
from framework.container.package import DOCKERFILE_HEAD
from framework.container.runner import read_build_args
from framework.container.scaffold import init_scorer
from framework.errors import VadblocksError
from tests.helpers import invoke

ROOT = Path(__file__).resolve().parents[2]
MODEL_FILES = ["anomaly_metadata.json", "backbone.npz", "scorer_state.npz"]  # in-process: VADBLOCKS_EXPORT=none
CONTAINER_FILES = sorted(MODEL_FILES + ["model.onnx", "model.tflite", "model_quantized_int8_io.tflite"])


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv next to vadblocks: the host's site-packages via .pth, plugins pip-installed into it."""
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    py = root / "bin" / "python"
    site_dir = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    host = sysconfig.get_paths()["purelib"]
    (Path(site_dir) / "vadblocks-host.pth").write_text(f"import site; site.addsitedir({host!r})\n")
    return py


def pip_install(py: Path, path: Path) -> None:
    proc = subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def cli(py: Path, *args, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, TQDM_DISABLE="1")
    proc = subprocess.run([py, "-m", "framework.cli", *map(str, args)], capture_output=True, text=True, env=env)
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def docker_client():
    try:
        return runner.docker_client()
    except VadblocksError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the container tests: {exc}")
        pytest.skip(f"no Docker daemon answers: {exc}")


def build_args() -> dict[str, str]:
    f = os.environ.get("VADBLOCKS_BUILD_ARGS_FILE")
    return read_build_args((), (Path(f),) if f else ())


def exercise(py: Path, scorer: str, dist: str, small_data, tmp: Path, extra_params: list[str], docker_client):
    """The whole path a third-party scorer must support, ending with its block's container."""
    listed = json.loads(cli(py, "plugins", "--json").stdout)
    assert {"name": scorer, "distribution": dist}.items() <= next(
        s for s in listed["scorers"] if s["name"] == scorer
    ).items()
    assert listed["failed"] == []
    params = json.loads(cli(py, "params").stdout)
    assert scorer in params["parameters"][0]["valid"]
    cli(
        py,
        "train",
        "--data-directory",
        small_data["edge-impulse"],
        "--out-directory",
        tmp / "m",
        "--quiet",
        "--scoring-function",
        scorer,
        *extra_params,
    )
    assert sorted(p.name for p in (tmp / "m").iterdir()) == MODEL_FILES
    result = json.loads(
        cli(py, "test", "--model-directory", tmp / "m", "--data-directory", small_data["folder"], "--json").stdout
    )
    assert result["n_images"] == 16 and result["image_auroc"] is not None
    img = sorted((small_data["folder"] / "test" / "scratch").glob("*.png"))[0]
    line = json.loads(cli(py, "predict", "--model-directory", tmp / "m", img, "--json").stdout)
    assert len(line["grid"]) == 12
    cli(py, "package", "--out", tmp / "block", "--scorer", scorer, "--scorer", "patchcore", "--backbone", "mobilenetv2")
    block = tmp / "block"
    assert {p.name for p in block.iterdir()} >= {
        "Dockerfile",
        "parameters.json",
        "requirements.txt",
        "README.md",
        ".dockerignore",
        "wheels",
    }
    wheels = sorted(p.name.split("-")[0] for p in (block / "wheels").glob("*.whl"))
    assert wheels == sorted(["vadblocks", dist.replace("-", "_")])
    doc = json.loads((block / "parameters.json").read_text())
    assert doc["parameters"][0]["valid"] == ["patchcore", scorer] and doc["parameters"][1]["valid"] == ["mobilenetv2"]
    assert any(p.get("showIf", {}).get("value") == scorer for p in doc["parameters"])
    tag = f"vadblocks-test-{scorer}:latest"
    runner.build(block, tag, build_args(), log=lambda line: None)
    lines: list[str] = []
    code = runner.run(
        block, small_data["edge-impulse"], tmp / "out", {"scoring-function": scorer}, tag=tag, log=lines.append
    )
    assert code == 0, "\n".join(lines)
    assert sorted(p.name for p in (tmp / "out").iterdir()) == CONTAINER_FILES
    ours = json.loads((tmp / "m" / "anomaly_metadata.json").read_text())
    theirs = json.loads((tmp / "out" / "anomaly_metadata.json").read_text())
    assert set(theirs) == set(ours) and theirs["scorer"] == scorer and theirs["gridSize"] == [12, 12]
    return block, tag


def test_scaffolded_scorer_end_to_end(venv, small_data, tmp_path, docker_client):
    pkg = init_scorer("acme", tmp_path)
    pip_install(venv, pkg)
    proc = subprocess.run(
        [venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=pkg, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout + proc.stderr
    block, tag = exercise(venv, "acme", "vadblocks-acme", small_data, tmp_path, ["--acme-scale", "2"], docker_client)
    # the block also builds and runs with the plain docker CLI
    subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "-t",
            tag,
            *[w for k, v in build_args().items() for w in ("--build-arg", f"{k}={v}")],
            str(block),
        ],
        check=True,
        capture_output=True,
    )
    out = tmp_path / "plain"
    out.mkdir()
    proc = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "-u",
            f"{os.getuid()}:{os.getgid()}",
            "-v",
            f"{small_data['edge-impulse']}:/data:ro",
            "-v",
            f"{out}:/out",
            tag,
            "--data-directory",
            "/data",
            "--out-directory",
            "/out",
            "--scoring-function",
            "acme",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == CONTAINER_FILES


def test_example_padim_package_end_to_end(venv, small_data, tmp_path, docker_client):
    pkg = ROOT / "examples" / "vadblocks-padim"
    pip_install(venv, pkg)
    proc = subprocess.run(
        [venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pkg / "tests")], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "5 passed" in proc.stdout, proc.stdout + proc.stderr
    exercise(venv, "padim", "vadblocks-padim", small_data, tmp_path, ["--padim-dim", "32"], docker_client)


def test_init_and_package_errors(tmp_path, registry):
    assert "must be lower-case" in invoke("init", "scorer", "Bad Name", "--dir", tmp_path, ok=False).output
    init_scorer("dup", tmp_path)
    assert "already exists" in invoke("init", "scorer", "dup", "--dir", tmp_path, ok=False).output
    out = invoke("package", "--out", tmp_path / "b", "--scorer", "nope", ok=False).output
    assert "unknown scorer 'nope'" in out and not (tmp_path / "b").exists()


def test_block_dockerfile_shares_the_flagship_image_layers():
    assert DOCKERFILE_HEAD in (ROOT / "Dockerfile").read_text()

"""Helpers the tests of several areas share: the CLI in-process, installed plugin distributions, a
third-party scorer's source, and a client of a running .eim."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from framework.cli import cli

ROOT = Path(__file__).resolve().parents[1]  # the repository


def invoke(*args: str, ok: bool = True):
    """Run the CLI in-process; assert the exit status (0 when ``ok``, else non-zero)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result


def write_plugin_dist(root: Path, dist: str, module: str, source: str, entry_name: str | None = None) -> Path:
    """Create a real installed distribution on ``root`` (dist-info + entry point + module)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[vadblocks]\n{entry_name or module} = {module}\n")
    (info / "RECORD").write_text("")
    return root


MEAN_SCORER = """
import numpy as np, torch
from torch import nn
from framework import hookimpl
from framework.params import Param
from framework.scorer import Scorer

class MeanModule(nn.Module):
    def __init__(self, mean):
        super().__init__()
        self.register_buffer("mean", mean)
    def forward(self, feats):
        grid = ((feats[0] - self.mean) ** 2).sum(1).sqrt()
        return grid, grid.flatten(1).amax(1)

class MeanDistance(Scorer):
    name = "meandist"
    description = "distance to the mean training feature of each cell"
    parameters = (Param("meandist-scale", "float", 1.0, "unused scale", min=0.0),)
    def grid_size(self, input_size):
        return input_size // 8
    def fit(self, features):
        self.mean = features[0].mean(0, keepdim=True)
        self._invalidate()
        return self
    def build_scoring_module(self):
        return MeanModule(self.mean)
    def get_state(self):
        return {"mean": self.mean.numpy()}, {}
    def set_state(self, arrays, config):
        self.mean = torch.from_numpy(arrays["mean"]); self._invalidate(); return self

@hookimpl
def register_scorers(register):
    register(MeanDistance)
"""


def packed_pixels(image: Path | np.ndarray) -> list[int]:
    """The SDKs' image features: one 0xRRGGBB number per pixel, of an image file or a 0..1 RGB array."""
    if isinstance(image, np.ndarray):
        px = (image * 255).round().astype(np.uint32)
    else:
        px = np.asarray(Image.open(image).convert("RGB"), dtype=np.uint32)
    return ((px[..., 0] << 16) | (px[..., 1] << 8) | px[..., 2]).reshape(-1).tolist()


class EimProcess:
    def __init__(self, eim: Path) -> None:
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "runner.sock")
        self.proc = subprocess.Popen([str(eim), self.path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not os.path.exists(self.path):
            assert self.proc.poll() is None and time.time() < deadline, self.proc.stderr.read().decode()
            time.sleep(0.05)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)

    def send(self, data: bytes) -> dict:
        self.sock.sendall(data)
        buf = b""
        while not buf.endswith(b"\0"):
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the runner closed the connection"
            buf += chunk
        return json.loads(buf[:-1])

    def close(self) -> int:
        self.sock.close()
        self.proc.send_signal(2)
        return self.proc.wait(timeout=30)

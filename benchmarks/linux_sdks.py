"""Serving figures: Edge Impulse's Python SDK driving a .eim against `vadblocks predict`'s own paths.

    python benchmarks/linux_sdks.py [--data demo/data/brick-ei] [--runs 200] [--json FILE]

Trains PatchCore on MobileNetV2 (defaults) with model.tflite and model.onnx, then measures, one thread:
- cold `vadblocks predict` of one image (a fresh process, as a user runs it): wall time and peak RSS,
  median of 5, per runtime (tflite, onnx);
- in-process LiteRT single-image latency (framework.serve.runtimes, median of --runs after 10 warm-up runs);
- the .eim through the Python SDK (`make sdk` installs it in .sdk/python, without vadblocks):
  median classify latency over the socket and through shared memory (features of one 96x96 image,
  --runs calls each, timed around `runner.classify`), the .eim file size, the runner's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SDK_PYTHON = Path(os.environ.get("VADBLOCKS_SDK_DIR", ROOT / ".sdk")) / "python" / "bin" / "python"
ENV = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")


def cold_predict(model_dir: Path, image: Path, runtime: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `vadblocks predict` process."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "%M",
            str(Path(sys.executable).with_name("vadblocks")),
            "predict",
            "--model-directory",
            str(model_dir),
            str(image),
            "--runtime",
            runtime,
            "--json",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return wall, int(proc.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="demo/data/brick-ei")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if not SDK_PYTHON.exists():
        raise SystemExit(f"{SDK_PYTHON} is missing: run `make sdk` first")
    import numpy as np
    from PIL import Image

    from framework.config import resolve
    from framework.data import load_dataset
    from framework.plugins import get_registry
    from framework.serve.eim import write_eim
    from framework.serve.runtimes import open_runtime
    from framework.train.export import save_with_exports
    from framework.train.pipeline import train

    reg = get_registry()
    ds = load_dataset(a.data)
    work = Path(tempfile.mkdtemp())
    model_dir = work / "model"
    save_with_exports(train(ds, resolve(reg, {}), registry=reg, progress=False), model_dir, ["onnx", "tflite"])
    image = work / "image.png"
    Image.fromarray((ds.train.images[0] * 255).round().astype(np.uint8)).save(image)
    res: dict = {"data": a.data, "runs": a.runs}

    for runtime in ("tflite", "onnx"):
        runs = [cold_predict(model_dir, image, runtime) for _ in range(5)]
        res[f"cold_predict_{runtime}"] = {
            "wall_s": statistics.median(r[0] for r in runs),
            "peak_rss_mb": statistics.median(r[1] for r in runs),
        }
    runner = open_runtime(model_dir, "tflite")
    x = ds.train.images[:1]
    times = []
    for i in range(a.runs + 10):
        t0 = time.perf_counter()
        runner.predict(x)
        if i >= 10:
            times.append((time.perf_counter() - t0) * 1000)
    res["in_process_litert_ms"] = statistics.median(times)

    eim = write_eim(model_dir, work / "model.eim", "tflite", interpreter=str(SDK_PYTHON))
    res["eim_bytes"] = eim.stat().st_size
    client = ROOT / "tests" / "sdk" / "python_client.py"
    for mode in ("socket", "shm"):
        proc = subprocess.run(
            [str(SDK_PYTHON), str(client), str(eim), mode, "1e9", str(image), "--repeat", str(a.runs)],
            capture_output=True,
            text=True,
            env=ENV,
        )
        if proc.returncode:
            raise SystemExit(proc.stderr[-2000:])
        out = json.loads(proc.stdout)
        res[f"sdk_{mode}_ms"] = out["median_ms"]
        res[f"runner_peak_rss_mb_{mode}"] = out["runner_peak_rss_kb"] / 1024

    print(f"data {a.data}; PatchCore + MobileNetV2, 96x96, one thread\n")
    print("| what | figure |\n|---|---|")
    for runtime in ("tflite", "onnx"):
        c = res[f"cold_predict_{runtime}"]
        print(
            f"| cold `vadblocks predict` of one image, {runtime} | {c['wall_s']:.2f} s, peak RSS "
            f"{c['peak_rss_mb']:.0f} MB |"
        )
    print(f"| in-process LiteRT, one image (median of {a.runs}) | {res['in_process_litert_ms']:.2f} ms |")
    print(f"| Python SDK classify over the socket (median of {a.runs}) | {res['sdk_socket_ms']:.2f} ms |")
    print(f"| Python SDK classify through shared memory (median of {a.runs}) | {res['sdk_shm_ms']:.2f} ms |")
    print(f"| .eim file (model.tflite + runner) | {res['eim_bytes'] / 1e6:.2f} MB |")
    print(
        f"| .eim runner peak RSS (socket / shm session) | {res['runner_peak_rss_mb_socket']:.0f} / "
        f"{res['runner_peak_rss_mb_shm']:.0f} MB |"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

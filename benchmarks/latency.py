"""Single-image latency, model file sizes and peak memory of each runtime (batch 1, one thread).

    python benchmarks/latency.py [--data demo/data/brick-ei] [--scorers patchcore,gmm] [--runs 100]

Trains each scorer on MobileNetV2 (defaults: PatchCore keeps a 10 % coreset), writes all model
files, then for each runtime (in-process torch, ONNX Runtime, LiteRT float, LiteRT int8) starts a
fresh process that loads the model and times `--runs` single-image predictions after 10 warm-up
runs; peak RSS is that process's maximum resident set size. The exported files run through
`framework.serve.runtimes`, as `vadblocks predict` runs them (their runtime and numpy; torch is not imported).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _measure import vm_hwm_mb

RUNTIMES = ("torch", "onnx", "tflite", "tflite-int8")


def measure(model_dir: str, runtime: str, runs: int) -> dict:
    """Run inside a fresh process: load the runtime, time single-image predictions."""
    import numpy as np

    if runtime == "torch":
        import torch

        torch.set_num_threads(1)
        from framework.train.pipeline import AnomalyModel

        model = AnomalyModel.load(model_dir)
        h, w, _ = model.input_shape
        img = np.random.default_rng(0).random((1, h, w, 3), dtype=np.float32)
        run = model.predict
    else:  # the product's own path (framework.serve.runtimes): the exported file under its runtime, no torch
        from framework.serve.runtimes import open_runtime

        runner = open_runtime(model_dir, runtime)
        h, w, _ = json.loads((Path(model_dir) / "anomaly_metadata.json").read_text())["inputShape"]
        img = np.random.default_rng(0).random((1, h, w, 3), dtype=np.float32)
        run = runner.predict
    times = []
    for i in range(runs + 10):
        t0 = time.perf_counter()
        run(img)
        if i >= 10:
            times.append(time.perf_counter() - t0)
    return {
        "median_ms": float(np.median(times) * 1000),
        "p90_ms": float(np.percentile(times, 90) * 1000),
        "peak_rss_mb": vm_hwm_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="demo/data/brick-ei")
    ap.add_argument("--scorers", default="patchcore,gmm")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--json", default=None)
    ap.add_argument("--_measure", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._measure:
        print(json.dumps(measure(a._measure[0], a._measure[1], a.runs)))
        return
    import torch

    from framework.config import resolve
    from framework.data import load_dataset
    from framework.plugins import get_registry
    from framework.train.export import save_with_exports
    from framework.train.pipeline import train

    torch.set_num_threads(1)
    reg = get_registry()
    ds = load_dataset(a.data)
    results = {}
    print(
        f"data: {a.data} ({len(ds.train)} training images, {ds.image_shape}); 1 thread; batch 1; "
        f"median of {a.runs} runs\n"
    )
    print("| scorer | runtime | median ms | p90 ms | file MB | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for scorer in a.scorers.split(","):
        out = Path(tempfile.mkdtemp()) / scorer
        model = train(ds, resolve(reg, {"scoring-function": scorer}), registry=reg, progress=False)
        save_with_exports(model, out, ["onnx", "tflite", "tflite-int8"], calibration=ds.train.images)
        meta = json.loads((out / "anomaly_metadata.json").read_text())
        sizes = {fmt: e["bytes"] / 1e6 for fmt, e in meta["exports"].items()}
        sizes["torch"] = sum((out / f).stat().st_size for f in ("backbone.npz", "scorer_state.npz")) / 1e6
        for runtime in RUNTIMES:
            proc = subprocess.run(
                [sys.executable, __file__, "--runs", str(a.runs), "--_measure", str(out), runtime],
                capture_output=True,
                text=True,
                env=dict(os.environ, OMP_NUM_THREADS="1"),
            )
            if proc.returncode:
                raise SystemExit(proc.stderr[-2000:])
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["file_mb"] = sizes[runtime]
            results.setdefault(scorer, {})[runtime] = r
            print(
                f"| {scorer} | {runtime} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['file_mb']:.2f} | "
                f"{r['peak_rss_mb']:.0f} |",
                flush=True,
            )
        results[scorer]["bank"] = meta["scorerState"]
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

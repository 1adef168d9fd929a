"""vadblocks PatchCore side by side with anomalib 2.7's PatchCore, same backbone, data and settings.

    python benchmarks/compare_anomalib.py --data-directory demo/data [--categories a,b] [--json F]
                                          [--repeats 3] [--threads 1] [--anomalib-python PY]

DIR is a folder-layout root with one sub-folder per category (train/good, test/*, ground_truth/*).
anomalib runs in its own virtual environment (benchmarks/.anomalib-venv, created on first use with
the same pinned torch/torchvision), driven directly by _anomalib_worker.py (no Lightning overhead).
Both sides use torchvision's MobileNetV2 with the same ImageNet weights, features.6 + features.13,
3x3 neighbourhood pooling, a 10 % coreset, 96x96 input, one torch thread; anomalib with its 9 neighbours'
reweighting, ours with the product's defaults (also the unpooled stride-8 level, flips, train-time
validation, the image score of the 3 most anomalous patches). Every
measurement runs in a fresh process (peak RSS = that process's VmHWM), the two sides alternate,
and the medians of --repeats runs are reported. Our side fits in-process on the training images alone (as
anomalib's fit time covers its training alone; the test split is scored afterwards), writes the model
directory with model.onnx and model.tflite and answers through the runtime `vadblocks predict` picks by default
(auto, one thread; the JSON names the runtime it picked); AUROC is measured through that same runtime.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _measure import serving_latency, vm_hwm_mb

HERE = Path(__file__).resolve().parent
VENV = HERE / ".anomalib-venv"
KEYS = ("image_auroc", "pixel_auroc", "fit_s", "latency_b1_ms", "latency_b32_ms", "peak_rss_mb", "memory_bank")
RATIOS = ("fit_s", "latency_b1_ms", "latency_b32_ms", "peak_rss_mb")


def anomalib_python(given: str | None) -> str:
    if given:
        return given
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "torch==2.14.1", "torchvision==0.29.1", "anomalib==2.7.0"],
            check=True,
        )
    return str(py)


def ours_fit(category: str, threads: int, model_dir: str) -> dict:
    """vadblocks training on one category (a fresh process); writes the model directory."""
    import torch

    torch.set_num_threads(threads)
    from framework.config import resolve
    from framework.data import Split, load_dataset
    from framework.plugins import get_registry
    from framework.train.export import save_with_exports
    from framework.train.pipeline import train

    ds = load_dataset(category, image_size=96)
    # anomalib's fit time covers its training alone, ours too: the test split is scored in ours_serve, not by
    # train() (which reports labelled figures when the data directory has a test split)
    ds = dataclasses.replace(ds, test=Split(ds.test.images[:0], ds.test.anomalous[:0], []))
    cfg = resolve(get_registry(), {})  # the product's defaults, validation and augmentation included
    t0 = time.perf_counter()
    model = train(ds, cfg, progress=False)
    fit_s = time.perf_counter() - t0
    fit_rss = vm_hwm_mb()  # before the export conversion (a packaging step, measured on its own)
    save_with_exports(model, model_dir, ("onnx", "tflite"), calibration=ds.train.images)
    return {
        "fit_s": fit_s,
        "peak_rss_mb": fit_rss,
        "export_peak_rss_mb": vm_hwm_mb(),
        "memory_bank": int(model.scorer.bank.shape[0]),
    }


def ours_serve(category: str, threads: int, model_dir: str) -> dict:
    """Answer as `vadblocks predict` does (a fresh process): the model directory, default runtime."""
    import numpy as np

    from framework.data import load_dataset
    from framework.metrics import evaluate
    from framework.serve.runtimes import open_runtime, resolve_runtime
    from framework.train.pipeline import AnomalyModel

    model = AnomalyModel.load(model_dir)
    runtime = open_runtime(model_dir, "auto", threads=threads, model=model)
    ds = load_dataset(category, image_size=96)
    result = evaluate(*runtime.predict(ds.test.images), ds.test, model.threshold)
    b1_ms, b32_ms = serving_latency(
        runtime.predict, ds.test.images[:1], np.resize(ds.test.images, (32,) + ds.test.images.shape[1:])
    )
    return {
        "image_auroc": result["image_auroc"],
        "pixel_auroc": result["pixel_auroc"],
        "latency_b1_ms": b1_ms,
        "latency_b32_ms": b32_ms,
        "peak_rss_mb": vm_hwm_mb(),
        "runtime": resolve_runtime(model_dir),
    }


def ours(category: str, threads: int, python: str, fixed_malloc: bool = True) -> dict:
    """Fit, then serve, each in a fresh process; peak RSS is the larger of the two."""
    model_dir = str(Path(tempfile.mkdtemp()) / "model")
    common = [python, __file__, "--threads", str(threads), "--_ours"]
    fit = run_json([*common, f"fit:{category}:{model_dir}"], fixed_malloc)
    serve = run_json([*common, f"serve:{category}:{model_dir}"], fixed_malloc)
    out = {
        **fit,
        **serve,
        "peak_rss_mb": max(fit["peak_rss_mb"], serve["peak_rss_mb"]),
        "fit_peak_rss_mb": fit["peak_rss_mb"],
        "serve_peak_rss_mb": serve["peak_rss_mb"],
    }
    return out


def shared_weights(path: Path) -> None:
    """MobileNetV2 ``features`` weights exactly as vadblocks loads them, for the anomalib side."""
    import torch
    import torchvision

    from framework.plugins import get_registry

    bb = get_registry().backbone("mobilenetv2").cls()
    module = bb.create_module(3)
    bb.load_pretrained(module)
    full = torchvision.models.mobilenet_v2(weights=None).features.state_dict()
    loaded = list(module.features.state_dict().values())
    torch.save({k: (loaded[i] if i < len(loaded) else v) for i, (k, v) in enumerate(full.items())}, path)


# anomalib runs with glibc's mmap threshold fixed at 1 MiB. With the default dynamic threshold,
# anomalib's k-center loop (a 29 MB temporary per iteration) intermittently grew past 23 GB RSS and
# was OOM-killed on the 2-core/24 GB machine; fixed, it is stable (and about 5x slower: ~55 it/s).
# Our side runs with it too unless --malloc anomalib (then as `vadblocks train` runs: glibc's defaults;
# the fixed threshold makes every 2 MB distance block a fresh mapping and our validation about 3x slower).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576"}


def run_json(cmd: list[str], fixed_malloc: bool = True) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", **(MALLOC_ENV if fixed_malloc else {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    """Medians of the numeric figures; other values (runtime name, None) from the first run."""
    return {
        k: (statistics.median(r[k] for r in runs) if isinstance(v, (int, float)) else v) for k, v in runs[0].items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-directory", default="demo/data")
    ap.add_argument("--categories", default="")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--anomalib-python", default=None)
    ap.add_argument(
        "--malloc",
        choices=("both", "anomalib"),
        default="both",
        help="which sides run with glibc's mmap threshold fixed at 1 MiB (anomalib needs it; see MALLOC_ENV)",
    )
    ap.add_argument("--_ours", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._ours:
        step, category, model_dir = a._ours.split(":", 2)
        print(json.dumps((ours_fit if step == "fit" else ours_serve)(category, a.threads, model_dir)))
        return
    root = Path(a.data_directory)
    cats = (
        a.categories.split(",")
        if a.categories
        else sorted(d.name for d in root.iterdir() if (d / "train" / "good").is_dir())
    )
    py = anomalib_python(a.anomalib_python)
    weights = Path(tempfile.mkdtemp()) / "mobilenetv2_features.pt"
    shared_weights(weights)
    out: dict = {"categories": {}, "threads": a.threads, "repeats": a.repeats}
    for cat in cats:
        runs: dict[str, list[dict]] = {"ours": [], "anomalib": []}
        for _ in range(a.repeats):  # alternate the two sides
            runs["ours"].append(ours(str(root / cat), a.threads, sys.executable, a.malloc == "both"))
            runs["anomalib"].append(
                run_json(
                    [
                        py,
                        str(HERE / "_anomalib_worker.py"),
                        "--category",
                        str(root / cat),
                        "--weights",
                        str(weights),
                        "--threads",
                        str(a.threads),
                    ]
                )
            )
        out["categories"][cat] = {side: median_of(r) for side, r in runs.items()}
        print(f"{cat}: {json.dumps(out['categories'][cat])}", file=sys.stderr, flush=True)
    for side in ("ours", "anomalib"):
        out[side] = {
            k: (
                statistics.mean(out["categories"][c][side][k] for c in cats)
                if out["categories"][cats[0]][side][k] is not None
                else None
            )
            for k in KEYS
        }
    out["ratios"] = {k: out["ours"][k] / out["anomalib"][k] for k in RATIOS}
    out["image_auroc_diff"] = out["ours"]["image_auroc"] - out["anomalib"]["image_auroc"]
    first = out["categories"][cats[0]]["ours"]
    print(
        f"threads: {a.threads}; medians of {a.repeats} alternating runs; 96x96; MobileNetV2 features.6+13; "
        "10 % coreset; anomalib 9 neighbours, ours the product's defaults; MALLOC_MMAP_THRESHOLD_=1048576 on "
        f"{'both sides' if a.malloc == 'both' else 'anomalib only'}; our answers through "
        f"the default runtime ({first['runtime']}); our export conversion peaked at "
        f"{max(out['categories'][c]['ours']['export_peak_rss_mb'] for c in cats):.0f} MB (not counted)\n"
    )
    print("| category | side | image AUROC | pixel AUROC | fit s | b1 ms | b32 ms/img | peak RSS MB | bank |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cat in cats + ["mean"]:
        for side in ("ours", "anomalib"):
            r = out[side] if cat == "mean" else out["categories"][cat][side]
            pix = "n/a" if r["pixel_auroc"] is None else f"{r['pixel_auroc']:.3f}"
            print(
                f"| {cat} | {side} | {r['image_auroc']:.3f} | {pix} | {r['fit_s']:.2f} | {r['latency_b1_ms']:.2f} | "
                f"{r['latency_b32_ms']:.2f} | {r['peak_rss_mb']:.0f} | {r['memory_bank']:.0f} |"
            )
    print(
        "\nratios ours/anomalib: "
        + ", ".join(f"{k} {v:.2f}" for k, v in out["ratios"].items())
        + f"; image AUROC diff {out['image_auroc_diff']:+.4f}"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""`vadblocks tune` on the development benchmark: the tuned model's real test accuracy against the default's.

    cd benchmarks && python tune_bench.py [--family dev,ufoai,openarena,nexuiz|all] [--materials brick,grass]
        [--n-trials 40] [--target high-power] [--out bench/tune] [--json F]

For each material: tunes on the 200 normal training images of the Edge Impulse directory with
``--accuracy synthetic`` (no labelled anomaly is used: trials are judged by synthetic anomalies on
held-out training images) within the target's budget (default high-power: float TFLite, 3 ms), then
scores the 50 + 50 labelled test images with the chosen model and with the default configuration, in
process (torch, one thread). Reports image AUROC of both, the chosen configuration, its measured
LiteRT latency, the study's trials per minute, and how well the synthetic estimates rank the trials:
the Spearman correlation between every trial's estimate and its real test AUROC (each trial also scores
the Edge Impulse directory's labelled test split, unused for the choice) and the best real test AUROC
any trial within the budget reached ("oracle").
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from hard_data import add_data_args, material_dirs
from scipy.stats import spearmanr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap)
    ap.add_argument("--n-trials", type=int, default=40)
    ap.add_argument("--target", default="high-power")
    ap.add_argument("--out", default="bench/tune")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from framework.config import resolve
    from framework.data import load_dataset
    from framework.metrics import evaluate
    from framework.plugins import get_registry
    from framework.train.pipeline import AnomalyModel, train
    from framework.tune.tuner import DataSource, TuneOptions, Tuner

    reg = get_registry()
    rows = {}
    print(
        "| material | default image AUROC | tuned image AUROC | change | tuned estimate | oracle | rank corr. | "
        "chosen configuration | LiteRT ms | trials/min |"
    )
    print("|---" * 10 + "|")
    for m, ei_dir, folder in material_dirs(args):
        ds, test = load_dataset(ei_dir), load_dataset(folder).test
        default = train(ds, resolve(reg, {}), registry=reg, progress=False)
        d = evaluate(*default.predict(test.images), test, default.threshold)
        opts = TuneOptions(
            n_trials=args.n_trials, target=args.target, accuracy="synthetic", export=("tflite",), progress=False
        )
        shutil.rmtree(Path(args.out) / m, ignore_errors=True)  # a fresh study (an existing one would resume)
        t0 = time.perf_counter()
        result = Tuner(DataSource(ei_dir), Path(args.out) / m, opts, reg, log=lambda s: None).run()
        minutes = (time.perf_counter() - t0) / 60
        best = AnomalyModel.load(result["model_directory"], reg)
        t = evaluate(*best.predict(test.images), test, best.threshold)
        b = result["best"]
        config = " ".join(
            f"{k}={v}"
            for k, v in b["parameters"].items()
            if k not in ("threshold-policy", "target-fpr", "validation", "int8-precision")
        )
        done = [x for x in result["trials"] if x["state"] == "COMPLETE" and x["fits"]]
        corr = float(spearmanr([x["image_auroc"] for x in done], [x["test_image_auroc"] for x in done])[0])
        oracle = max(x["test_image_auroc"] for x in done)
        rows[m] = {
            "default": d["image_auroc"],
            "tuned": t["image_auroc"],
            "estimate": b["image_auroc"],
            "oracle": oracle,
            "rank_correlation": corr,
            "configuration": b["parameters"],
            "latency_ms": b["latency_ms"],
            "model_kb": b["model_kb"],
            "trials_per_minute": result["trials_per_minute"],
            "minutes": minutes,
        }
        print(
            f"| {m} | {d['image_auroc']:.3f} | {t['image_auroc']:.3f} | {t['image_auroc'] - d['image_auroc']:+.3f} | "
            f"{b['image_auroc']:.3f} | {oracle:.3f} | {corr:.2f} | {config} | {b['latency_ms']:.2f} | "
            f"{result['trials_per_minute']:.1f} |",
            flush=True,
        )
    mean = {
        k: float(np.mean([r[k] for r in rows.values()]))
        for k in ("default", "tuned", "estimate", "oracle", "rank_correlation", "latency_ms", "trials_per_minute")
    }
    print(
        f"| **mean** | {mean['default']:.3f} | {mean['tuned']:.3f} | {mean['tuned'] - mean['default']:+.3f} | "
        f"{mean['estimate']:.3f} | {mean['oracle']:.3f} | {mean['rank_correlation']:.2f} | | "
        f"{mean['latency_ms']:.2f} | {mean['trials_per_minute']:.1f} |"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"n_trials": args.n_trials, "target": args.target, "materials": rows, "mean": mean}, indent=2)
        )


if __name__ == "__main__":
    main()

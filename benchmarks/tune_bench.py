"""`vadblocks tune` on the development benchmark: the tuned model's real test accuracy against the default's.

    cd benchmarks && python tune_bench.py [--family dev,ufoai,openarena,nexuiz|all] [--materials brick,grass]
        [--n-trials 40] [--target high-power] [--out bench/tune] [--json F]

For each material: tunes on the 200 normal training images of the Edge Impulse directory with
``--accuracy synthetic`` (no labelled anomaly is used: trials are judged by synthetic anomalies on
held-out training images) within the target's budget (default high-power: float TFLite, 3 ms), then
scores the 50 + 50 labelled test images with the chosen model and with the default configuration, in
process (torch, one thread). Reports image AUROC of both, F1, false positive rate and recall of both at
their suggested thresholds, the default configuration's own trial (trial 0: its estimate, its measured
latency, and whether it fit the budget), the chosen configuration, its measured LiteRT latency, the
study's trials per minute, and how well the synthetic estimates rank the trials:
the Spearman correlation between every trial's estimate and its real test AUROC (each trial also scores
the Edge Impulse directory's labelled test split, unused for the choice) and the best real test AUROC
any trial within the budget reached ("oracle"). Then the means per family and over all materials.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from hard_data import add_data_args, by_family, material_dirs
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
    print(HEADER)
    print("|---" * len(HEADER.split("|")[1:-1]) + "|")
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
        done = [x for x in result["trials"] if x["state"] == "COMPLETE" and x["fits"]]
        first = next(x for x in result["trials"] if x["number"] == 0)  # the default configuration
        rows[m] = {
            "default": d["image_auroc"],
            "tuned": t["image_auroc"],
            **{
                f"{side}_{k}": r[k] or 0.0
                for side, r in (("default", d), ("tuned", t))
                for k in ("f1", "fpr", "recall")
            },
            "estimate": b["image_auroc"],
            "default_estimate": first.get("image_auroc"),
            "default_latency_ms": first.get("latency_ms"),
            "default_fits": bool(first.get("fits")),
            "oracle": max(x["test_image_auroc"] for x in done),
            "rank_correlation": float(
                spearmanr([x["image_auroc"] for x in done], [x["test_image_auroc"] for x in done])[0]
            ),
            "configuration": b["parameters"],
            "latency_ms": b["latency_ms"],
            "model_kb": b["model_kb"],
            "trials_per_minute": result["trials_per_minute"],
            "minutes": minutes,
        }
        print(_row(m, rows[m], _configuration(b["parameters"])), flush=True)
    families = by_family(rows)
    means = {f: _mean([rows[m] for m in ms]) for f, ms in families.items()}
    for f, mean in means.items():
        print(_row(f"**{f} mean**", mean))
    overall = _mean(list(rows.values()))
    print(_row("**mean**", overall))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "n_trials": args.n_trials,
                    "target": args.target,
                    "materials": rows,
                    "families": means,
                    "mean": overall,
                },
                indent=2,
            )
        )


HEADER = (
    "| material | default image AUROC | tuned image AUROC | change | default F1 / FPR / recall at suggested | "
    "tuned F1 / FPR / recall at suggested | tuned estimate | default estimate, LiteRT ms | oracle | rank corr. | "
    "chosen configuration | LiteRT ms | trials/min |"
)
MEAN_KEYS = (
    "default",
    "tuned",
    "default_f1",
    "default_fpr",
    "default_recall",
    "tuned_f1",
    "tuned_fpr",
    "tuned_recall",
    "estimate",
    "default_estimate",
    "default_latency_ms",
    "oracle",
    "rank_correlation",
    "latency_ms",
    "trials_per_minute",
)


def _configuration(parameters: dict) -> str:
    skip = ("threshold-policy", "target-fpr", "validation", "int8-precision")
    return " ".join(f"{k}={v}" for k, v in parameters.items() if k not in skip)


def _mean(rows: list[dict]) -> dict:
    return {k: float(np.nanmean([np.nan if r[k] is None else r[k] for r in rows])) for k in MEAN_KEYS}


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{v:.{digits}f}"


def _row(name: str, x: dict, configuration: str = "") -> str:
    fits = "" if x.get("default_fits", True) else " (over budget)"
    return (
        f"| {name} | {x['default']:.3f} | {x['tuned']:.3f} | {x['tuned'] - x['default']:+.3f} | "
        f"{x['default_f1']:.3f} / {x['default_fpr']:.2f} / {x['default_recall']:.2f} | "
        f"{x['tuned_f1']:.3f} / {x['tuned_fpr']:.2f} / {x['tuned_recall']:.2f} | {x['estimate']:.3f} | "
        f"{_fmt(x['default_estimate'])}, {_fmt(x['default_latency_ms'], 2)}{fits} | {x['oracle']:.3f} | "
        f"{x['rank_correlation']:.2f} | {configuration} | {x['latency_ms']:.2f} | {x['trials_per_minute']:.1f} |"
    )


if __name__ == "__main__":
    main()

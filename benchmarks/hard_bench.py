"""Accuracy on the development benchmark (benchmarks/hard_data.py), per material and as a mean.

    cd benchmarks && python hard_bench.py [--family dev,ufoai,openarena,nexuiz|all] [--materials ...]
        [--param num-layers=3 ...] [--json F]

Writes the benchmarks first where they are missing. For each material: trains the configuration (defaults
plus --param values) on the 200 normal training images of the Edge Impulse directory, scores the 50 + 50
test images of the folder layout in-process (torch, one thread), and reports image AUROC, pixel AUROC,
F1, false positive rate and recall at the suggested threshold, the best F1 over all thresholds and over
those with a false positive rate of at most 0.10 (for comparison), the train-time validation estimates
(synthetic anomalies on held-out training images) against the truth, and the fit time; then the means
per family and over families, and per family how well the estimate tracks the truth.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from hard_data import bench_setup, by_family, dump_file, materials

KEYS = (
    "image_auroc",
    "pixel_auroc",
    "f1",
    "fpr",
    "recall",
    "best_f1",
    "best_f1_fpr10",
    "est_image_auroc",
    "est_error",
    "est_pixel_auroc",
    "fit_s",
)
HEADER = (
    "| material | image AUROC | pixel AUROC | F1 at suggested | FPR at suggested | recall at suggested | "
    "best F1 | best F1 (FPR <= 0.10) | estimated image AUROC | estimate - truth | estimated pixel AUROC | "
    "fit s |"
)


def main() -> None:
    a, reg, config = bench_setup(
        __doc__,
        extra=lambda ap: ap.add_argument(
            "--dump",
            default=None,
            help="folder: per material an .npz of the scores the threshold policies saw (validation's held-out "
            "normal and synthetic anomaly scores, the grouped held-out normal scores with their memory dropped "
            "and refilled, the training scores) and the estimate's held-out scores with each synthetic defect's "
            "kind, the test scores, labels and defect kinds (the test folder names) and grids, to compare "
            "policies and estimates without training again",
        ),
    )
    from framework.metrics import best_f1, evaluate
    from framework.train import thresholds
    from framework.train.pipeline import train

    seen: dict = {}
    if a.dump:
        Path(a.dump).mkdir(parents=True, exist_ok=True)
        suggest = thresholds.suggest

        def recording(policy, rate, train_scores, validation):  # what the policy saw, kept for --dump
            seen.update(train_scores=np.asarray(train_scores), validation=validation)
            return suggest(policy, rate, train_scores, validation)

        thresholds.suggest = recording

    rows: dict[str, dict] = {}
    print(HEADER)
    print("|---" * 12 + "|")
    for m, ds, test in materials(a):
        t0 = time.perf_counter()
        model = train(ds, config, registry=reg, progress=False)
        fit_s = time.perf_counter() - t0
        grids, scores = model.predict(test.images)
        r = evaluate(grids, scores, test, model.threshold)
        v = model.metadata["validation"]
        est = v.get("image_auroc")
        rows[m] = {
            "image_auroc": r["image_auroc"],
            "pixel_auroc": r["pixel_auroc"],
            "f1": r["f1"] or 0.0,
            "fpr": r["fpr"],
            "recall": r["recall"],
            "best_f1": r["best_f1"],
            "best_f1_fpr10": best_f1(test.anomalous, scores, max_fpr=0.10)[0],  # type: ignore[index]
            "best_threshold": r["best_threshold"],
            "threshold": model.threshold,
            "est_image_auroc": est,
            "est_error": None if est is None else est - r["image_auroc"],
            "est_folds": v.get("image_auroc_folds"),
            "est_pixel_auroc": v.get("pixel_auroc"),
            "est_f1": v.get("f1"),
            "est_fpr": v.get("fpr"),
            "fit_s": fit_s,
            "validation_s": model.metadata["timings"]["validationSeconds"],
        }
        print(_row(m, rows[m]), flush=True)
        if a.dump and seen.get("validation"):
            v_raw = seen["validation"]
            np.savez(
                dump_file(a.dump, m),
                train_scores=seen["train_scores"],
                strict_normal=v_raw["strict"]["normal_scores"],
                strict_anomaly=v_raw["strict"]["anomaly_scores"],
                grouped_normal=(v_raw.get("grouped") or {}).get("normal_scores", np.zeros(0)),
                grouped_substituted=(v_raw.get("grouped") or {}).get("substituted_scores", np.zeros(0)),
                normal=v_raw["normal_scores"],
                anomaly=v_raw["anomaly_scores"],
                anomaly_kinds=np.array(v_raw["kinds"]),
                test_scores=scores,
                test_grids=grids,
                test_anomalous=test.anomalous,
                test_kinds=np.array([n.split("/")[-2] for n in test.names]),
                threshold=model.threshold,
            )
    families = by_family(rows)
    means = {f: _mean([rows[m] for m in ms]) for f, ms in families.items()}
    for f, mean in means.items():
        print(_row(f"**{f} mean**", mean))
    overall = _mean(list(means.values()))
    if len(means) > 1:
        print(_row("**mean of families**", overall))
    for f, ms in families.items():
        e = [rows[m]["est_error"] for m in ms if rows[m]["est_error"] is not None]
        if len(e) > 2:
            from scipy.stats import spearmanr

            rho = spearmanr([rows[m]["est_image_auroc"] for m in ms], [rows[m]["image_auroc"] for m in ms])[0]
            print(
                f"{f}: estimate - truth mean {np.mean(e):+.3f}, mean |error| {np.mean(np.abs(e)):.3f}, worst "
                f"{max(e, key=abs):+.3f}, rank correlation {rho:.2f}; FPR at suggested: max "
                f"{max(rows[m]['fpr'] for m in ms):.2f}"
            )
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {"configuration": config.as_cli_values(reg), "materials": rows, "families": means, "mean": overall},
                indent=2,
            )
        )


def _mean(rows: list[dict]) -> dict:
    return {k: (None if any(r[k] is None for r in rows) else float(np.mean([r[k] for r in rows]))) for k in KEYS}


def _row(name: str, x: dict) -> str:
    return (
        "| "
        + name
        + " | "
        + " | ".join(_fmt(x[k], 2 if k in ("fpr", "recall") else 1 if k == "fit_s" else 3) for k in KEYS)
        + " |"
    )


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


if __name__ == "__main__":
    main()

"""int8 against float on the development benchmark: image AUROC per material and single-image latency.

    cd benchmarks && python int8_bench.py [--data ../bench/hard] [--materials ...] [--param k=v ...] [--json F]
                                          [--float-modules backbone.features.0,backbone.features.6]

For each material: trains the configuration (defaults plus --param), writes model.tflite and
model_quantized_int8_io.tflite (calibrated on the training images, as `vadblocks train` does), scores
the 50 + 50 test images through LiteRT with each file, and reports both image AUROCs, their difference
and the median single-image latency of each file (one thread, 100 runs). --float-modules keeps those
modules of the exported graph in float in the int8 file (PT2E leaves them unannotated) instead of
those the configuration's --int8-precision keeps (--param int8-precision=full: none).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from hard_data import bench_setup, materials


def main() -> None:
    a, reg, config = bench_setup(
        __doc__,
        {"validation": "0"},
        lambda ap: ap.add_argument(
            "--float-modules",
            default=None,
            help="comma-separated module paths, e.g. backbone.features.6 ('' for "
            "none); default: those of the configuration's --int8-precision",
        ),
    )
    float_modules = None if a.float_modules is None else [m for m in a.float_modules.split(",") if m]
    from framework.metrics import auroc
    from framework.serve.footprint import measure_latency
    from framework.serve.runtimes import open_runtime
    from framework.train.export import save_with_exports
    from framework.train.pipeline import train

    rows = {}
    print("| material | float AUROC | int8 AUROC | int8 - float | float ms | int8 ms | export s |")
    print("|---|---|---|---|---|---|---|")
    for m, ds, test in materials(a):
        model = train(ds, config, registry=reg, progress=False)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            save_with_exports(
                model,
                Path(tmp) / "model",
                ("tflite", "tflite-int8"),
                calibration=ds.train.images,
                int8_float_modules=float_modules,
            )
            export_s = time.perf_counter() - t0
            row = {
                "export_s": export_s,
                "int8_kb": (Path(tmp) / "model" / "model_quantized_int8_io.tflite").stat().st_size / 1024,
            }
            for fmt in ("tflite", "tflite-int8"):
                rt = open_runtime(Path(tmp) / "model", fmt)
                _, scores = rt.predict(test.images)
                row[fmt] = {
                    "image_auroc": auroc(test.anomalous, scores),
                    "latency_ms": measure_latency(rt, test.images[0], runs=100),
                }
        row["delta"] = row["tflite-int8"]["image_auroc"] - row["tflite"]["image_auroc"]
        rows[m] = row
        print(
            f"| {m} | {row['tflite']['image_auroc']:.3f} | {row['tflite-int8']['image_auroc']:.3f} | "
            f"{row['delta']:+.3f} | {row['tflite']['latency_ms']:.2f} | {row['tflite-int8']['latency_ms']:.2f} | "
            f"{export_s:.0f} |",
            flush=True,
        )
    mean = {
        "float": float(np.mean([r["tflite"]["image_auroc"] for r in rows.values()])),
        "int8": float(np.mean([r["tflite-int8"]["image_auroc"] for r in rows.values()])),
        "delta": float(np.mean([r["delta"] for r in rows.values()])),
        "worst_delta": float(min(r["delta"] for r in rows.values())),
        "float_ms": float(np.median([r["tflite"]["latency_ms"] for r in rows.values()])),
        "int8_ms": float(np.median([r["tflite-int8"]["latency_ms"] for r in rows.values()])),
    }
    print(
        f"| **mean** | {mean['float']:.3f} | {mean['int8']:.3f} | {mean['delta']:+.3f} "
        f"(worst {mean['worst_delta']:+.3f}) | {mean['float_ms']:.2f} | {mean['int8_ms']:.2f} | |"
    )
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "configuration": config.as_cli_values(reg),
                    "float_modules": float_modules,
                    "materials": rows,
                    "mean": mean,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

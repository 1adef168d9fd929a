"""TensorFlow Lite Micro on the development benchmark: what each configuration's int8 file costs a
microcontroller, and its accuracy under TFLM against float.

    cd benchmarks && python micro_bench.py [--data bench/hard] [--materials ...] [--param k=v ...] [--json F]

Per material: trains the configuration (defaults plus --param; `--int8-precision full` unless given),
writes model.tflite and model_quantized_int8_io.tflite, and reports the int8 file's bytes (flash),
TFLM's measured arena (head + tail), the project's planner estimate, multiply-accumulates per inference,
the median host time of one TFLM invoke (20 runs, reference kernels), and the image AUROC of the
50 + 50 test images through the float file (LiteRT), the int8 file (LiteRT) and the int8 file under TFLM.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from hard_data import bench_setup, materials


def main() -> None:
    a, reg, config = bench_setup(__doc__, {"validation": "0", "int8-precision": "full"})
    from framework.metrics import auroc
    from framework.portable import micro
    from framework.serve.footprint import peak_ram_bytes, tflite_macs
    from framework.serve.runtimes import open_runtime
    from framework.train.export import save_with_exports
    from framework.train.pipeline import train

    rows = {}
    print(
        "| material | flash KB | TFLM arena KB (head + tail) | planner KB | MMAC | TFLM ms | "
        "float AUROC | int8 LiteRT | int8 TFLM |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for m, ds, test in materials(a):
        model = train(ds, config, registry=reg, progress=False)
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / "model"
            save_with_exports(model, d, ("tflite", "tflite-int8"), calibration=ds.train.images)
            path = d / "model_quantized_int8_io.tflite"
            arena = micro.measure_arena(path.read_bytes(), path.name)
            row = {
                "flash_bytes": path.stat().st_size,
                **arena.as_dict(),
                "planner_bytes": peak_ram_bytes(path, "tflite-int8"),
                "macs": tflite_macs(path),
            }
            for fmt in ("tflite", "tflite-int8", "tflm"):
                rt = open_runtime(d, fmt)
                _, scores = rt.predict(test.images)
                row[f"{fmt}_auroc"] = auroc(test.anomalous, scores)
            rt = open_runtime(d, "tflm")
            times = []
            for _ in range(20):
                t0 = time.perf_counter()
                rt.predict(test.images[:1])
                times.append((time.perf_counter() - t0) * 1000)
            row["tflm_ms"] = statistics.median(times)
        rows[m] = row
        kb = {k: row[k] / 1024 for k in ("flash_bytes", "arenaBytes", "headBytes", "tailBytes", "planner_bytes")}
        print(
            f"| {m} | {kb['flash_bytes']:.0f} | {kb['arenaBytes']:.0f} ({kb['headBytes']:.0f} + "
            f"{kb['tailBytes']:.0f}) | {kb['planner_bytes']:.0f} | {row['macs'] / 1e6:.1f} | "
            f"{row['tflm_ms']:.1f} | {row['tflite_auroc']:.3f} | {row['tflite-int8_auroc']:.3f} | "
            f"{row['tflm_auroc']:.3f} |",
            flush=True,
        )
    mean = {
        k: float(np.mean([r[k] for r in rows.values()])) for k in ("tflite_auroc", "tflite-int8_auroc", "tflm_auroc")
    }
    aurocs = " | ".join(f"{mean[k]:.3f}" for k in ("tflite_auroc", "tflite-int8_auroc", "tflm_auroc"))
    print(f"| **mean** | | | | | | {aurocs} |")
    if a.json:
        Path(a.json).write_text(
            json.dumps({"configuration": config.as_cli_values(reg), "materials": rows, "mean": mean}, indent=2)
        )


if __name__ == "__main__":
    main()

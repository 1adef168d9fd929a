"""Measurement helpers shared by the benchmark scripts and the anomalib worker (standard library only,
so the worker can import it from anomalib's own virtual environment)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

WARMUP, B1_RUNS, B32_RUNS = 10, 100, 5


def proc_status_kb(key: str, pid: int | str = "self") -> float:
    """A kB field (VmRSS, VmHWM, ...) or a count (Threads) of /proc/PID/status; NaN where it is missing."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return float("nan")


def vm_hwm_mb() -> float:
    """Peak resident set of this process since exec, MB (ru_maxrss would include a forked parent's)."""
    return proc_status_kb("VmHWM") / 1024


def serving_latency(run: Callable[[Any], Any], one: Any, b32: Any) -> tuple[float, float]:
    """Median ms of ``run(one)`` and median ms per image of ``run(b32)`` (32 images), after warm-up.

    The same protocol for both sides of the comparison: 10 warm-up calls, 100 single-image runs,
    one warm-up batch and 5 batch runs.
    """
    for _ in range(WARMUP):
        run(one)
    b1 = []
    for _ in range(B1_RUNS):
        t = time.perf_counter()
        run(one)
        b1.append(time.perf_counter() - t)
    run(b32)
    per_image = []
    for _ in range(B32_RUNS):
        t = time.perf_counter()
        run(b32)
        per_image.append((time.perf_counter() - t) / 32)
    return statistics.median(b1) * 1000, statistics.median(per_image) * 1000

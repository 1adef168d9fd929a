"""Model testing as a library call: a model directory run on a data directory's test split.

``vadblocks test`` and ``vadblocks report`` are thin layers over :func:`test_model`; a Python user gets the
same predictions, metrics and latency without the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framework.data import Split, load_dataset
from framework.errors import VadblocksError
from framework.metrics import evaluate
from framework.portable.modelfiles import check_model_dir
from framework.serve.footprint import measure_latency
from framework.serve.runtimes import Runtime, open_runtime, resolve_runtime


@dataclass
class TestRun:
    """A model's grids and scores on a test split, and how they were obtained."""

    __test__ = False  # not a pytest test class

    model_dir: Path
    meta: dict[str, Any]  # the model's checked anomaly_metadata.json
    split: Split
    runtime: str  # the runtime that ran it (``auto`` resolved)
    engine: Runtime
    grids: np.ndarray
    scores: np.ndarray

    @property
    def suggested_threshold(self) -> float:
        return float(self.meta["nominalThresholdScore"])

    def evaluate(self, threshold: float | None = None) -> dict[str, Any]:
        """:func:`framework.metrics.evaluate` at ``threshold`` (default: the model's suggested one)."""
        return evaluate(
            self.grids, self.scores, self.split, self.suggested_threshold if threshold is None else threshold
        )

    def latency_ms(self) -> float:
        """Median single-image latency of this run's runtime on the first test image."""
        return measure_latency(self.engine, self.split.images[0])


def test_model(
    model_dir: str | Path,
    data_dir: str | Path,
    *,
    runtime: str = "auto",
    info_file: str | Path | None = None,
    input_shape: str | None = None,
    input_scaling: str | None = None,
) -> TestRun:
    """Run ``model_dir`` on the test split of ``data_dir`` (an Edge Impulse data directory or a folder layout)
    through ``runtime`` (``auto``, ``torch`` or an exported file's runtime)."""
    model_dir = Path(model_dir)
    meta = check_model_dir(model_dir)
    ds = load_dataset(
        data_dir, input_shape=input_shape, scaling=input_scaling, info_file=info_file, image_size=meta["inputShape"][0]
    )
    if len(ds.test) == 0:
        raise VadblocksError(f"{data_dir} has no test images to test on")
    runtime = resolve_runtime(model_dir, runtime)
    engine = open_runtime(model_dir, runtime, meta=meta)
    grids, scores = engine.predict(ds.test.images)
    return TestRun(model_dir, meta, ds.test, runtime, engine, grids, scores)


test_model.__test__ = False  # type: ignore[attr-defined]  # not a pytest test function

"""vadblocks' Python API: ``import vadblocks``.

The distribution installs this folder (``framework/api/``) under the import name ``vadblocks`` (pyproject's
package-dir); ``framework`` and ``blocks`` are the implementation and the built-in plugins. Everything the
command line does is reachable from here without it::

    import vadblocks

    model = vadblocks.train("data/brick-ei", augment="flips")      # a folder, an Edge Impulse dir, or arrays
    result = model.predict(images)                                 # numpy (N, H, W, 3) / (H, W, 3), or PIL
    model.save("out/brick", export=("onnx", "tflite"))
    metrics = vadblocks.test("out/brick", "data/brick")            # F1, FPR, recall, AUROCs
    vadblocks.report("out/brick", "data/brick", "report.html")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from framework import __version__
from framework.errors import VadblocksError

__all__ = [
    "Model",
    "Prediction",
    "VadblocksError",
    "__version__",
    "load",
    "plugins",
    "predict_files",
    "report",
    "test",
    "train",
    "tune",
]


@dataclass(frozen=True)
class Prediction:
    """One image's per-cell anomaly grid (G, G), its image score and whether it exceeds the threshold."""

    grid: np.ndarray
    score: float
    anomalous: bool


class Model:
    """A trained model: :meth:`predict` on images, :meth:`save` with exported files."""

    def __init__(self, runner: Any, metadata: dict[str, Any], calibration: np.ndarray | None = None) -> None:
        # runner: framework.train.pipeline.AnomalyModel (torch) or framework.portable.impulse.ExportedModel
        self._model, self._metadata, self._calibration = runner, metadata, calibration

    @property
    def threshold(self) -> float:
        """The suggested threshold (``nominalThresholdScore``)."""
        return float(self._metadata["nominalThresholdScore"])

    @property
    def metadata(self) -> dict[str, Any]:
        """What anomaly_metadata.json holds (parameters, threshold policy, validation estimates, timings)."""
        return self._metadata

    @property
    def input_size(self) -> int:
        return int(self._metadata["inputShape"][0])

    def predict(self, images: Any, threshold: float | None = None) -> list[Prediction]:
        """Grids and scores of ``images``: a numpy array (N, H, W, 3) or (H, W, 3) (uint8 0..255 or float
        0..1), a PIL image, or a sequence of PIL images; resized to the model's input size."""
        x = _as_batch(images, self.input_size)
        grids, scores = self._model.predict(x)
        t = self.threshold if threshold is None else float(threshold)
        return [Prediction(g, float(s), bool(s > t)) for g, s in zip(grids, scores)]

    def save(self, out_dir: str | Path, export: Sequence[str] = ()) -> Path:
        """Write the model directory (and the exported files named in ``export``: onnx, tflite, tflite-int8)."""
        from framework.train.export import save_with_exports

        if not hasattr(self._model, "save"):
            raise VadblocksError("a model loaded from an exported file cannot be saved: load it with runtime='torch'")
        if "tflite-int8" in export and self._calibration is None:
            raise VadblocksError("the int8 file needs the training images for calibration: train in this process")
        return save_with_exports(self._model, out_dir, tuple(export), calibration=self._calibration)


def train(data: Any, **params: Any) -> Model:
    """Train on ``data``: a folder layout (resized to 96 x 96, as ``vadblocks train`` does) or an Edge Impulse
    data directory (path), or normal images as a numpy array (N, H, W, 3) (uint8 or 0..1 float). ``params`` are
    the CLI's parameters with ``_`` for ``-`` (``num_layers=2``, ``scoring_function="gmm"``); unknown names or
    values raise :class:`VadblocksError`."""
    from framework.config import resolve
    from framework.data import Dataset, Split, load_training_data
    from framework.plugins import get_registry
    from framework.train.pipeline import train as train_model

    if isinstance(data, (str, Path)):
        ds = load_training_data(data)
    else:
        images = _as_batch(data, None)
        empty = Split(np.zeros((0, *images.shape[1:]), np.float32), np.zeros(0, bool), [])
        ds = Dataset(Split(images, np.zeros(len(images), bool), []), empty, "numpy array", "folder")
    registry = get_registry()
    config = resolve(registry, {k.replace("_", "-"): v for k, v in params.items()})
    model = train_model(ds, config, registry=registry, progress=False)
    return Model(model, model.metadata, calibration=ds.train.images)


def load(model_dir: str | Path, runtime: str = "torch") -> Model:
    """A model directory written by ``vadblocks train`` or :meth:`Model.save`, run by ``runtime``: ``torch``
    (the directory's own state), ``onnx``, ``tflite``, ``tflite-int8`` (its exported file, without torch) or
    ``auto`` (the fastest exported file whose runtime is installed, else torch), as ``--runtime`` does."""
    from framework.portable.modelfiles import check_model_dir
    from framework.serve.runtimes import open_runtime

    meta = check_model_dir(model_dir)
    return Model(open_runtime(model_dir, runtime, meta=meta), meta)


def predict_files(
    model_dir: str | Path,
    paths: Sequence[str | Path],
    *,
    runtime: str = "auto",
    threshold: float | None = None,
    heatmaps: str | Path | None = None,
) -> list[dict[str, Any]]:
    """What ``vadblocks predict --json`` prints: per image file its ``path``, ``score``, ``anomalous`` (above
    ``threshold``, default the suggested one) and ``grid`` (rounded to 6 decimals); with ``heatmaps`` a folder,
    an overlay PNG per image is written there and its path given as ``heatmap``."""
    from framework.data import load_image
    from framework.portable.modelfiles import check_model_dir
    from framework.report.heatmap import save_overlay
    from framework.serve.runtimes import open_runtime

    meta = check_model_dir(model_dir)
    thr = float(meta["nominalThresholdScore"] if threshold is None else threshold)
    files = [Path(p) for p in paths]
    if not files:
        raise VadblocksError("no images given: name one or more image files")
    arrays = np.stack([load_image(p, meta["inputShape"][0]) for p in files])
    grids, scores = open_runtime(model_dir, runtime, meta=meta).predict(arrays)
    out, used = [], set()
    for path, img, grid, score in zip(files, arrays, grids, scores):
        row = {
            "path": str(path),
            "score": float(score),
            "anomalous": bool(score > thr),
            "grid": np.round(grid.astype(float), 6).tolist(),
        }
        if heatmaps is not None:
            name = f"{path.stem}_heatmap.png"
            if name in used:  # same file name in another folder: prefix the folder name
                name = f"{path.parent.name}_{name}"
            used.add(name)
            row["heatmap"] = str(save_overlay(Path(heatmaps) / name, img, grid, thr))
        out.append(row)
    return out


def test(
    model_dir: str | Path, data_dir: str | Path, *, runtime: str = "auto", threshold: float | None = None
) -> dict[str, Any]:
    """What ``vadblocks test --json`` prints: F1, FPR and recall at the threshold, best F1, AUROCs, counts."""
    from framework.serve.testing import test_model

    return test_model(model_dir, data_dir, runtime=runtime).evaluate(threshold)


test.__test__ = False  # type: ignore[attr-defined]  # not a pytest test function


def report(
    model_dir: str | Path,
    data_dir: str | Path,
    out: str | Path,
    *,
    runtime: str = "auto",
    threshold: float | None = None,
) -> Path:
    """Write the model-testing page (one self-contained HTML file) and return its path."""
    from framework.report.page import write_test_report
    from framework.serve.testing import test_model

    return write_test_report(out, test_model(model_dir, data_dir, runtime=runtime), threshold)


def tune(data_dir: str | Path, out_dir: str | Path, **options: Any) -> dict[str, Any]:
    """``vadblocks tune``: search configurations for ``data_dir``; ``options`` are
    :class:`framework.tune.tuner.TuneOptions` fields (``n_trials``, ``target``, ``runtime``, ...). Returns the
    study's summary (the best trial, every trial, the chosen model's directory)."""
    from framework.plugins import get_registry
    from framework.tune.tuner import DataSource, TuneOptions, Tuner

    opts = TuneOptions(**{"progress": False, **options})
    return Tuner(DataSource(data_dir), Path(out_dir), opts, get_registry(), log=lambda s: None).run()


def plugins() -> dict[str, Any]:
    """What ``vadblocks plugins --json`` prints: installed backbones and scorers, and plugins that failed."""
    from framework.plugins import get_registry

    return get_registry().describe()


def _as_batch(images: Any, size: int | None) -> np.ndarray:
    """Images as (N, size, size, 3) float32 0..1 (size None: as given)."""
    from PIL import Image

    from framework.data import resize_images

    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, Iterable) and not isinstance(images, np.ndarray):
        items = list(images)
        if items and all(isinstance(i, Image.Image) for i in items):
            target = (size, size) if size else items[0].size
            images = np.stack([np.asarray(i.convert("RGB").resize(target, Image.Resampling.BILINEAR)) for i in items])
        else:
            images = np.asarray(items)
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or not len(x):
        raise VadblocksError(f"images must be (N, H, W, 3) or (H, W, 3) RGB, got shape {x.shape}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise VadblocksError("float images must be finite and in 0..1 (or pass uint8 0..255)")
        x = x.astype(np.float32)
    else:
        raise VadblocksError(f"images must be uint8 or float, got {x.dtype}")
    return resize_images(np.ascontiguousarray(x), size) if size else np.ascontiguousarray(x)

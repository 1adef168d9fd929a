"""Training from a data directory into a model directory: what ``vadblocks train`` does, callable from Python."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from framework.config import BlockConfig
from framework.data import Dataset, load_training_data
from framework.outputs import output_lock
from framework.plugins import Registry

if TYPE_CHECKING:
    from framework.train.pipeline import AnomalyModel


@dataclass(frozen=True)
class TrainedDirectory:
    """A model trained and written: the model, the data it learnt from, the fit's seconds, where it is."""

    model: AnomalyModel
    dataset: Dataset
    seconds: float
    out_directory: Path


def train_to_directory(
    data_directory: str | Path,
    out_directory: str | Path,
    config: BlockConfig,
    registry: Registry,
    *,
    export: Sequence[str] = (),
    info_file: str | Path | None = None,
    input_shape: str | None = None,
    input_scaling: str | None = None,
    image_size: int | None = None,
    weights: str | None = None,
    progress: bool = True,
) -> TrainedDirectory:
    """Train ``config`` on ``data_directory``'s normal images and write the model (with the ``export`` files)
    to ``out_directory`` atomically; a second training into the same directory at once is refused.

    The data is read and checked before torch is imported: a refusal takes well under a second."""
    ds = load_training_data(
        data_directory, input_shape=input_shape, scaling=input_scaling, info_file=info_file, image_size=image_size
    )
    from framework.train.export import save_with_exports
    from framework.train.pipeline import train

    out = Path(out_directory)
    with output_lock(out):
        t0 = time.perf_counter()
        model = train(ds, config, registry=registry, weights=weights, progress=progress)
        seconds = time.perf_counter() - t0
        save_with_exports(model, out, tuple(export), calibration=ds.train.images)
    return TrainedDirectory(model, ds, seconds, out)

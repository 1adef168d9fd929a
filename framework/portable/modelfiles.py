"""A trained model directory: the names of its files and its checked metadata."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from .engines import SCALINGS
from .errors import ServingError

METADATA_FILE = "anomaly_metadata.json"
SCORER_STATE_FILE = "scorer_state.npz"
BACKBONE_STATE_FILE = "backbone.npz"
FORMAT_VERSION = 1


def read_metadata(model_dir: str | os.PathLike, data: bytes | None = None) -> dict[str, Any]:
    """``model_dir``'s anomaly_metadata.json (or its bytes ``data``), checked, or one clear error.

    Checks what serving relies on: format version, input shape, threshold, input scaling, grid size.
    """
    path = os.path.join(os.fspath(model_dir), METADATA_FILE)
    try:
        if data is None:
            with open(path, "rb") as fh:
                data = fh.read()
        meta = json.loads(data)
    except FileNotFoundError:
        raise ServingError(f"{model_dir} is not a vadblocks model directory ({METADATA_FILE} is missing); "
                           "train one with `vadblocks train`") from None
    except (OSError, ValueError) as exc:
        raise ServingError(f"{path} is corrupt: {exc}") from None
    if not isinstance(meta, dict):
        raise ServingError(f"{path} is corrupt: it must hold a JSON object")
    version = meta.get("formatVersion")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ServingError(f"{path} is corrupt: formatVersion {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise ServingError(f"{path} has formatVersion {version}, newer than this vadblocks reads "
                           f"({FORMAT_VERSION}): upgrade vadblocks")

    def bad(field: str, want: str) -> ServingError:
        return ServingError(f"{path} is corrupt: {field} {meta.get(field)!r} is not {want}")

    shape = meta.get("inputShape")
    if (not isinstance(shape, list) or len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape)
            or shape[2] not in (1, 3)):
        raise bad("inputShape", "[height, width, 1 or 3]")
    grid = meta.get("gridSize")
    if not isinstance(grid, list) or len(grid) != 2 or not all(isinstance(v, int) and v > 0 for v in grid):
        raise bad("gridSize", "[rows, columns]")
    thr = meta.get("nominalThresholdScore")
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr):
        raise bad("nominalThresholdScore", "a finite number")
    if meta.get("imageInputScaling", "0..1") not in SCALINGS:
        raise bad("imageInputScaling", "one of " + ", ".join(SCALINGS))
    if not isinstance(meta.get("parameters"), dict):
        raise bad("parameters", "an object of parameter values")
    return meta

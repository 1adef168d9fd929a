"""A trained model directory: the names of its files and its checked metadata."""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Iterable

from .engines import SCALINGS
from .errors import ServingError

METADATA_FILE = "anomaly_metadata.json"
SCORER_STATE_FILE = "scorer_state.npz"
BACKBONE_STATE_FILE = "backbone.npz"
FORMAT_VERSION = 2  # 2: every file carries its size and SHA-256 (``integrity``)


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
        raise ServingError(
            f"{model_dir} is not a vadblocks model directory ({METADATA_FILE} is missing); "
            "train one with `vadblocks train`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ServingError(f"{path} is corrupt: {exc}") from None
    if not isinstance(meta, dict):
        raise ServingError(f"{path} is corrupt: it must hold a JSON object")
    version = meta.get("formatVersion")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ServingError(f"{path} is corrupt: formatVersion {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise ServingError(
            f"{path} has formatVersion {version}, newer than this vadblocks reads ({FORMAT_VERSION}): upgrade vadblocks"
        )
    if version < FORMAT_VERSION:
        raise ServingError(
            f"{path} has formatVersion {version}, written by an older vadblocks without file "
            f"checksums (this one reads {FORMAT_VERSION}): train the model again with this version"
        )

    def bad(field: str, want: str) -> ServingError:
        return ServingError(f"{path} is corrupt: {field} {meta.get(field)!r} is not {want}")

    shape = meta.get("inputShape")
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(v, int) and v > 0 for v in shape)
        or shape[2] not in (1, 3)
    ):
        raise bad("inputShape", "[height, width, 1 or 3]")
    grid = meta.get("gridSize")
    if not isinstance(grid, list) or len(grid) != 2 or not all(isinstance(v, int) and v > 0 for v in grid):
        raise bad("gridSize", "[rows, columns]")
    thr = meta.get("nominalThresholdScore")
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr):
        raise bad("nominalThresholdScore", "a finite number")
    scaling = meta.get("imageInputScaling", "0..1")
    if not isinstance(scaling, str) or scaling not in SCALINGS:
        raise bad("imageInputScaling", "one of " + ", ".join(SCALINGS))
    if not isinstance(meta.get("parameters"), dict):
        raise bad("parameters", "an object of parameter values")
    files = (meta.get("integrity") or {}).get("files") if isinstance(meta.get("integrity"), dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(k, str)
        and os.path.basename(k) == k
        and not k.startswith(".")
        and isinstance(v, dict)
        and isinstance(v.get("bytes"), int)
        and isinstance(v.get("sha256"), str)
        for k, v in files.items()
    ):
        raise bad("integrity", "an object of file name -> {bytes, sha256}")
    return meta


def engine_shapes(meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The ``input_shape`` / ``grid_shape`` keywords of :func:`~.engines.load_engine` for this model."""
    return {"input_shape": tuple(meta["inputShape"]), "grid_shape": tuple(meta["gridSize"])}


def file_digest(path: str | os.PathLike) -> dict[str, Any]:
    """Size and SHA-256 of a file, as recorded in ``integrity``."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return {"bytes": size, "sha256": h.hexdigest()}


def integrity(folder: str | os.PathLike, names: Iterable[str]) -> dict[str, Any]:
    """The ``integrity`` entry of the metadata for files ``names`` of ``folder``."""
    return {"algorithm": "sha256", "files": {n: file_digest(Path(folder) / n) for n in sorted(names)}}


def verify_files(model_dir: str | os.PathLike, meta: dict[str, Any], names: Iterable[str]) -> None:
    """Check that each of ``names`` is recorded in the metadata and present with its recorded size and SHA-256."""
    recorded = meta["integrity"]["files"]
    for name in names:
        path = Path(model_dir) / name
        if name not in recorded:
            raise ServingError(f"{path}: the model's metadata records no such file (train with --export including it)")
        if not path.is_file():
            raise ServingError(f"{path} is missing (the metadata records it, {recorded[name]['bytes']} bytes)")
        want = recorded[name]
        size = path.stat().st_size
        if size != want["bytes"]:
            raise ServingError(
                f"{path} is {size} bytes but was written as {want['bytes']}: the file is truncated "
                "or replaced; copy the model directory again or retrain"
            )
        if file_digest(path)["sha256"] != want["sha256"]:
            raise ServingError(
                f"{path} does not match its recorded SHA-256: the file is corrupt or was changed; "
                "copy the model directory again or retrain"
            )


def npz_layout(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Name -> {shape, dtype} of each array in an .npz, read from the array headers only."""
    import numpy as np

    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                with z.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(fh)
                out[info.filename.removesuffix(".npy")] = {"shape": list(shape), "dtype": str(dtype)}
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as exc:
        raise ServingError(f"{path} is not a readable .npz file: {exc}") from None
    return out


def check_model_dir(model_dir: str | os.PathLike) -> dict[str, Any]:
    """A model directory's checked metadata after every file it records was verified (size and SHA-256)
    and the arrays of its state files have the names, shapes and dtypes the metadata records."""
    meta = read_metadata(model_dir)
    verify_files(model_dir, meta, meta["integrity"]["files"])
    arrays = meta.get("arrays")
    if not isinstance(arrays, dict):
        raise ServingError(
            f"{Path(model_dir) / METADATA_FILE} is corrupt: arrays {arrays!r} is not an object of file -> array layout"
        )
    for name, layout in arrays.items():
        found = npz_layout(Path(model_dir) / str(name))
        if found != layout:
            diff = sorted(k for k in set(found) | set(layout or {}) if found.get(k) != (layout or {}).get(k))
            raise ServingError(
                f"{Path(model_dir) / str(name)}: arrays {', '.join(diff)} do not have the names, "
                "shapes and dtypes the metadata records; copy the model directory again or retrain"
            )
    return meta


def verify_bytes(name: str, data: bytes, meta: dict[str, Any]) -> None:
    """:func:`verify_files` for a file held in memory (the model packed in a .eim)."""
    want = meta["integrity"]["files"].get(name)
    if want is None or len(data) != want["bytes"] or hashlib.sha256(data).hexdigest() != want["sha256"]:
        raise ServingError(f"{name} does not match the size and SHA-256 its metadata records: the file is corrupt")

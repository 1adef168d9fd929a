"""The data contract: Edge Impulse data directories and plain image folder layouts.

Both load into a :class:`Dataset` of float32 NHWC RGB images scaled to 0..1, a boolean
``anomalous`` label per test image and, for folder layouts, optional ground-truth masks.
Every problem with the input raises :class:`VadblocksError` naming the file and the fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from framework.errors import VadblocksError
from framework.portable.engines import SCALINGS

LABEL_ANOMALY = "anomaly"
LABEL_NORMAL = "no anomaly"
DEFAULT_CLASSES = (LABEL_ANOMALY, LABEL_NORMAL)  # Edge Impulse sorts class names; indices are 1-based
# Limits (docs/contract.md): beyond them the data is refused with a clear message before it is read.
MAX_SPLIT_BYTES = 8 << 30  # one split's images as float32 in memory (training then streams features)
MAX_IMAGE_PIXELS = 1024 * 1024  # per image (e.g. 1024x1024): stride-8 maps of 128x128 cells
MAX_FILE_IMAGE_PIXELS = 64 * 1024 * 1024  # an image file to decode (PIL's decompression-bomb guard)
Image.MAX_IMAGE_PIXELS = MAX_FILE_IMAGE_PIXELS
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
EI_FILES = ("X_split_train.npy", "Y_split_train.npy", "X_split_test.npy", "Y_split_test.npy")


@dataclass
class Split:
    """Images (N, H, W, 3) float32 in 0..1, labels and optional masks of one split."""

    images: np.ndarray
    anomalous: np.ndarray
    names: list[str]
    masks: np.ndarray | None = None  # (N, H, W) bool
    has_mask: np.ndarray | None = None  # (N,) bool: which masks are known

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class Dataset:
    """A training split (normal images only) and a test split (may be empty)."""

    train: Split
    test: Split
    source: str
    kind: str  # "edge-impulse" | "folder"
    channels: int = 3  # channels of the stored images (1 = grayscale, repeated to RGB)
    scaling: str = "0..1"
    extra: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the stored images, C as stored (the model input shape)."""
        _, h, w, _ = self.train.images.shape
        return (h, w, self.channels)


DEFAULT_FOLDER_IMAGE_SIZE = 96  # folder layouts are resized to this unless an image size is given


def load_training_data(
    path: str | Path,
    *,
    input_shape: Sequence[int] | str | None = None,
    scaling: str | None = None,
    image_size: int | None = None,
    info_file: str | Path | None = None,
) -> Dataset:
    """:func:`load_dataset` as ``vadblocks train`` reads it: folder layouts are resized to
    :data:`DEFAULT_FOLDER_IMAGE_SIZE` unless ``image_size`` is given (0: the files' own size)."""
    if image_size is None and not is_edge_impulse_dir(path):
        image_size = DEFAULT_FOLDER_IMAGE_SIZE
    return load_dataset(
        path, input_shape=input_shape, scaling=scaling, image_size=image_size or None, info_file=info_file
    )


def load_dataset(
    path: str | Path,
    *,
    input_shape: Sequence[int] | str | None = None,
    scaling: str | None = None,
    image_size: int | None = None,
    info_file: str | Path | None = None,
) -> Dataset:
    """Load an Edge Impulse data directory or a folder layout (detected by its files)."""
    root = Path(path)
    if not root.is_dir():
        raise VadblocksError(f"data directory {root} does not exist or is not a directory")
    if is_edge_impulse_dir(root):
        ds = load_edge_impulse(root, input_shape=input_shape, scaling=scaling, info_file=info_file)
        if image_size:
            ds.train.images = resize_images(ds.train.images, image_size)
            ds.test.images = resize_images(ds.test.images, image_size)
        return ds
    if (root / "train").is_dir():
        return load_folder(root, image_size=image_size)
    raise VadblocksError(
        f"{root} is neither an Edge Impulse data directory (X_split_train.npy, Y_split_train.npy, ...) nor a "
        "folder layout (train/good/*.png, test/good/, test/<defect>/)"
    )


# --- Edge Impulse data directory -----------------------------------------------------------


def check_image_size(height: int, width: int, what: str) -> None:
    """Refuse images over :data:`MAX_IMAGE_PIXELS` (the model input) with the fix."""
    if height * width > MAX_IMAGE_PIXELS:
        raise VadblocksError(
            f"{what}: images of {width}x{height} are over the {MAX_IMAGE_PIXELS:,}-pixel limit "
            "of a model input; pass --image-size (e.g. 224)"
        )


def is_edge_impulse_dir(path: str | Path) -> bool:
    """True when ``path`` looks like an Edge Impulse data directory (has X/Y_split_train.npy)."""
    root = Path(path)
    return (root / "X_split_train.npy").exists() or (root / "Y_split_train.npy").exists()


def _load_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise VadblocksError(f"{path} is not a valid .npy file (no NumPy header); write it with np.save")
    try:
        mapped = np.load(path, allow_pickle=False, mmap_mode="r")  # the header first: refuse before reading
        if mapped.dtype.hasobject:
            raise ValueError("pickle: object array")
        if mapped.size * 4 > MAX_SPLIT_BYTES:
            raise VadblocksError(
                f"{path} holds {mapped.size:,} values ({mapped.size * 4 / 2**30:.1f} GiB as float32), "
                f"over the {MAX_SPLIT_BYTES >> 30} GiB limit of one split; split the data or "
                "use smaller images"
            )
        return np.array(mapped)
    except VadblocksError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "python objects" in str(exc).lower():
            raise VadblocksError(
                f"{path} holds pickled Python objects (an object array); save a plain numeric "
                "array, e.g. np.save(path, x.astype(np.float32))"
            ) from None
        raise VadblocksError(f"{path} is not a valid .npy file: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise VadblocksError(f"{path} is not a valid .npy file: {exc}") from None


def _read_info(root: Path, info_file: str | Path | None) -> dict:
    path = Path(info_file) if info_file else root / "train_input.json"
    if not path.exists():
        if info_file:
            raise VadblocksError(f"info file {path} does not exist")
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VadblocksError(f"info file {path} is not valid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise VadblocksError(f"info file {path} must hold a JSON object")
    return info


def parse_shape(text: str | Sequence[int]) -> tuple[int, int, int]:
    """Parse ``"96,96,3"``, ``"(96, 96, 3)"`` or a sequence into (H, W, C)."""
    if isinstance(text, str):
        parts = [p for p in re.split(r"[^0-9]+", text) if p]
    elif isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = []
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) < 1:
        raise VadblocksError(
            f"input shape {text!r} is not valid; expected HEIGHT,WIDTH,CHANNELS with 1 or 3 channels, e.g. 96,96,3"
        )
    return shape  # type: ignore[return-value]


def _infer_shape(dim: int, path: Path) -> tuple[int, int, int]:
    candidates = []
    for c in (3, 1):
        if dim % c == 0:
            side = int(round((dim // c) ** 0.5))
            if side * side * c == dim:
                candidates.append((side, side, c))
    if len(candidates) != 1:
        raise VadblocksError(
            f"{path}: cannot infer the image shape of flattened rows of {dim} values (not a square RGB or "
            "grayscale image); pass --input-shape H,W,C or a train_input.json with inputShapeString"
        )
    return candidates[0]


def _images_from_x(
    x: np.ndarray, path: Path, shape: tuple[int, int, int] | None, scaling: str
) -> tuple[np.ndarray, int]:
    if not np.issubdtype(x.dtype, np.floating):
        raise VadblocksError(
            f"{path} has dtype {x.dtype}; image features must be float32 scaled per imageInputScaling ({scaling})"
        )
    if x.ndim == 2:
        shape = shape or _infer_shape(x.shape[1], path)
        if int(np.prod(shape)) != x.shape[1]:
            raise VadblocksError(f"{path}: rows of {x.shape[1]} values do not match input shape {shape}")
        x = x.reshape((x.shape[0],) + shape)
    elif x.ndim == 4:
        if x.shape[3] not in (1, 3):
            raise VadblocksError(f"{path} has shape {x.shape}; expected NHWC with 1 or 3 channels")
        if shape and tuple(x.shape[1:]) != tuple(shape):
            raise VadblocksError(
                f"inconsistent image sizes: {path} has images of shape {x.shape[1:]}, but the input shape is {shape}"
            )
    else:
        raise VadblocksError(
            f"{path} has {x.ndim} dimensions {x.shape}; expected 2 (N, H*W*C flattened) or 4 (N, H, W, C)"
        )
    x = x.astype(np.float32, copy=False)
    if x.size and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
        raise VadblocksError(f"{path} contains NaN or infinite values in {bad} sample(s); fix or remove them")
    lo, hi = SCALINGS[scaling]
    if x.size:
        tol = 1e-3 * (hi - lo)
        if x.min() < lo - tol or x.max() > hi + tol:
            raise VadblocksError(
                f"{path} values span [{x.min():g}, {x.max():g}] but imageInputScaling is "
                f"{scaling}; pass --input-scaling with the range the data uses"
            )
    channels = x.shape[3]
    x = (x - lo) / (hi - lo)
    if channels == 1:
        x = np.repeat(x, 3, axis=3)
    return np.ascontiguousarray(x, dtype=np.float32), channels


def _labels_from_y(y: np.ndarray, path: Path, n: int, classes: Sequence[str]) -> list[str]:
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise VadblocksError(f"{path} has dtype {y.dtype}; expected numeric labels")
    if y.ndim == 1:
        idx = y
    elif y.ndim == 2 and y.shape[1] >= 1:
        one_hot = y.shape[1] == len(classes) and y.size and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all()
        idx = np.argmax(y, axis=1) + 1 if one_hot else y[:, 0]
    else:
        raise VadblocksError(f"{path} has shape {y.shape}; expected a class index column or one-hot rows")
    if len(idx) != n:
        raise VadblocksError(f"{path} has {len(idx)} labels but the matching X file has {n} samples")
    if len(idx) and (not np.isfinite(idx.astype(np.float64)).all() or (idx != np.round(idx)).any()):
        raise VadblocksError(f"{path} holds non-integer class indices")
    idx = idx.astype(np.int64)
    if len(idx) and (idx.min() < 1 or idx.max() > len(classes)):
        raise VadblocksError(
            f"{path} holds class index {int(idx.min() if idx.min() < 1 else idx.max())} "
            f"outside 1..{len(classes)} (classes: {list(classes)}; indices are 1-based)"
        )
    return [classes[i - 1] for i in idx]


def load_edge_impulse(
    root: Path,
    *,
    input_shape: Sequence[int] | str | None = None,
    scaling: str | None = None,
    info_file: str | Path | None = None,
) -> Dataset:
    """Load ``X_split_*.npy`` / ``Y_split_*.npy`` (+ optional train_input.json) from ``root``."""
    info = _read_info(root, info_file)
    scaling = scaling or info.get("imageInputScaling") or "0..1"
    if not isinstance(scaling, str) or scaling not in SCALINGS:
        raise VadblocksError(f"input scaling {scaling!r} is not supported; use one of {', '.join(SCALINGS)}")
    shape_src = input_shape or info.get("inputShapeString") or info.get("inputShape")
    shape = parse_shape(shape_src) if shape_src else None
    classes = info.get("classes") or list(DEFAULT_CLASSES)
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise VadblocksError("train_input.json `classes` must be a list of class names")
    for name in EI_FILES[:2]:
        if not (root / name).exists():
            raise VadblocksError(
                f"{root / name} is missing: an Edge Impulse data directory needs "
                "X_split_train.npy and Y_split_train.npy"
            )
    splits = {}
    channels = 3
    for split in ("train", "test"):
        xp, yp = root / f"X_split_{split}.npy", root / f"Y_split_{split}.npy"
        if split == "test" and not xp.exists() and not yp.exists():
            splits[split] = None
            continue
        for p in (xp, yp):
            if not p.exists():
                raise VadblocksError(f"{p} is missing (the X and Y files of a split come together)")
        x_raw = _load_npy(xp)
        images, ch = _images_from_x(x_raw, xp, shape, scaling)
        check_image_size(images.shape[1], images.shape[2], str(xp))
        if split == "train":
            channels = ch
            if len(images) == 0:
                raise VadblocksError(f"{xp} holds no samples: training needs at least one normal image")
            shape = shape or (images.shape[1], images.shape[2], ch)
        labels = _labels_from_y(_load_npy(yp), yp, len(images), classes)
        unknown = sorted({lab for lab in labels if lab not in (LABEL_ANOMALY, LABEL_NORMAL)})
        if split == "train":
            n_anom = labels.count(LABEL_ANOMALY)
            if n_anom:
                raise VadblocksError(
                    f"{yp}: {n_anom} training sample(s) are labelled {LABEL_ANOMALY!r}; "
                    "anomaly detection trains on normal samples only"
                )
        elif unknown:
            raise VadblocksError(f"{yp}: test labels must be {LABEL_ANOMALY!r} or {LABEL_NORMAL!r}; found {unknown}")
        splits[split] = Split(
            images,
            np.array([lab == LABEL_ANOMALY for lab in labels], dtype=bool),
            [f"{split}/{i}" for i in range(len(images))],
        )
    train = splits["train"]
    test = splits["test"]
    if test is None:
        test = _empty_split(train.images.shape[1:3])
    elif len(test) and test.images.shape[1:] != train.images.shape[1:]:
        raise VadblocksError(
            f"inconsistent image sizes: X_split_train.npy images are {train.images.shape[1:3]} "
            f"but X_split_test.npy images are {test.images.shape[1:3]}"
        )
    return Dataset(train, test, str(root), "edge-impulse", channels=channels, scaling=scaling, extra=info)


def _empty_split(hw: Sequence[int]) -> Split:
    return Split(np.zeros((0, hw[0], hw[1], 3), np.float32), np.zeros(0, bool), [])


# --- folder layout ---------------------------------------------------------------------------


def load_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) float32 in 0..1, resized to ``size`` x ``size`` if given."""
    return read_image(Path(path), size)[0]


class ImageTooLarge(VadblocksError):
    """An image whose header states more pixels than the caller accepts (``read_image``'s ``max_pixels``)."""


def read_image(
    source: Path | BinaryIO,
    size: int | tuple[int, int] | None = None,
    name: str | None = None,
    max_pixels: int | None = None,
    draft: bool = False,
) -> tuple[np.ndarray, tuple[int, int]]:
    """An image file or stream as (H, W, 3) float32 in 0..1 (resized, bilinear, to ``size`` x ``size``
    or to ``size`` = (width, height) if given) and its original (width, height). ``name`` names a
    stream in error messages.

    ``max_pixels``: images whose header states more pixels are refused (:class:`ImageTooLarge`) before
    anything is decoded. ``draft``: JPEGs larger than ``size`` are decoded at a reduced scale (1/2 to
    1/8, still at least ``size``), which takes up to 64x less memory and time. Only non-RGB images are
    converted (a copy); RGB ones are resized as decoded.
    """
    label = name or str(source)
    target = (size, size) if isinstance(size, int) else size
    try:
        with Image.open(source) as im:
            original = im.size
            if max_pixels is not None and original[0] * original[1] > max_pixels:
                raise ImageTooLarge(
                    f"image {label} is {original[0]}x{original[1]} = {original[0] * original[1]:,} pixels, "
                    f"over the limit of {max_pixels:,} (--max-pixels); send a smaller image"
                )
            if draft and target and im.format == "JPEG":
                im.draft("RGB", tuple(target))
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            if target and rgb.size != tuple(target):
                rgb = rgb.resize(tuple(target), Image.Resampling.BILINEAR)
            arr = np.asarray(rgb, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise VadblocksError(f"image {label} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise VadblocksError(f"image {label} is corrupt or not an image ({exc}); remove or replace it") from None
    return arr, original


def _load_mask(path: Path, hw: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            if im.size != (hw[1], hw[0]):
                im = im.resize((hw[1], hw[0]), Image.Resampling.NEAREST)
            return np.asarray(im) > 0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise VadblocksError(f"mask {path} is corrupt or not an image ({exc})") from None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _stack(paths: list[Path], root: Path, size: int | None) -> np.ndarray:
    if size and len(paths) * size * size * 12 > MAX_SPLIT_BYTES:
        raise VadblocksError(
            f"{root}: {len(paths):,} images of {size}x{size} need "
            f"{len(paths) * size * size * 12 / 2**30:.1f} GiB as float32, over the "
            f"{MAX_SPLIT_BYTES >> 30} GiB limit; use fewer or smaller images"
        )
    arrays = []
    for p in paths:
        arrays.append(load_image(p, size))
        check_image_size(arrays[0].shape[0], arrays[0].shape[1], str(p))
        if len(arrays) * arrays[0].nbytes > MAX_SPLIT_BYTES:
            raise VadblocksError(
                f"{root}: {len(paths):,} images of {arrays[0].shape[1]}x{arrays[0].shape[0]} "
                f"exceed the {MAX_SPLIT_BYTES >> 30} GiB limit as float32; pass --image-size"
            )
    if size is None and arrays:
        first = arrays[0].shape
        for p, a in zip(paths, arrays):
            if a.shape != first:
                raise VadblocksError(
                    f"inconsistent image sizes: {paths[0].relative_to(root)} is {first[1]}x{first[0]} but "
                    f"{p.relative_to(root)} is {a.shape[1]}x{a.shape[0]}; pass --image-size to resize all"
                )
    if not arrays:
        return np.zeros((0, size or 1, size or 1, 3), np.float32)
    return np.stack(arrays)


def load_folder(root: Path, image_size: int | None = None) -> Dataset:
    """Load ``train/good``, ``test/<good|defect>`` and optional ``ground_truth/<defect>/<name>_mask.png``."""
    good = root / "train" / "good"
    if not good.is_dir():
        raise VadblocksError(f"{good} is missing: a folder layout needs train/good/ with normal images")
    train_paths = _image_files(good)
    if not train_paths:
        raise VadblocksError(f"{good} holds no images (.png/.jpg/...): training needs at least one normal image")
    test_dir = root / "test"
    test_paths: list[Path] = []
    labels: list[bool] = []
    if test_dir.is_dir():
        for sub in sorted(d for d in test_dir.iterdir() if d.is_dir()):
            files = _image_files(sub)
            test_paths += files
            labels += [sub.name != "good"] * len(files)
    all_images = _stack(train_paths + test_paths, root, image_size)
    train_images, test_images = all_images[: len(train_paths)], all_images[len(train_paths) :]
    hw = train_images.shape[1:3]
    if not len(test_images):
        test_images = np.zeros((0, hw[0], hw[1], 3), np.float32)
    masks = np.zeros((len(test_paths), hw[0], hw[1]), bool)
    has_mask = np.zeros(len(test_paths), bool)
    gt = root / "ground_truth"
    for i, (p, anomalous) in enumerate(zip(test_paths, labels)):
        if not anomalous:
            has_mask[i] = True
            continue
        mp = gt / p.parent.name / f"{p.stem}_mask.png"
        if mp.exists():
            masks[i] = _load_mask(mp, hw)
            has_mask[i] = True
    any_defect_mask = bool(has_mask[np.array(labels, bool)].any()) if labels else False
    test = Split(
        test_images,
        np.array(labels, bool),
        [str(p.relative_to(root)) for p in test_paths],
        masks if any_defect_mask else None,
        has_mask if any_defect_mask else None,
    )
    train = Split(train_images, np.zeros(len(train_paths), bool), [str(p.relative_to(root)) for p in train_paths])
    return Dataset(train, test, str(root), "folder")


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a (N, H, W, 3) float batch to ``size`` x ``size`` (bilinear, antialiased)."""
    if images.shape[1:3] == (size, size) or not len(images):
        return images if len(images) else np.zeros((0, size, size, 3), np.float32)
    import torch  # on use: reading data and serving models need no torch
    import torch.nn.functional as F

    t = torch.from_numpy(images).permute(0, 3, 1, 2)
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return np.ascontiguousarray(t.permute(0, 2, 3, 1).clamp(0, 1).numpy())

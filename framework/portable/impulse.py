"""An exported vadblocks model file (:class:`ExportedModel`) and Edge Impulse's Linux runner protocol (``.eim``).

``ExportedModel`` is the one way to run an exported file: ``open_runtime``, the Python API, ``vadblocks
serve`` and the .eim all use it.

Edge Impulse's Linux SDKs (Python ``edge_impulse_linux``, Node ``edge-impulse-linux``,
``edge-impulse-linux-runner``) start a model file as ``model.eim SOCKET_PATH`` and talk JSON over
that UNIX socket: each request is one JSON object with an ``id``; each answer carries the same
``id`` and ``success`` and ends with a NUL byte. Requests: ``hello``, ``classify`` (one packed
0xRRGGBB number per pixel), ``classify_shm`` (the same numbers as float32 in the POSIX shared
memory announced by ``hello``), ``set_threshold``. Results use the visual anomaly shape
(``visual_anomaly_grid`` cells above the threshold, ``visual_anomaly_max``, ``visual_anomaly_mean``).

Needs numpy and one runtime; ``vadblocks eim`` packs this package and a model into one file.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socketserver
import sys
import threading
import time
import zipfile
from typing import Any

import numpy as np

from .engines import SCALINGS, Engine, load_engine, to_input_scaling
from .errors import ServingError
from .formats import RUNTIME_FILES
from .framing import ID_PATTERN, answer_requests, serve_unavailable
from .modelfiles import METADATA_FILE, check_model_dir, engine_shapes, read_metadata, verify_bytes

LABELS = ["anomaly", "no anomaly"]
HAS_ANOMALY = {"gmm": 3, "patchcore": 4}  # Edge Impulse's VisualGMM / VisualPatchcore; others VisualCustom
HAS_ANOMALY_CUSTOM = 6
ENGINE_IDS = {"tflite": 4, "tflite-int8": 4, "tflm": 4, "onnx": 255}  # TfliteFull; ONNX has no id of its own (None)
SENSOR_CAMERA = 3
THRESHOLD_ID = 1  # the learn block whose threshold `set_threshold` changes
RESIZE_MODE = "squash"  # how vadblocks resizes images to the model's input (predict, folder layouts)


def cell_boxes(gh: int, gw: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Pixel box (x, y, w, h) of each grid cell, row-major: the input split evenly into gh x gw cells."""
    xs = [round(c * width / gw) for c in range(gw + 1)]
    ys = [round(r * height / gh) for r in range(gh + 1)]
    return [(xs[c], ys[r], xs[c + 1] - xs[c], ys[r + 1] - ys[r]) for r in range(gh) for c in range(gw)]


def anomaly_result(grid: np.ndarray, score: float, threshold: float, height: int, width: int) -> dict[str, Any]:
    """Edge Impulse's visual anomaly result of one image: the cells above ``threshold``, max, mean, score."""
    grid = np.asarray(grid, dtype=np.float64).reshape(grid.shape[-2:])
    gh, gw = grid.shape
    cells = [
        {"label": "anomaly", "value": float(v), "x": x, "y": y, "width": w, "height": h}
        for v, (x, y, w, h) in zip(grid.reshape(-1), cell_boxes(gh, gw, height, width))
        if v > threshold
    ]
    return {
        "anomaly": float(score),
        "visual_anomaly_grid": cells,
        "visual_anomaly_max": float(grid.max()),
        "visual_anomaly_mean": float(grid.mean()),
    }


class ExportedModel:
    """The one front door to an exported model file and its metadata.

    ``predict`` runs images (as :func:`~framework.serve.runtimes.open_runtime` and the Python API do);
    ``hello``, ``classify`` and ``set_threshold`` answer Edge Impulse runner requests (.eim, HTTP).
    """

    def __init__(self, meta: dict[str, Any], engine: Engine, fmt: str) -> None:
        """``meta``: the model's metadata as :func:`read_metadata` returns it (checked)."""
        self.height, self.width, self.channels = (int(v) for v in meta["inputShape"])
        self.threshold = float(meta["nominalThresholdScore"])
        self.scaling = meta.get("imageInputScaling", "0..1")
        self.lo, self.hi = SCALINGS[self.scaling]
        self.meta, self.engine, self.fmt = meta, engine, fmt
        self.lock = threading.Lock()

    @classmethod
    def from_directory(
        cls,
        model_dir: str | os.PathLike[str],
        fmt: str = "tflite",
        threads: int = 1,
        meta: dict[str, Any] | None = None,
    ) -> "ExportedModel":
        """Open ``fmt``'s file of a vadblocks model directory (``meta``: its checked metadata, if already read)."""
        meta = meta if meta is not None else check_model_dir(model_dir)
        if fmt not in RUNTIME_FILES:
            raise ServingError(f"unknown model format {fmt!r}; choose from {', '.join(RUNTIME_FILES)}")
        path = os.path.join(model_dir, RUNTIME_FILES[fmt])
        if not os.path.isfile(path):
            raise ServingError(f"{path} does not exist: train with --export including {fmt}")
        return cls(meta, load_engine(fmt, path, threads, **engine_shapes(meta)), fmt)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grids (N, G, G) and scores (N,) for 0..1 RGB images (N, H, W, 3), one at a time as on a device."""
        x = to_input_scaling(images, self.scaling, self.channels)
        with self.lock:
            grids, scores = zip(*(self.engine.run_one(x[i : i + 1]) for i in range(len(x))))
        return np.concatenate(grids), np.concatenate(scores)

    @property
    def features_count(self) -> int:
        return self.width * self.height

    def hello(self) -> dict[str, Any]:
        """The ``hello`` answer: model parameters, project, inferencing engine."""
        scorer = str(self.meta.get("scorer", ""))
        return {
            "model_parameters": {
                "axis_count": 1,
                "frequency": 0,
                "has_anomaly": HAS_ANOMALY.get(scorer, HAS_ANOMALY_CUSTOM),
                "has_object_tracking": False,
                "has_performance_calibration": False,
                "image_channel_count": self.channels,
                "image_input_frames": 1,
                "image_input_height": self.height,
                "image_input_width": self.width,
                "image_resize_mode": RESIZE_MODE,
                "inferencing_engine": ENGINE_IDS[self.fmt],
                "input_features_count": self.features_count,
                "interval_ms": 1,
                "label_count": len(LABELS),
                "labels": list(LABELS),
                "model_type": "classification",
                "sensor": SENSOR_CAMERA,
                "slice_size": 1,
                "use_continuous_mode": False,
                "thresholds": [
                    {"id": THRESHOLD_ID, "type": f"anomaly_{scorer or 'custom'}", "min_anomaly_score": self.threshold}
                ],
            },
            "project": {
                "id": 0,
                "name": f"vadblocks {scorer} on {self.meta.get('backbone', '?')}",
                "owner": "vadblocks",
                "deploy_version": 1,
            },
            "inferencing_engine": {"inferencing_engine": ENGINE_IDS[self.fmt], "properties": [self.fmt]},
        }

    def image_from_features(self, features: Any) -> np.ndarray:
        """Packed 0xRRGGBB pixels (``get_features_from_image``) -> the model input (1, H, W, C)."""
        try:
            v = np.asarray(features, dtype=np.float64)
        except (TypeError, ValueError):
            raise ServingError("features must be a list of numbers (one 0xRRGGBB value per pixel)") from None
        if v.ndim != 1 or len(v) != self.features_count:
            raise ServingError(
                f"expected {self.features_count} features ({self.width}x{self.height} pixels, one "
                f"0xRRGGBB value each), got {v.size if v.ndim == 1 else 'shape ' + str(v.shape)}"
            )
        if not np.isfinite(v).all() or v.min() < 0 or v.max() > 0xFFFFFF:
            raise ServingError("features must be finite packed pixels between 0 and 16777215 (0xFFFFFF)")
        p = np.rint(v).astype(np.int64)
        rgb = np.stack([(p >> 16) & 255, (p >> 8) & 255, p & 255], axis=-1).astype(np.float32) / 255.0
        if self.channels == 1:  # Edge Impulse's luminance for grayscale models
            rgb = (rgb @ np.array([0.299, 0.587, 0.114], np.float32))[:, None]
        x = self.lo + rgb * (self.hi - self.lo)
        return np.ascontiguousarray(x.reshape(1, self.height, self.width, self.channels), dtype=np.float32)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Model input -> (grid (G, G), image score, milliseconds)."""
        t0 = time.perf_counter()
        with self.lock:
            grid, score = self.engine.run_one(x)
        return grid[0], float(score.reshape(-1)[0]), (time.perf_counter() - t0) * 1000.0

    def classify(self, features: Any) -> dict[str, Any]:
        """The ``classify`` answer for packed pixel features: result and timing."""
        t0 = time.perf_counter()
        x = self.image_from_features(features)
        t1 = time.perf_counter()
        grid, score, ms = self.run(x)
        dsp_ms = (t1 - t0) * 1000.0
        return {
            "result": anomaly_result(grid, score, self.threshold, self.height, self.width),
            "timing": {
                "dsp": int(dsp_ms),
                "classification": int(ms),
                "anomaly": 0,
                "json": 0,
                "stdin": 0,
                "dsp_us": int(dsp_ms * 1000),
                "classification_us": int(ms * 1000),
                "anomaly_us": 0,
            },
        }

    def set_threshold(self, request: Any) -> dict[str, Any]:
        """The ``set_threshold`` answer: ``{"id": 1, "min_anomaly_score": T}`` changes the threshold."""
        if not isinstance(request, dict) or request.get("id") != THRESHOLD_ID:
            raise ServingError(f"set_threshold needs the threshold id {THRESHOLD_ID} (see hello's thresholds)")
        value = request.get("min_anomaly_score")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ServingError("set_threshold needs a finite number min_anomaly_score")
        self.threshold = float(value)
        return {}


# --- the socket protocol -----------------------------------------------------------------------------


class Protocol:
    """Answers runner requests for one :class:`ExportedModel` (shared by all connections)."""

    def __init__(self, model: ExportedModel) -> None:
        self.model = model
        self.shm: Any = None
        self.shm_error: str | None = None

    def open_shared_memory(self) -> None:
        """Create the POSIX shared memory that ``classify_shm`` reads (one float32 per feature)."""
        try:
            from multiprocessing import shared_memory

            name = f"vadblocks-eim-{os.getpid()}-{os.urandom(4).hex()}"
            self.shm = shared_memory.SharedMemory(name=name, create=True, size=4 * self.model.features_count)
        except Exception as exc:  # noqa: BLE001 - no /dev/shm, permissions: fall back to the socket
            self.shm, self.shm_error = None, f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self.shm is not None:
            self.shm.close()
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass
            self.shm = None

    def hello(self) -> dict[str, Any]:
        out = self.model.hello()
        if self.shm is not None:
            out["features_shm"] = {
                "name": "/" + self.shm.name,
                "size_bytes": self.shm.size,
                "type": "float32",
                "elements": self.model.features_count,
            }
        elif self.shm_error:
            out["features_shm_error"] = self.shm_error
        return out

    def classify_shm(self, request: Any) -> dict[str, Any]:
        if self.shm is None:
            raise ServingError("this runner has no shared memory; send classify with the features")
        n = request.get("elements") if isinstance(request, dict) else None
        if not isinstance(n, int) or isinstance(n, bool) or n != self.model.features_count:
            raise ServingError(f"classify_shm expects elements = {self.model.features_count}, got {n!r}")
        features = np.ndarray((n,), dtype=np.float32, buffer=self.shm.buf).copy()
        return self.model.classify(features)

    def answer(self, raw: bytes) -> bytes:
        """One request (bytes of a JSON object) -> the NUL-terminated answer."""
        m = ID_PATTERN.search(raw)
        rid: Any = int(m.group(1)) if m else None
        try:
            try:
                msg = json.loads(raw)
            except ValueError as exc:
                raise ServingError(f"request is not valid JSON: {exc}") from None
            if not isinstance(msg, dict):
                raise ServingError("request must be a JSON object")
            rid = msg.get("id", rid)
            if "hello" in msg:
                body = self.hello()
            elif "classify" in msg:
                body = self.model.classify(msg["classify"])
            elif "classify_shm" in msg:
                body = self.classify_shm(msg["classify_shm"])
            elif "set_threshold" in msg:
                body = self.model.set_threshold(msg["set_threshold"])
            elif "classify_continuous" in msg or "classify_continuous_shm" in msg:
                raise ServingError("continuous classification is not supported by image models")
            else:
                raise ServingError("unknown request; expected hello, classify, classify_shm or set_threshold")
            out = {"id": rid, "success": True, **body}
        except ServingError as exc:
            # the SDKs find the end of an answer by counting braces, so none may appear in the text
            text = str(exc).replace("{", "(").replace("}", ")")
            out = {"id": rid, "success": False, "error": text}
        return json.dumps(out, separators=(",", ":")).encode() + b"\0"


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        answer_requests(self.request, self.server.protocol.answer)


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    protocol: Protocol


def serve_socket(model: ExportedModel, socket_path: str) -> None:
    """Serve ``model`` on a UNIX socket until SIGINT/SIGTERM/SIGHUP; removes the socket and shared memory."""
    protocol = Protocol(model)
    protocol.open_shared_memory()
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server = _Server(socket_path, _Handler)
    server.protocol = protocol

    def stop(signum: int, frame: Any) -> None:
        protocol.close()
        try:
            os.unlink(socket_path)
        except OSError:
            pass
        os._exit(0)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        server.serve_forever()
    finally:
        protocol.close()


# --- the .eim file ----------------------------------------------------------------------------------

EIM_MANIFEST = "eim.json"


def open_packed(archive: str, threads: int = 1) -> ExportedModel:
    """The model packed into a .eim (a zip application): manifest, metadata and model file."""
    with zipfile.ZipFile(archive) as z:
        manifest = json.loads(z.read(EIM_MANIFEST))
        meta = read_metadata(archive, z.read(METADATA_FILE))
        model_bytes = z.read(manifest["file"])
    verify_bytes(manifest["file"], model_bytes, meta)
    fmt = manifest["format"]
    return ExportedModel(meta, load_engine(fmt, model_bytes, threads, **engine_shapes(meta)), fmt)


def eim_main(archive: str, argv: list[str]) -> int:
    """Entry point of a packed .eim: ``model.eim SOCKET_PATH``. A model that cannot be opened is reported on
    stderr and, as the error of every request, on the socket (an SDK waiting for it sees why)."""
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: model.eim SOCKET_PATH   (Edge Impulse Linux runner protocol over a UNIX socket)", file=sys.stderr)
        return 2
    try:
        model = open_packed(archive, int(os.environ.get("VADBLOCKS_THREADS", "1")))
    except (ServingError, OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        serve_unavailable(argv[0], f"cannot open the model packed in {archive}: {exc}")
        return 2
    serve_socket(model, argv[0])
    return 0

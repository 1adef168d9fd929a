"""``vadblocks serve``: the HTTP API of ``edge-impulse-linux-runner`` in front of a model directory.

``GET /api/info``, ``POST /api/image`` (multipart ``file``; grid coordinates mapped back to the
uploaded image's size), ``POST /api/features`` (``{"features": [...]}``, packed 0xRRGGBB pixels), and
``GET /`` (a page to upload an image and see its grid). Bad requests get the runner's 400 text
answers. Runs the exported file through :mod:`framework.portable` (no torch).
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from framework.data import read_image
from framework.errors import VadblocksError
from framework.portable.engines import to_input_scaling
from framework.portable.impulse import RESIZE_MODE, ImpulseModel, anomaly_result

MAX_BODY_BYTES = 100 * 1024 * 1024  # the runner's multer limit
PAGE = Path(__file__).with_name("serve_page.html")


class BadRequest(Exception):
    """A request the runner answers with 400 and this text."""


def info(model: ImpulseModel) -> dict[str, Any]:
    """``GET /api/info``: project and model parameters, as the runner shows them."""
    hello = model.hello()
    return {
        "project": hello["project"],
        "modelParameters": {"has_visual_anomaly_detection": True, **hello["model_parameters"]},
    }


def classify_features(model: ImpulseModel, body: bytes, content_type: str) -> dict[str, Any]:
    """``POST /api/features``: validate like the runner, then classify."""
    if not body:
        raise BadRequest('Missing body on request. Did you set "Content-Type: application/json" ?')
    data: Any = {}
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise BadRequest(f"Body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "features" not in data or data["features"] in (None, 0, "", False):
        raise BadRequest('Missing "features" on body')
    features = data["features"]
    if not isinstance(features, list):
        raise BadRequest('"features" on body is not an array')
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in features):
        raise BadRequest('Not every element of the "features" array is a number')
    if len(features) != model.features_count:
        raise BadRequest(f"Expected {model.features_count} features, but received {len(features)}")
    try:
        return model.classify(features)
    except VadblocksError as exc:
        raise BadRequest(str(exc)) from None


def _multipart_file(body: bytes, content_type: str) -> bytes:
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadRequest('No files posted, requiring a multipart/form-data body with 1 item "file"')
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = list(msg.iter_parts()) if msg.is_multipart() else []
    files = [p for p in parts if p.get_filename() is not None or p.get_param("filename", header="content-disposition")]
    if not files:
        raise BadRequest('No files posted, requiring a multipart/form-data body with 1 item "file"')
    for part in files:
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True) or b""
    raise BadRequest('Missing "file" in the multipart/form-data')


def classify_image(model: ImpulseModel, body: bytes, content_type: str) -> dict[str, Any]:
    """``POST /api/image``: decode, squash to the model's input, classify, map cells to the upload's size."""
    data = _multipart_file(body, content_type)
    try:
        img, (ow, oh) = read_image(io.BytesIO(data), (model.width, model.height), name="in the upload")
    except VadblocksError as exc:
        raise BadRequest(str(exc)) from None
    x = to_input_scaling(img[None], model.meta.get("imageInputScaling", "0..1"), model.channels)
    grid, score, ms = model.run(x)
    result = anomaly_result(grid, score, model.threshold, model.height, model.width)
    sx, sy = ow / model.width, oh / model.height
    for cell in result["visual_anomaly_grid"]:
        x0, y0 = round(cell["x"] * sx), round(cell["y"] * sy)
        cell.update(
            x=x0,
            y=y0,
            width=round((cell["x"] + cell["width"]) * sx) - x0,
            height=round((cell["y"] + cell["height"]) * sy) - y0,
        )
    result["resizeMode"] = RESIZE_MODE
    result["resized"] = {"originalWidth": ow, "originalHeight": oh, "newWidth": model.width, "newHeight": model.height}
    return {
        "result": result,
        "timing": {"dsp": 0, "classification": int(ms), "anomaly": 0, "classification_us": int(ms * 1000)},
    }


def make_handler(model: ImpulseModel) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``model``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "vadblocks"

        def log_message(self, fmt: str, *args: Any) -> None:  # one line per request on stderr
            super().log_message(fmt, *args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj: Any) -> None:
            self._send(200, (json.dumps(obj, indent=4) + "\n").encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?")[0]
            if path == "/api/info":
                self._json(info(model))
            elif path == "/":
                self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
            else:
                self._send(404, b"Not found\n", "text/plain")

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            routes: dict[str, Callable[[ImpulseModel, bytes, str], dict[str, Any]]] = {
                "/api/features": classify_features,
                "/api/image": classify_image,
            }
            if path not in routes:
                self._send(404, b"Not found\n", "text/plain")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(400, b"Content-Length is missing or over 100 MB", "text/plain")
                return
            body = self.rfile.read(length)
            try:
                self._json(routes[path](model, body, self.headers.get("Content-Type", "")))
            except BadRequest as exc:
                self._send(400, str(exc).encode(), "text/plain")

    return Handler


def make_server(model: ImpulseModel, host: str = "127.0.0.1", port: int = 1337) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``model`` (not yet serving); port 0 picks a free port."""
    try:
        server = ThreadingHTTPServer((host, port), make_handler(model))
    except OSError as exc:
        raise VadblocksError(f"cannot listen on {host}:{port}: {exc}") from None
    server.daemon_threads = True
    return server

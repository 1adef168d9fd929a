"""``vadblocks serve``: the HTTP API of ``edge-impulse-linux-runner`` in front of a model directory.

``GET /api/info``, ``POST /api/image`` (multipart ``file``; grid coordinates mapped back to the
uploaded image's size), ``POST /api/features`` (``{"features": [...]}``, packed 0xRRGGBB pixels), and
``GET /`` (a page to upload an image and see its grid). Bad requests get the runner's 400 text
answers. Runs the exported file through :mod:`framework.portable` (no torch).

Built for hostile clients on small devices (docs/contract.md, "vadblocks serve"): one asyncio event
loop reads every connection (a stalled connection costs a few kilobytes, never a thread), with a
deadline for its headers and one for its body; bodies are read only after their declared length is
checked against the route's limit and reserved from a fixed budget; images are checked against
``max_pixels`` from their header before decoding; decoding and inference run in a pool of
``workers`` threads behind a queue of ``queue`` requests, and beyond them the answer is an immediate
503 with ``Retry-After``. :func:`memory_bound` states what all this holds the process to.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import re
import resource
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from framework.data import ImageTooLarge, read_image
from framework.errors import VadblocksError
from framework.portable.engines import to_input_scaling
from framework.portable.impulse import RESIZE_MODE, ExportedModel, anomaly_result
from framework.serve.limits import LINGER_S, MAX_PIXELS, Limits, memory_bound

PAGE = Path(__file__).with_name("serve_page.html")
STATUS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class BadRequest(Exception):
    """A request the runner answers with 400 and this text."""


class TooLarge(BadRequest):
    """A request answered with 413 and this text (an image over ``max_pixels``)."""


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def info(model: ExportedModel) -> dict[str, Any]:
    """``GET /api/info``: project and model parameters, as the runner shows them."""
    hello = model.hello()
    return {
        "project": hello["project"],
        "modelParameters": {"has_visual_anomaly_detection": True, **hello["model_parameters"]},
    }


def classify_features(model: ExportedModel, body: bytes, content_type: str) -> dict[str, Any]:
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
    """The ``file`` part of a multipart/form-data body (RFC 7578), without copying the other parts."""
    ctype = content_type.lower()
    match = re.search(r'boundary=(?:"([^"]+)"|([^;,\s]+))', content_type, re.I)
    if not ctype.startswith("multipart/form-data") or not match:
        raise BadRequest('No files posted, requiring a multipart/form-data body with 1 item "file"')
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    files, pos = {}, body.find(delimiter)
    while pos >= 0:
        start = pos + len(delimiter)
        if body[start : start + 2] == b"--":
            break
        head_end = body.find(b"\r\n\r\n", start)
        end = body.find(b"\r\n" + delimiter, head_end + 4) if head_end >= 0 else -1
        if end < 0:
            break
        disposition = re.search(rb"content-disposition:([^\r\n]*)", body[start:head_end], re.I)
        params = dict(re.findall(r'(\w+)="([^"]*)"', disposition.group(1).decode("latin-1"))) if disposition else {}
        if "filename" in params:
            files.setdefault(params.get("name", ""), (head_end + 4, end))
        pos = end + 2
    if not files:
        raise BadRequest('No files posted, requiring a multipart/form-data body with 1 item "file"')
    if "file" not in files:
        raise BadRequest('Missing "file" in the multipart/form-data')
    a, b = files["file"]
    return bytes(memoryview(body)[a:b])


def classify_image(
    model: ExportedModel, body: bytes, content_type: str, max_pixels: int = MAX_PIXELS
) -> dict[str, Any]:
    """``POST /api/image``: decode (refusing images over ``max_pixels`` before decoding; large JPEGs
    decoded reduced), squash to the model's input, classify, map cells to the upload's size."""
    data = _multipart_file(body, content_type)
    try:
        img, (ow, oh) = read_image(
            io.BytesIO(data), (model.width, model.height), "in the upload", max_pixels=max_pixels, draft=True
        )
    except ImageTooLarge as exc:
        raise TooLarge(str(exc)) from None
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


class HttpServer:
    """``model`` served over HTTP within ``limits``; :meth:`serve_forever` runs until SIGINT/SIGTERM/SIGHUP
    or :meth:`stop`. Port 0 picks a free port (see ``server_address``)."""

    def __init__(self, model: ExportedModel, host: str = "127.0.0.1", port: int = 1337, limits: Limits | None = None):
        self.model, self.limits = model, limits or Limits()
        self.loop = asyncio.new_event_loop()
        self.pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="vadblocks-serve")
        _mmap_large_allocations()
        started = threading.Barrier(self.limits.workers)  # every worker started now: a fixed thread count
        list(self.pool.map(lambda _: started.wait(), range(self.limits.workers)))
        self.connections = 0
        self.busy = 0  # requests with a worker or waiting for one
        self.budget = self.limits.body_budget_bytes
        self._tasks: set[asyncio.Task] = set()
        self._stopped = asyncio.Event()
        self.routes: dict[str, Callable[[bytes, str], dict[str, Any]]] = {
            "/api/features": lambda body, ctype: classify_features(model, body, ctype),
            "/api/image": lambda body, ctype: classify_image(model, body, ctype, self.limits.max_pixels),
        }
        _raise_fd_limit(self.limits.max_connections + 64)
        try:
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._connection, host, port, limit=self.limits.max_header_bytes, backlog=512)
            )
        except OSError as exc:
            self.loop.close()
            raise VadblocksError(f"cannot listen on {host}:{port}: {exc}") from None
        self.server_address = self.server.sockets[0].getsockname()[:2]
        self.base_bytes = resident_bytes()

    @property
    def memory_bound(self) -> int:
        """:func:`memory_bound` for this server's limits and the memory it held once the model was loaded."""
        return memory_bound(self.limits, self.base_bytes)

    def serve_forever(self) -> None:
        """Serve until a signal or :meth:`stop`; then close every connection and the workers."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self.loop.add_signal_handler(sig, self._stopped.set)
        try:
            self.loop.run_until_complete(self._stopped.wait())
        finally:
            self.close()

    def stop(self) -> None:
        """Ask :meth:`serve_forever` to return (from any thread)."""
        self.loop.call_soon_threadsafe(self._stopped.set)

    def close(self) -> None:
        """Stop listening, drop every connection, cancel queued work (running work finishes in its thread)."""
        if self.loop.is_closed():
            return
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            if self.connections > self.limits.max_connections:
                await self._answer(writer, 503, b"Too many open connections; retry later\n", close=True, retry=True)
                return  # no lingering: a flood of connections is dropped at once
            while await self._request(reader, writer):
                pass
            await self._linger(reader, writer)
        except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self.connections -= 1
            self._tasks.discard(task)
            writer.transport.abort()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Close after an answer sent before the body was read: stop writing, then read and drop what the
        client still sends (up to ``LINGER_S``), so that closing does not reset the connection before
        the client has read the answer."""
        if writer.can_write_eof():
            writer.write_eof()
        try:
            async with asyncio.timeout(LINGER_S):
                while await reader.read(1 << 16):
                    pass
        except (TimeoutError, ConnectionError):
            pass

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read and answer one request; False when the connection is to be closed."""
        limits = self.limits
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), limits.header_timeout_s)
        except asyncio.LimitOverrunError:
            text = f"Request line and headers are over {limits.max_header_bytes:,} bytes\n"
            await self._answer(writer, 431, text.encode(), close=True)
            return False
        except (asyncio.TimeoutError, asyncio.IncompleteReadError):
            return False  # a stalled or closed connection: dropped without an answer
        try:
            method, target, version, headers = _parse_head(head)
        except ValueError as exc:
            await self._answer(writer, 400, f"{exc}\n".encode(), close=True)
            return False
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        path = target.split("?")[0]
        if method == "GET":
            if path == "/api/info":
                await self._answer(writer, 200, _json_bytes(info(self.model)), "application/json", close=not keep)
            elif path == "/":
                await self._answer(writer, 200, PAGE.read_bytes(), "text/html; charset=utf-8", close=not keep)
            else:
                await self._answer(writer, 404, b"Not found\n", close=not keep)
            return keep
        if method != "POST" or path not in self.routes:
            await self._answer(writer, 404 if method == "POST" else 405, b"Not found\n", close=True)
            return False
        if "transfer-encoding" in headers:
            await self._answer(writer, 411, b"Send the body with a Content-Length (no chunked encoding)\n", close=True)
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        # a features body longer than the model's pixels written out in full is not one
        most = (
            limits.max_body_bytes
            if path == "/api/image"
            else min(limits.max_body_bytes, 32 * self.model.features_count + 4096)
        )
        if length < 0 or length > most:
            text = f"Content-Length {headers.get('content-length')!r} is not a number from 0 to {most:,} bytes"
            await self._answer(writer, 413 if length > most else 400, f"{text}\n".encode(), close=True)
            return False
        reserve = 2 * length  # the body and the file cut from it
        if reserve > self.budget or self.busy >= limits.workers + limits.queue:
            await self._answer(
                writer, 503, b"Busy: every worker and queue place is taken; retry later\n", close=True, retry=True
            )
            return False
        self.budget -= reserve
        self.busy += 1
        try:
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            deadline = limits.header_timeout_s + length / limits.body_rate_bytes_s
            try:
                body = await asyncio.wait_for(_read_body(reader, length), deadline)
            except asyncio.TimeoutError:
                await self._answer(writer, 408, b"The body did not arrive in time\n", close=True)
                return False
            try:
                result = await self.loop.run_in_executor(
                    self.pool, self.routes[path], body, headers.get("content-type", "")
                )
            except TooLarge as exc:
                await self._answer(writer, 413, str(exc).encode(), close=not keep)
            except BadRequest as exc:
                await self._answer(writer, 400, str(exc).encode(), close=not keep)
            else:
                await self._answer(writer, 200, _json_bytes(result), "application/json", close=not keep)
        finally:
            self.budget += reserve
            self.busy -= 1
            if not self.busy:  # the storm is over: give freed heap pages back
                _trim_heap()
        return keep

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        ctype: str = "text/plain",
        close: bool = False,
        retry: bool = False,
    ) -> None:
        head = [
            f"HTTP/1.1 {status} {STATUS[status]}",
            "Server: vadblocks",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(body)}",
        ]
        if retry:
            head.append("Retry-After: 1")
        if close:
            head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await asyncio.wait_for(writer.drain(), self.limits.header_timeout_s)


async def _read_body(reader: asyncio.StreamReader, length: int) -> bytearray:
    """``length`` bytes read into one buffer (no second copy of the whole body)."""
    buf = bytearray(length)
    view, got = memoryview(buf), 0
    while got < length:
        chunk = await reader.read(min(1 << 20, length - got))
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(view[:got]), length)
        view[got : got + len(chunk)] = chunk
        got += len(chunk)
    del view
    return buf


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"Bad request line {lines[0][:100]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"Bad header line {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=4) + "\n").encode()


@functools.cache
def _libc() -> Any:
    """glibc, loaded once (``find_library`` runs ldconfig); None elsewhere."""
    import ctypes
    import ctypes.util

    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


def _mmap_large_allocations() -> None:
    """glibc: allocations of 1 MiB and more (decoded images, bodies) always get their own mapping, which
    is returned to the system when freed (by default the threshold grows to 32 MiB after the first
    large free, and decoded images then stay in the heap)."""
    lib = _libc()
    if lib is not None:
        lib.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD


def _trim_heap() -> None:
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted, hard)
        )


def make_server(
    model: ExportedModel, host: str = "127.0.0.1", port: int = 1337, limits: Limits | None = None
) -> HttpServer:
    """An :class:`HttpServer` for ``model`` (not yet serving)."""
    return HttpServer(model, host, port, limits)

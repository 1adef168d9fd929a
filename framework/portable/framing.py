"""Framing of Edge Impulse's runner protocol: requests are JSON objects sent back to back on a UNIX socket.

Standard library only: the .eim answers with it even where numpy or its model runtime is missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading
from typing import Any, Callable

MAX_REQUEST_BYTES = 64 << 20
_SPECIAL = re.compile(rb'[{}"\\]')
ID_PATTERN = re.compile(rb'"id"\s*:\s*(-?\d+)')


def split_messages(buf: bytes) -> tuple[list[bytes], bytes]:
    """Split received bytes into requests: the complete top-level JSON objects (and any text outside
    an object, as its own item, to be answered with an error), and the incomplete object that waits
    for more bytes. Braces inside strings (with escapes) do not count."""
    out: list[bytes] = []
    start = None
    depth, in_string, skip = 0, False, -1
    pos = 0
    for m in _SPECIAL.finditer(buf):
        i, ch = m.start(), m.group()
        if i < skip:  # the character after a backslash inside a string
            continue
        if in_string:
            if ch == b"\\":
                skip = i + 2
            elif ch == b'"':
                in_string = False
            continue
        if ch == b'"':
            if depth:
                in_string = True
            continue
        if ch == b"{":
            if depth == 0:
                junk = buf[pos : m.start()].strip(b" \t\r\n\0")
                if junk:
                    out.append(junk)
                start = m.start()
            depth += 1
        elif ch == b"}" and depth:
            depth -= 1
            if depth == 0:
                out.append(buf[start : m.end()])
                pos = m.end()
    rest = buf[pos:]
    if depth == 0:  # outside any object: only whitespace may wait; anything else can never become a request
        junk = rest.strip(b" \t\r\n\0")
        if junk:
            out.append(junk)
        rest = b""
    return out, rest


def answer_requests(conn: socket.socket, answer: Callable[[bytes], bytes]) -> None:
    """Read requests from ``conn`` until it closes and send ``answer(request)`` for each, in order; a request
    longer than :data:`MAX_REQUEST_BYTES` is answered (as junk) and dropped instead of buffered."""
    buf = b""
    while True:
        try:
            chunk = conn.recv(1 << 16)
        except OSError:
            return
        if not chunk:
            return
        messages, buf = split_messages(buf + chunk)
        if len(buf) > MAX_REQUEST_BYTES:
            messages, buf = [*messages, buf[:64]], b""
        for raw in messages:
            try:
                conn.sendall(answer(raw))
            except OSError:
                return


def serve_unavailable(socket_path: str, message: str) -> None:
    """Answer every request on ``socket_path`` with ``success: false`` and ``message`` until SIGINT/SIGTERM/SIGHUP.

    A runner that cannot start (numpy or its runtime missing, a bad model file) still opens its socket, so
    an Edge Impulse SDK that waits for it gets this message as its error instead of waiting forever.
    """
    text = message.replace("{", "(").replace("}", ")")  # the SDKs count braces to find an answer's end
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(16)

    def stop(signum: int, frame: Any) -> None:
        try:
            os.unlink(socket_path)
        except OSError:
            pass
        os._exit(1)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)

    def answer(raw: bytes) -> bytes:
        m = ID_PATTERN.search(raw)
        return json.dumps({"id": int(m.group(1)) if m else None, "success": False, "error": text}).encode() + b"\0"

    def serve(conn: socket.socket) -> None:
        with conn:
            answer_requests(conn, answer)

    print(f"Error: {message}", file=sys.stderr, flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()

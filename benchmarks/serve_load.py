"""`vadblocks serve` under load: requests per second, p50/p99 latency and peak RSS.

    cd benchmarks && python serve_load.py --model-directory M [--repo DIR] [--requests 200] [--json F]

Starts `python -m framework.cli serve` from --repo (default: this checkout; point it at a worktree of an
older commit to measure "before"), then sends 96x96 JPEG uploads (multipart, like the runner's clients)
from 1, 4 and 16 concurrent clients (keep-alive off, one connection per request), --requests each level.
Reports requests/s, p50/p99 latency in ms, the non-200 answers and the server's peak RSS (VmHWM).

    python serve_load.py --model-directory M --storm [--max-pixels 121000000]

instead sends eight 11000 x 11000 black PNG uploads at once (352 KB each: refused from their header by
the default --max-pixels; pass --max-pixels 121000000 to have them decoded), samples the server's RSS
every 10 ms against the memory bound it printed, then opens 800 connections that send half a header and
stall, counts the server's threads, and times SIGTERM with them still open (issue 23's check).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _measure import proc_status_kb
from PIL import Image

HERE = Path(__file__).resolve().parent


def upload_body(image: Image.Image, fmt: str) -> tuple[bytes, str]:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {"optimize": True}))
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.{fmt.lower()}"\r\n\r\n'.encode()
        + buf.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def jpeg_body() -> tuple[bytes, str]:
    rng = np.random.default_rng(0)
    return upload_body(Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)), "JPEG")


def storm(proc: subprocess.Popen, port: int, bound_mib: float) -> None:
    """Issue 23's check: eight 11000 x 11000 uploads at once, then 800 stalled connections and SIGTERM."""
    body, ctype = upload_body(Image.new("RGB", (11000, 11000)), "PNG")
    print(f"idle RSS {proc_status_kb('VmRSS', proc.pid) / 1024:.0f} MiB, printed bound {bound_mib:.0f} MiB")
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc_status_kb("VmRSS", proc.pid))
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(c for c, _ in pool.map(lambda _: one(port, body, ctype), range(8)))
    done.set()
    print(
        f"eight 11000x11000 PNG uploads ({len(body):,} bytes each) at once: answers {codes} in "
        f"{time.perf_counter() - t0:.1f} s; peak RSS {peak[0] / 1024:.0f} MiB (sampled every 10 ms), "
        f"VmHWM {proc_status_kb('VmHWM', proc.pid) / 1024:.0f} MiB, bound {bound_mib:.0f} MiB"
    )
    stalled = []
    for _ in range(800):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /api/image HTTP/1.1\r\nHost: x\r\n")
        stalled.append(s)
    time.sleep(2)
    print(f"800 stalled connections: {proc_status_kb('Threads', proc.pid):.0f} server threads")
    t0 = time.perf_counter()
    proc.terminate()
    proc.wait(timeout=30)
    print(f"SIGTERM with them open: exit {proc.returncode} after {time.perf_counter() - t0:.2f} s")
    for s in stalled:
        s.close()


def one(port: int, body: bytes, ctype: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/api/image", body, {"Content-Type": ctype, "Connection": "close"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-directory", required=True)
    ap.add_argument("--repo", default=str(HERE.parent))
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--json")
    ap.add_argument("--storm", action="store_true", help="issue 23's check instead of the load levels")
    ap.add_argument("--max-pixels", default=None, help="passed to `vadblocks serve`")
    a = ap.parse_args()
    extra = ["--max-pixels", a.max_pixels] if a.max_pixels else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "framework.cli", "serve", "--model-directory", a.model_directory, "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
        cwd=a.repo,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split("http://")[1].split()[0].split(":")[1])
    if a.storm:
        limits = proc.stdout.readline()
        print(limits.strip())
        storm(proc, port, float(re.search(r"memory bound (\d+) MiB", limits).group(1)))  # type: ignore[union-attr]
        return
    body, ctype = jpeg_body()
    rows = {}
    try:
        one(port, body, ctype)
        for clients in (1, 4, 16):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                results = list(pool.map(lambda _: one(port, body, ctype), range(a.requests)))
            wall = time.perf_counter() - t0
            ms = sorted(r[1] for r in results)
            rows[clients] = {
                "rps": len(results) / wall,
                "p50_ms": statistics.median(ms),
                "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
                "not_200": sum(r[0] != 200 for r in results),
            }
        peak = proc_status_kb("VmHWM", proc.pid) / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print("| clients | requests/s | p50 ms | p99 ms | answers other than 200 |")
    print("|---|---|---|---|---|")
    for c, r in rows.items():
        print(f"| {c} | {r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['not_200']} |")
    print(f"peak RSS {peak:.0f} MiB")
    if a.json:
        Path(a.json).write_text(json.dumps({"levels": rows, "peak_rss_mib": peak}, indent=2))


if __name__ == "__main__":
    main()

"""`vadblocks serve` under load: requests per second, p50/p99 latency and peak RSS.

    cd benchmarks && python serve_load.py --model-directory M [--repo DIR] [--requests 200] [--json F]

Starts `python -m framework.cli serve` from --repo (default: this checkout; point it at a worktree of an
older commit to measure "before"), then sends 96x96 JPEG uploads (multipart, like the runner's clients)
from 1, 4 and 16 concurrent clients (keep-alive off, one connection per request), --requests each level.
Reports requests/s, p50/p99 latency in ms, the non-200 answers and the server's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def jpeg_body() -> tuple[bytes, str]:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'.encode()
        + buf.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


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
    a = ap.parse_args()
    proc = subprocess.Popen(
        [sys.executable, "-m", "framework.cli", "serve", "--model-directory", a.model_directory, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=a.repo,
    )
    port = int(proc.stdout.readline().split("http://")[1].split()[0].split(":")[1])
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
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]) / 1024
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

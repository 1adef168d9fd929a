#!/usr/bin/env python3
"""Serve the host's local pip sources over HTTP so `docker build` can use them.

Reads `pip config list` for local (file://) index URLs and find-links folders, serves them
on HOST:PORT (the Docker bridge gateway by default), and writes the matching build args
(PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_TRUSTED_HOST) to --env-file as KEY=VALUE lines.
Development / CI helper: nothing here is used by the library.

    python3 scripts/pip_mirror.py --env-file build-args.env &
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse


def local_sources() -> tuple[list[Path], list[Path]]:
    """(index roots, find-links folders) named by the host's pip configuration."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    indexes, links = [], []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        values = shlex.split(value.strip().strip("'\""))
        for v in values:
            path = Path(unquote(urlparse(v).path)) if v.startswith("file://") else Path(v)
            if not path.is_dir():
                continue
            if key.endswith("index-url") and path not in indexes:
                indexes.append(path)
            elif key.endswith("find-links") and path not in links:
                links.append(path)
    return indexes, links


def bridge_gateway() -> str:
    try:
        out = subprocess.run(
            ["docker", "network", "inspect", "bridge"], capture_output=True, text=True, check=True
        ).stdout
        return json.loads(out)[0]["IPAM"]["Config"][0]["Gateway"]
    except Exception:  # noqa: BLE001
        return "172.17.0.1"


class MultiRootHandler(http.server.SimpleHTTPRequestHandler):
    roots: dict[str, Path] = {}

    def translate_path(self, path: str) -> str:
        parts = urlparse(path).path.lstrip("/").split("/", 1)
        root = self.roots.get(parts[0])
        if root is None:
            return "/nonexistent"
        return str(root / unquote(parts[1] if len(parts) > 1 else ""))

    def log_message(self, *args) -> None:  # quiet
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=None)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--env-file", required=True)
    a = ap.parse_args()
    host = a.host or bridge_gateway()
    indexes, links = local_sources()
    roots = {f"idx{i}": p.parent if p.name == "simple" else p for i, p in enumerate(indexes)}
    roots.update({f"links{i}": p for i, p in enumerate(links)})
    base = f"http://{host}:{a.port}"
    env = {"PIP_TRUSTED_HOST": host}
    if indexes:
        env["PIP_EXTRA_INDEX_URL"] = " ".join(
            f"{base}/idx{i}/{'simple/' if p.name == 'simple' else ''}" for i, p in enumerate(indexes)
        )
    if links:
        env["PIP_FIND_LINKS"] = " ".join(f"{base}/links{i}/" for i in range(len(links)))
    MultiRootHandler.roots = roots
    server = http.server.ThreadingHTTPServer((host, a.port), functools.partial(MultiRootHandler))
    Path(a.env_file).write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    print(f"pip mirror on {base}: {', '.join(f'{k}={v}' for k, v in roots.items())}", flush=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    server.serve_forever()


if __name__ == "__main__":
    main()

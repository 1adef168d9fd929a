"""Building and running learning-block containers locally with the Docker engine (docker SDK).

``build`` builds a block folder (Dockerfile + parameters.json) and streams the log; ``run``
validates the parameters on the host against the block's parameters.json, then runs the
image as Edge Impulse would: data mounted read-only, out directory writable, no network,
one ``--<param> VALUE`` per parameter. The container is removed afterwards, also on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from framework.config import params_from_json
from framework.errors import VadblocksError
from framework.outputs import remove_temporaries
from framework.params import Param, known_values

Log = Callable[[str], None]
DATA_MOUNT = "/data"
OUT_MOUNT = "/out"


def docker_client() -> Any:
    """A docker SDK client whose daemon answers, or a clear error."""
    try:
        import docker
    except ImportError:
        raise VadblocksError("the docker Python package is missing: pip install docker") from None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - docker raises several types when no daemon answers
        raise VadblocksError(
            f"no Docker daemon answers ({type(exc).__name__}: {exc}); start the Docker engine (e.g. "
            "`dockerd &`, or scripts/provision_docker.sh on Debian) and check DOCKER_HOST"
        ) from None
    return client


def read_build_args(pairs: tuple[str, ...] = (), files: tuple[str | Path, ...] = ()) -> dict[str, str]:
    """``docker build`` arguments from KEY=VALUE ``files`` (comments and blank lines skipped), then ``pairs``."""
    args: dict[str, str] = {}
    lines = [ln for f in files for ln in Path(f).read_text().splitlines()] + list(pairs)
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq or not key:
            raise VadblocksError(f"build argument {line!r} is not KEY=VALUE")
        args[key.strip()] = value.strip()
    return args


def read_block(block_dir: str | Path) -> dict[str, Any]:
    """The block folder's parameters.json, after checking the folder has a Dockerfile too."""
    root = Path(block_dir)
    if not root.is_dir():
        raise VadblocksError(f"block directory {root} does not exist")
    for name in ("Dockerfile", "parameters.json"):
        if not (root / name).is_file():
            raise VadblocksError(f"{root} is not a learning block folder: {name} is missing")
    try:
        doc = json.loads((root / "parameters.json").read_text())
    except ValueError as exc:
        raise VadblocksError(f"{root / 'parameters.json'} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters"), list):
        raise VadblocksError(f"{root / 'parameters.json'} has no `parameters` list")
    return doc


def default_tag(block_dir: str | Path) -> str:
    """Image tag derived from the block's name in parameters.json."""
    name = read_block(block_dir).get("info", {}).get("name") or Path(block_dir).resolve().name
    slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-") or "block"
    return f"{slug}:latest"


def build(
    block_dir: str | Path, tag: str | None = None, build_args: Mapping[str, str] | None = None, log: Log = print
) -> str:
    """Build the block's image, streaming the build log; returns the tag."""
    read_block(block_dir)
    tag = tag or default_tag(block_dir)
    client = docker_client()
    try:
        for chunk in client.api.build(
            path=str(Path(block_dir).resolve()),
            tag=tag,
            buildargs=dict(build_args or {}),
            rm=True,
            forcerm=True,
            decode=True,
        ):
            if "stream" in chunk:
                log(chunk["stream"].rstrip("\n"))
            if "error" in chunk:
                raise VadblocksError(f"docker build of {block_dir} failed: {chunk['error'].strip()}")
    except VadblocksError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise VadblocksError(f"docker build of {block_dir} failed: {exc}") from None
    return tag


def block_arguments(doc: Mapping[str, Any], values: Mapping[str, Any], registry: Any = None) -> list[str]:
    """Validate ``values`` against a block's parameters.json; return all ``--param value`` arguments.

    Every parameter is passed (defaults filled in), as Edge Impulse does. Unknown names and
    invalid values raise :class:`VadblocksError` with the same message as in-process training.
    """
    params: list[Param] = params_from_json(doc["parameters"], registry)
    values = known_values(values, (p.name for p in params))
    args: list[str] = []
    for p in params:
        args += p.to_arg(p.parse(values[p.name]) if p.name in values else p.default)
    return args


def parse_extra_args(doc: Mapping[str, Any], extra: list[str]) -> dict[str, str]:
    """Turn ``--name value`` / ``--flag`` words into a dict, using the block's parameter types."""
    types = {item.get("param"): item.get("type") for item in doc["parameters"]}
    out: dict[str, str] = {}
    i = 0
    while i < len(extra):
        word = extra[i]
        if not word.startswith("--"):
            raise VadblocksError(f"unexpected argument {word!r}; parameters are given as --name value")
        name, eq, val = word[2:].partition("=")
        if eq:
            out[name] = val
        elif types.get(name) == "flag":
            out[name] = "1"
        elif i + 1 < len(extra):
            out[name] = extra[i + 1]
            i += 1
        else:
            raise VadblocksError(f"--{name} needs a value")
        i += 1
    return out


SECURITY = {  # every block container runs locked down (docs/contract.md)
    "read_only": True,  # root filesystem read-only; /tmp is a tmpfs, /out the only other writable place
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=1g"},
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "pids_limit": 512,
    "network_mode": "none",
}
STOP_TIMEOUT = 20  # seconds a block gets to remove its partial output after SIGTERM


def container_options(
    data: Path,
    out: Path,
    user: str | None = None,
    memory: str | None = None,
    cpus: float | None = None,
    network: str | None = None,
) -> dict[str, Any]:
    """docker SDK ``containers.create`` options of a block run: mounts, user, the lock-down, limits.

    ``network``: a Docker network for the container (a tune worker reaching a shared database); none by default.
    """
    opts: dict[str, Any] = dict(
        SECURITY,
        user=user or f"{os.getuid()}:{os.getgid()}",
        volumes={str(data): {"bind": DATA_MOUNT, "mode": "ro"}, str(out): {"bind": OUT_MOUNT, "mode": "rw"}},
        labels={"vadblocks.run": "1"},
        detach=True,
    )
    if network:
        opts["network_mode"] = network
    if memory:
        opts["mem_limit"] = memory
        opts["memswap_limit"] = memory  # no swap beyond the limit
    if cpus:
        opts["nano_cpus"] = int(cpus * 1e9)
    return opts


def run(
    block_dir: str | Path,
    data_directory: str | Path,
    out_directory: str | Path,
    values: Mapping[str, Any] | None = None,
    *,
    tag: str | None = None,
    registry: Any = None,
    user: str | None = None,
    memory: str | None = None,
    cpus: float | None = None,
    log: Log = print,
    tune_args: list[str] | None = None,
    network: str | None = None,
) -> int:
    """Run the block's image on a data directory; returns the container's exit code.

    With ``tune_args`` (a list, possibly empty) the container runs ``vadblocks tune`` with those
    arguments instead of training (a worker of a study: its SQLite file in the out directory, or a
    shared database reached over ``network``). The container is removed afterwards. When this process
    is interrupted (Ctrl-C, SIGTERM), the container first gets SIGTERM and :data:`STOP_TIMEOUT` seconds
    to remove its partial output, then is removed; temporary folders left in the out directory are
    removed too.
    """
    doc = read_block(block_dir)
    args = block_arguments(doc, values or {}, registry) if tune_args is None else ["--quiet", *tune_args]
    data = Path(data_directory).resolve()
    if not data.is_dir():
        raise VadblocksError(f"data directory {data} does not exist")
    if cpus is not None and not 0 < cpus <= (os.cpu_count() or 1):
        raise VadblocksError(f"--cpus {cpus} is not between 0 and the {os.cpu_count()} CPUs of this machine")
    if memory is not None and not re.fullmatch(r"[1-9][0-9]*[bkmg]?", memory.lower()):
        raise VadblocksError(f"--memory {memory!r} is not a size such as 4g or 512m")
    out = Path(out_directory).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tag = tag or default_tag(block_dir)
    client = docker_client()
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise VadblocksError(f"image {tag} does not exist; build it with `vadblocks build {block_dir}`") from None
    command = ["--data-directory", DATA_MOUNT, "--out-directory", OUT_MOUNT, *args]
    entry = None if tune_args is None else ["vadblocks", "tune"]
    log(
        f"$ docker run --network {network or 'none'} --read-only --cap-drop ALL "
        f"{'--entrypoint vadblocks ' if entry else ''}{tag} {'tune ' if entry else ''}{' '.join(command)}"
    )
    container = client.containers.create(
        tag,
        command=command,
        entrypoint=entry,
        stop_signal="SIGTERM",
        **container_options(data, out, user, memory, cpus, network),
    )
    finished = False
    try:
        container.start()
        for line in container.logs(stream=True, follow=True):
            log(line.decode(errors="replace").rstrip("\n"))
        code = int(container.wait().get("StatusCode", 1))
        finished = True
        return code
    finally:
        try:
            if not finished:
                container.stop(timeout=STOP_TIMEOUT)
            container.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        if not finished:
            remove_temporaries(out)

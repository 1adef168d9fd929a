"""The plugin host: discovers backbones and scorers through the ``vadblocks`` entry points.

Built-in plugins (package ``blocks``) are listed in this project's own pyproject under
the same entry-point group as any third-party package. A plugin that fails to import,
raises in its hook, registers something invalid or registers a name (or a parameter
name) already taken is recorded as *failed* with the reason: the rest keep working,
``vadblocks plugins`` lists the failure, and asking to use it is a clear error.

``VADBLOCKS_LOAD_PLUGINS`` (comma-separated entry-point or distribution names) limits
which entry points are loaded; an empty value loads none.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import pluggy

from framework import hookspecs
from framework.errors import VadblocksError
from framework.params import BACKBONE_PARAM, SCORER_PARAM
from framework.training_params import TRAINING_PARAMS

if TYPE_CHECKING:  # pragma: no cover - the base classes import nothing heavy, but plugins need not load them
    from framework.backbone import Backbone
    from framework.scorer import Scorer

GROUP = "vadblocks"
HOST_DIST = "vadblocks"
ALLOWLIST_ENV = "VADBLOCKS_LOAD_PLUGINS"
RESERVED_PARAMS = {
    SCORER_PARAM,
    BACKBONE_PARAM,
    "data-directory",
    "out-directory",
    "model-directory",
    "info-file",
    "input-file",
    "input-shape",
    "input-scaling",
    "image-size",
    "weights",
    "threshold",
    "json",
    "help",
    "runtime",
    "seed",
    *(p.name for p, _ in TRAINING_PARAMS),
}


@dataclass(frozen=True)
class PluginEntry:
    """A registered backbone or scorer class and where it came from."""

    name: str
    kind: str  # "backbone" | "scorer"
    cls: Union[type["Backbone"], type["Scorer"]]
    plugin: str  # entry-point name
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin (or one thing it registered) that could not be used, and why."""

    plugin: str
    distribution: str
    reason: str
    name: str | None = None  # the backbone/scorer name, when the failure is about one


@dataclass
class Registry:
    """Everything the installed plugins registered, plus what failed."""

    backbones: dict[str, PluginEntry] = field(default_factory=dict)
    scorers: dict[str, PluginEntry] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    plugins: dict[str, tuple[str, str]] = field(default_factory=dict)  # entry point -> (dist, version)

    def _get(self, kind: str, name: str) -> PluginEntry:
        table = self.backbones if kind == "backbone" else self.scorers
        if name in table:
            return table[name]
        for f in self.failures:
            if f.name == name or (f.name is None and f.plugin == name):
                raise VadblocksError(
                    f"{kind} {name!r} is unavailable: plugin {f.plugin!r} ({f.distribution}) failed: {f.reason}"
                )
        known = ", ".join(table) or "none"
        raise VadblocksError(f"unknown {kind} {name!r}; installed {kind}s: {known} (`vadblocks plugins` lists them)")

    def describe(self) -> dict[str, Any]:
        """What ``vadblocks plugins --json`` prints: each backbone and scorer with its origin and parameters
        (backbones: whether their pretrained weights are available offline), and the plugins that failed."""

        def row(e: PluginEntry) -> dict[str, Any]:
            d: dict[str, Any] = {
                "name": e.name,
                "plugin": e.plugin,
                "distribution": e.distribution,
                "version": e.version,
                "description": e.cls.description,
                "parameters": [p.name for p in e.cls.parameters],
            }
            if e.kind == "backbone":
                d["offline_weights"] = bool(e.cls.offline_weights)  # type: ignore[union-attr]
            return d

        return {
            "backbones": [row(e) for e in self.backbones.values()],
            "scorers": [row(e) for e in self.scorers.values()],
            "failed": [
                {"plugin": f.plugin, "distribution": f.distribution, "name": f.name, "reason": f.reason}
                for f in self.failures
            ],
        }

    def backbone(self, name: str) -> PluginEntry:
        """The backbone called ``name``, or a clear error."""
        return self._get("backbone", name)

    def scorer(self, name: str) -> PluginEntry:
        """The scorer called ``name``, or a clear error."""
        return self._get("scorer", name)


_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None


def _allowlist() -> set[str] | None:
    raw = os.environ.get(ALLOWLIST_ENV)
    if raw is None:
        return None
    return {x.strip() for x in raw.split(",") if x.strip()}


def load_plugins() -> Registry:
    """Load the ``vadblocks`` entry points once and return the registry (idempotent)."""
    global _pm, _registry
    if _registry is not None:
        return _registry
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    allow = _allowlist()
    seen: set[str] = set()
    # The host's own built-ins first (they keep their names on a clash), then the rest by name.
    eps = sorted(
        md.entry_points(group=GROUP),
        key=lambda e: (getattr(e.dist, "name", "") != HOST_DIST, getattr(e.dist, "name", ""), e.name),
    )
    for ep in eps:
        dist = ep.dist.name if ep.dist else "unknown"
        version = ep.dist.version if ep.dist else "?"
        if ep.name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(ep.name)
        if allow is not None and ep.name not in allow and dist not in allow:
            continue
        try:
            pm.load_setuptools_entrypoints(GROUP, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - isolation is the point
            registry.failures.append(PluginFailure(ep.name, dist, f"import failed: {type(exc).__name__}: {exc}"))
            continue
        registry.plugins[ep.name] = (dist, version)
    _collect(pm, registry)
    _pm, _registry = pm, registry
    return registry


def reset_plugins() -> None:
    """Forget loaded plugins so the next :func:`load_plugins` discovers again (tests use this)."""
    global _pm, _registry
    _pm, _registry = None, None


def _collect(pm: pluggy.PluginManager, registry: Registry) -> None:
    from framework.backbone import Backbone
    from framework.scorer import Scorer

    param_owner: dict[str, str] = {}
    for hook_name, kind, base in (("register_scorers", "scorer", Scorer), ("register_backbones", "backbone", Backbone)):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin = impl.plugin_name
            dist, version = registry.plugins.get(plugin, ("unknown", "?"))
            pending: list[PluginEntry] = []

            def register(
                cls: Any, *, _plugin=plugin, _dist=dist, _version=version, _kind=kind, _base=base, _pending=pending
            ) -> None:
                _pending.append(_check_class(cls, _kind, _base, _plugin, _dist, _version))

            try:
                impl.function(register=register)
            except Exception as exc:  # noqa: BLE001
                registry.failures.append(PluginFailure(plugin, dist, f"{hook_name} raised {type(exc).__name__}: {exc}"))
                continue
            for entry in pending:
                _add(registry, entry, param_owner)


def _check_class(
    cls: Any, kind: str, base: type[Backbone] | type[Scorer], plugin: str, dist: str, version: str
) -> PluginEntry:
    name = getattr(cls, "name", None)
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise VadblocksError(f"{kind} {name or cls!r} must be a subclass of {base.__module__}.{base.__name__}")
    if not isinstance(name, str) or not name or name != name.lower() or " " in name:
        raise VadblocksError(f"{kind} class {cls.__name__} needs a lower-case `name` without spaces")
    if not getattr(cls, "description", ""):
        raise VadblocksError(f"{kind} {name!r} needs a `description`")
    from framework.params import Param

    params = getattr(cls, "parameters", ())
    if not isinstance(params, tuple) or not all(isinstance(p, Param) for p in params):
        raise VadblocksError(f"{kind} {name!r}: `parameters` must be a tuple of framework.params.Param")
    return PluginEntry(name, kind, cls, plugin, dist, version)


def _add(registry: Registry, entry: PluginEntry, param_owner: dict[str, str]) -> None:
    table = registry.scorers if entry.kind == "scorer" else registry.backbones
    me = f"{entry.kind} {entry.name!r} (plugin {entry.plugin!r}, {entry.distribution})"
    if entry.name in table:
        other = table[entry.name]
        registry.failures.append(
            PluginFailure(
                entry.plugin,
                entry.distribution,
                f"duplicate {entry.kind} name {entry.name!r}: already registered by plugin {other.plugin!r} "
                f"({other.distribution})",
            )
        )
        return
    for p in entry.cls.parameters:
        if p.name in RESERVED_PARAMS:
            registry.failures.append(
                PluginFailure(
                    entry.plugin,
                    entry.distribution,
                    f"parameter --{p.name} of {me} clashes with a framework option; rename it",
                    entry.name,
                )
            )
            return
        if p.name in param_owner:
            registry.failures.append(
                PluginFailure(
                    entry.plugin,
                    entry.distribution,
                    f"parameter --{p.name} of {me} clashes with the same name declared by {param_owner[p.name]}; "
                    "parameter names must be unique across plugins",
                    entry.name,
                )
            )
            return
    for p in entry.cls.parameters:
        param_owner[p.name] = me
    table[entry.name] = entry


def get_registry() -> Registry:
    """The loaded registry (loads the plugins on first call)."""
    return load_plugins()

"""Parameters: declared once per plugin, from which everything else is derived.

A plugin lists :class:`Param` objects. The framework derives from them the items of
Edge Impulse's ``parameters.json`` (with ``showIf`` tying plugin settings to the
selected scorer or backbone), the CLI options / container arguments, and the
validation of user values (:func:`resolve`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from framework import __version__
from framework.errors import VadblocksError

if TYPE_CHECKING:  # pragma: no cover
    from framework.plugins import Registry

PARAM_TYPES = ("int", "float", "string", "select", "boolean", "flag")
SCORER_PARAM = "scoring-function"
BACKBONE_PARAM = "backbone"
DEFAULT_SCORER = "patchcore"
DEFAULT_BACKBONE = "mobilenetv2"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One declared setting of a plugin (or of the framework).

    ``name`` is the kebab-case CLI name and the ``param`` key in parameters.json;
    the estimator receives it as a snake_case keyword (:attr:`attr`).
    ``options`` lists the values of a ``select``; ``min``/``max`` bound numbers.
    """

    name: str
    type: str
    default: Any
    help: str
    label: str | None = None
    options: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    advanced: bool = False

    def __post_init__(self) -> None:
        problem = self._declaration_problem()
        if problem:
            raise VadblocksError(f"bad parameter declaration {self.name!r}: {problem}")

    def _declaration_problem(self) -> str | None:
        if not self.name or not all(c.isalnum() or c == "-" for c in self.name) or not self.name[0].isalpha():
            return "the name must be kebab-case letters, digits and '-', starting with a letter"
        if self.name != self.name.lower():
            return "the name must be lower case"
        if self.type not in PARAM_TYPES:
            return f"type {self.type!r} is not one of {', '.join(PARAM_TYPES)}"
        if not self.help:
            return "help text is required"
        if self.type == "select":
            if not self.options or not all(isinstance(o, str) for o in self.options):
                return "a select needs a non-empty tuple of string options"
            if self.default not in self.options:
                return f"default {self.default!r} is not one of its options {list(self.options)}"
        elif self.options is not None:
            return "only a select takes options"
        if self.type in ("int", "float"):
            if self.min is not None and self.max is not None and self.min > self.max:
                return f"min {self.min} is above max {self.max}"
            try:
                self.parse(self.default)
            except VadblocksError as exc:
                return f"default does not validate ({exc})"
        if self.type in ("boolean", "flag") and not isinstance(self.default, bool):
            return "the default of a boolean or flag must be True or False"
        if self.type == "string" and not isinstance(self.default, str):
            return "the default of a string must be a string"
        return None

    @property
    def attr(self) -> str:
        """The keyword name the estimator receives (``num-layers`` -> ``num_layers``)."""
        return self.name.replace("-", "_")

    @property
    def display_name(self) -> str:
        return self.label or self.name.replace("-", " ").capitalize()

    def describe_valid(self) -> str:
        """Human description of the accepted values."""
        if self.type == "select":
            return "one of " + ", ".join(self.options or ())
        if self.type in ("int", "float"):
            kind = "an integer" if self.type == "int" else "a number"
            lo = "" if self.min is None else f" >= {_fmt(self.min)}"
            hi = "" if self.max is None else f" <= {_fmt(self.max)}"
            return kind + lo + ("," if lo and hi else "") + hi
        if self.type in ("boolean", "flag"):
            return "1/0 (true/false)"
        return "a string"

    def parse(self, raw: Any) -> Any:
        """Convert ``raw`` (a CLI string or a Python value) to this parameter's type.

        Raises :class:`VadblocksError` naming the parameter and the accepted values.
        """
        bad = VadblocksError(f"--{self.name}: {raw!r} is not valid; expected {self.describe_valid()}")
        if self.type in ("boolean", "flag"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise bad
        if self.type == "int":
            if isinstance(raw, bool):
                raise bad
            try:
                value = int(str(raw).strip()) if not isinstance(raw, int) else raw
            except ValueError:
                raise bad from None
            self._check_range(value, raw)
            return value
        if self.type == "float":
            if isinstance(raw, bool):
                raise bad
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise bad from None
            if not math.isfinite(value):
                raise bad
            self._check_range(value, raw)
            return value
        text = str(raw)
        if self.type == "select" and text not in (self.options or ()):
            raise bad
        return text

    def _check_range(self, value: float, raw: Any) -> None:
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise VadblocksError(f"--{self.name}: {raw!r} is out of range; expected {self.describe_valid()}")

    def to_json(self, show_if: Mapping[str, str] | None = None) -> dict[str, Any]:
        """This parameter as an item of Edge Impulse's parameters.json."""
        item: dict[str, Any] = {
            "name": self.display_name,
            "value": self.default,
            "type": self.type,
            "help": self.help if self.type in ("select", "string", "boolean", "flag")
            else f"{self.help} ({self.describe_valid()})",
            "param": self.name,
        }
        if self.type == "select":
            item["valid"] = list(self.options or ())
        if show_if:
            item["showIf"] = dict(show_if)
        if self.advanced:
            item["section"] = "advanced"
        return item

    def to_arg(self, value: Any) -> list[str]:
        """This parameter as container arguments (booleans as 1/0, flags present or absent)."""
        if self.type == "flag":
            return [f"--{self.name}"] if value else []
        if self.type == "boolean":
            return [f"--{self.name}", "1" if value else "0"]
        return [f"--{self.name}", str(value)]


def bind_params(kind: str, name: str, declared: Iterable[Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate keyword ``values`` (snake_case) against a plugin's declarations; fill in defaults."""
    by_attr = {p.attr: p for p in declared}
    unknown = set(values) - set(by_attr)
    if unknown:
        raise VadblocksError(f"{kind} {name!r} has no parameter(s) {sorted(unknown)}")
    return {a: (p.parse(values[a]) if a in values else p.default) for a, p in by_attr.items()}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass
class BlockConfig:
    """Validated settings of one training run: chosen plugins and their parameters."""

    scorer: str
    backbone: str
    scorer_params: dict[str, Any] = field(default_factory=dict)
    backbone_params: dict[str, Any] = field(default_factory=dict)

    def as_cli_values(self, registry: "Registry") -> dict[str, Any]:
        """Kebab-case name -> value for every parameter of the chosen plugins."""
        values: dict[str, Any] = {SCORER_PARAM: self.scorer, BACKBONE_PARAM: self.backbone}
        for p in registry.scorer(self.scorer).cls.parameters:
            values[p.name] = self.scorer_params[p.attr]
        for p in registry.backbone(self.backbone).cls.parameters:
            values[p.name] = self.backbone_params[p.attr]
        return values


def framework_params(registry: "Registry") -> tuple[Param, Param]:
    """The two framework-level selects: scoring function and backbone."""
    scorers = tuple(registry.scorers)
    backbones = tuple(registry.backbones)
    if not scorers:
        raise VadblocksError("no scorer plugin is installed; run `vadblocks plugins` to see what failed")
    if not backbones:
        raise VadblocksError("no backbone plugin is installed; run `vadblocks plugins` to see what failed")
    scorer_help = "How patches are scored: " + "; ".join(
        f"{n}: {registry.scorers[n].cls.description}" for n in scorers)
    backbone_help = "Feature extractor: " + "; ".join(
        f"{n}: {registry.backbones[n].cls.description}" for n in backbones)
    return (
        Param(SCORER_PARAM, "select", DEFAULT_SCORER if DEFAULT_SCORER in scorers else scorers[0],
              scorer_help, label="Scoring function", options=scorers),
        Param(BACKBONE_PARAM, "select", DEFAULT_BACKBONE if DEFAULT_BACKBONE in backbones else backbones[0],
              backbone_help, label="Backbone", options=backbones),
    )


def all_params(registry: "Registry") -> list[tuple[Param, dict[str, str] | None]]:
    """Every parameter of the block, each with its ``showIf`` condition (or None)."""
    items: list[tuple[Param, dict[str, str] | None]] = [(p, None) for p in framework_params(registry)]
    for kind, selector, entries in (("scorer", SCORER_PARAM, registry.scorers),
                                    ("backbone", BACKBONE_PARAM, registry.backbones)):
        for name, entry in entries.items():
            cond = {"parameter": selector, "operator": "eq", "value": name}
            items.extend((p, cond) for p in entry.cls.parameters)
    return items


def parameters_json(registry: "Registry", name: str = "vadblocks visual anomaly detection",
                    description: str | None = None) -> dict[str, Any]:
    """The block's parameters.json document (Edge Impulse custom learning block schema)."""
    return {
        "version": 1,
        "type": "machine-learning",
        "info": {
            "name": name,
            "description": description or (
                "Visual anomaly detection trained on normal images only: a pretrained backbone's patch "
                "features scored per grid cell by a pluggable scorer (" + ", ".join(registry.scorers) + "). "
                f"vadblocks {__version__}."),
            "operatesOn": "visual_anomaly_detection",
            "imageInputScaling": "0..1",
            "indRequiresGpu": False,
            "repositoryUrl": "https://github.com/vadblocks/vadblocks",
        },
        "parameters": [p.to_json(cond) for p, cond in all_params(registry)],
    }


def dumps_parameters_json(registry: "Registry") -> str:
    """parameters.json as text, exactly as written to the repository root."""
    return json.dumps(parameters_json(registry), indent=4) + "\n"


def known_values(values: Mapping[str, Any] | None, known: Iterable[str]) -> dict[str, Any]:
    """User values keyed by kebab-case name (``None`` dropped); unknown names raise one clear error."""
    values = {str(k).replace("_", "-"): v for k, v in (values or {}).items() if v is not None}
    known = list(known)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise VadblocksError(f"unknown parameter(s): {', '.join('--' + u for u in unknown)}; "
                             f"known parameters: {', '.join('--' + n for n in known)}")
    return values


def resolve(registry: "Registry", values: Mapping[str, Any] | None = None) -> BlockConfig:
    """Validate user values (kebab- or snake-case names) into a :class:`BlockConfig`.

    Missing values take their declared defaults. Unknown names, unknown plugins and
    out-of-range values raise :class:`VadblocksError` with one clear message.
    """
    params = {p.name: p for p, _ in all_params(registry)}
    values = known_values(values, params)
    scorer_p, backbone_p = params[SCORER_PARAM], params[BACKBONE_PARAM]
    scorer = _select_plugin(registry, scorer_p, values, "scorer")
    backbone = _select_plugin(registry, backbone_p, values, "backbone")

    def collect(decl: Iterable[Param]) -> dict[str, Any]:
        return {p.attr: p.parse(values[p.name]) if p.name in values else p.default for p in decl}

    return BlockConfig(
        scorer=scorer,
        backbone=backbone,
        scorer_params=collect(registry.scorer(scorer).cls.parameters),
        backbone_params=collect(registry.backbone(backbone).cls.parameters),
    )


def _select_plugin(registry: "Registry", param: Param, values: Mapping[str, Any], kind: str) -> str:
    name = str(values.get(param.name, param.default))
    if name in (param.options or ()):
        return name
    if any(f.name == name or (f.name is None and f.plugin == name) for f in registry.failures):
        getattr(registry, kind)(name)  # explains why that plugin failed
    return param.parse(name)  # "--scoring-function: 'x' is not valid; expected one of ..."


def params_from_json(items: Iterable[Mapping[str, Any]], registry: "Registry | None" = None) -> list[Param]:
    """Rebuild :class:`Param` objects from parameters.json items (e.g. of a block folder).

    Where the host has the plugin that declared a parameter, its full declaration (ranges
    included) is used, so validation prints the same message as in-process; a select keeps
    the options the block itself offers.
    """
    known = {p.name: p for p, _ in all_params(registry)} if registry is not None else {}
    out = []
    for item in items:
        try:
            name, ptype, default = item["param"], item["type"], item["value"]
        except (KeyError, TypeError):
            raise VadblocksError(f"parameters.json item {item!r} lacks param/type/value") from None
        base = known.get(name)
        options = tuple(item["valid"]) if ptype == "select" and item.get("valid") else None
        if base is not None and base.type == ptype:
            out.append(Param(name, ptype, default, base.help, label=base.label,
                             options=options if ptype == "select" else None, min=base.min, max=base.max,
                             advanced=base.advanced))
        else:
            out.append(Param(name, ptype, default, item.get("help") or name, label=item.get("name"),
                             options=options))
    return out


def to_args(registry: "Registry", config: BlockConfig) -> list[str]:
    """Container arguments (``--param value`` ...) for a validated configuration."""
    decl = {p.name: p for p, _ in all_params(registry)}
    args: list[str] = []
    for name, value in config.as_cli_values(registry).items():
        args += decl[name].to_arg(value)
    return args

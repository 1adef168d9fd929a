"""A block's configuration: every declared parameter (framework and plugins) and the user's values.

From the registry's plugins and the framework's own training parameters this module derives
Edge Impulse's ``parameters.json`` (with ``showIf`` tying plugin settings to the selected scorer or
backbone), the CLI options and container arguments, and :func:`resolve`, which validates user values
into a :class:`BlockConfig`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from framework import __version__
from framework.errors import VadblocksError
from framework.params import BACKBONE_PARAM, DEFAULT_BACKBONE, DEFAULT_SCORER, SCORER_PARAM, Param, known_values
from framework.plugins import Registry
from framework.training_params import TRAINING_PARAMS


@dataclass
class BlockConfig:
    """Validated settings of one training run: chosen plugins, their parameters, the training settings."""

    scorer: str
    backbone: str
    scorer_params: dict[str, Any] = field(default_factory=dict)
    backbone_params: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=lambda: {p.attr: p.default for p, _ in TRAINING_PARAMS})

    def as_cli_values(self, registry: "Registry") -> dict[str, Any]:
        """Kebab-case name -> value for every parameter of the chosen plugins and of training."""
        values: dict[str, Any] = {SCORER_PARAM: self.scorer, BACKBONE_PARAM: self.backbone}
        for p, _ in TRAINING_PARAMS:
            values[p.name] = self.training[p.attr]
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
    scorer_help = "How patches are scored: " + "; ".join(f"{n}: {registry.scorers[n].cls.description}" for n in scorers)
    backbone_help = "Feature extractor: " + "; ".join(
        f"{n}: {registry.backbones[n].cls.description}" for n in backbones
    )
    return (
        Param(
            SCORER_PARAM,
            "select",
            DEFAULT_SCORER if DEFAULT_SCORER in scorers else scorers[0],
            scorer_help,
            label="Scoring function",
            options=scorers,
        ),
        Param(
            BACKBONE_PARAM,
            "select",
            DEFAULT_BACKBONE if DEFAULT_BACKBONE in backbones else backbones[0],
            backbone_help,
            label="Backbone",
            options=backbones,
        ),
    )


def all_params(registry: "Registry") -> list[tuple[Param, dict[str, str] | None]]:
    """Every parameter of the block, each with its ``showIf`` condition (or None)."""
    items: list[tuple[Param, dict[str, str] | None]] = [(p, None) for p in framework_params(registry)]
    items.extend(TRAINING_PARAMS)
    for selector, entries in ((SCORER_PARAM, registry.scorers), (BACKBONE_PARAM, registry.backbones)):
        for name, entry in entries.items():
            cond = {"parameter": selector, "operator": "eq", "value": name}
            items.extend((p, cond) for p in entry.cls.parameters)
    return items


def parameters_json(
    registry: "Registry", name: str = "vadblocks visual anomaly detection", description: str | None = None
) -> dict[str, Any]:
    """The block's parameters.json document (Edge Impulse custom learning block schema)."""
    return {
        "version": 1,
        "type": "machine-learning",
        "info": {
            "name": name,
            "description": description
            or (
                "Visual anomaly detection trained on normal images only: a pretrained backbone's patch "
                "features scored per grid cell by a pluggable scorer (" + ", ".join(registry.scorers) + "). "
                f"vadblocks {__version__}."
            ),
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
        training=collect(p for p, _ in TRAINING_PARAMS),
    )


def saved_values(registry: "Registry", values: Mapping[str, Any]) -> dict[str, Any]:
    """A saved model's parameter values, completed with the declared ``before`` value of each parameter
    the model predates (so a model keeps scoring as it did when it was trained)."""
    older = {p.name: p.before for p, _ in all_params(registry) if p.before is not None and p.name not in values}
    return {**older, **values}


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
            out.append(
                Param(
                    name,
                    ptype,
                    default,
                    base.help,
                    label=base.label,
                    options=options if ptype == "select" else None,
                    min=base.min,
                    max=base.max,
                    advanced=base.advanced,
                )
            )
        else:
            out.append(Param(name, ptype, default, item.get("help") or name, label=item.get("name"), options=options))
    return out


def to_args(registry: "Registry", config: BlockConfig) -> list[str]:
    """Container arguments (``--param value`` ...) for a validated configuration."""
    decl = {p.name: p for p, _ in all_params(registry)}
    args: list[str] = []
    for name, value in config.as_cli_values(registry).items():
        args += decl[name].to_arg(value)
    return args

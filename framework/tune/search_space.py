"""The space ``vadblocks tune`` searches, derived from the declared parameters (no tune-specific code).

Every :class:`~framework.params.Param` knows its type and valid values: a select is searched over its
options, a boolean over both values, a number over its declared range when it has both bounds, and a
plugin's :class:`~framework.params.Search` narrows or widens that (``search=False`` keeps a parameter
out). The scorer and the backbone are searched first and only the chosen plugins' parameters follow
(a conditional space). Values the user fixes on the command line are not searched. The image size is
searched too when the training images are larger than 96x96.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from framework.config import all_params, framework_params
from framework.errors import VadblocksError
from framework.params import BACKBONE_PARAM, SCORER_PARAM, Param, Search
from framework.plugins import Registry
from framework.train import augment
from framework.training_params import AUGMENT, TRAINING_PARAMS

if TYPE_CHECKING:  # pragma: no cover
    import optuna

IMAGE_SIZE = "image-size"
IMAGE_SIZES = (96, 128, 160, 192, 224, 256, 320)  # Edge Impulse's tool searches 96 to 320


def distribution(param: Param) -> "optuna.distributions.BaseDistribution | None":
    """The Optuna distribution ``param`` declares for tuning, or None when it is not searched."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.search is False:
        return None
    s = param.search if isinstance(param.search, Search) else Search()
    if param.type == "select":
        return CategoricalDistribution(list(s.choices or param.options or ()))
    if param.type in ("boolean", "flag"):
        return CategoricalDistribution([False, True])
    if param.type not in ("int", "float"):
        return None
    low = s.low if s.low is not None else param.min
    high = s.high if s.high is not None else param.max
    if low is None or high is None:
        return None  # an unbounded number is searched only when its plugin declares a range
    if param.type == "int":
        return IntDistribution(int(low), int(high), log=s.log, step=s.step or 1)
    return FloatDistribution(float(low), float(high), log=s.log)


def image_sizes(height: int, width: int) -> tuple[int, ...]:
    """Image sizes to search for training images of ``height`` x ``width``: 96..320 up to the smaller side
    (just that side, rounded down to a multiple of 8, below 96)."""
    side = min(height, width)
    sizes = tuple(s for s in IMAGE_SIZES if s <= side)
    return sizes or (side - side % 8,)


def _suggest(trial: "optuna.trial.Trial", name: str, dist: Any) -> Any:
    if hasattr(dist, "choices"):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist.low, int) and isinstance(dist.step, int):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    value = float(f"{trial.suggest_float(name, dist.low, dist.high, log=dist.log):.3g}")  # a readable setting
    return min(max(value, dist.low), dist.high)


def _contains(dist: Any, value: Any) -> bool:
    if hasattr(dist, "choices"):
        return value in dist.choices
    return dist.low <= value <= dist.high and (not getattr(dist, "step", None) or (value - dist.low) % dist.step == 0)


class SearchSpace:
    """Which values a trial may take: searched parameters, fixed ones, and the image sizes."""

    def __init__(
        self, registry: Registry, fixed: Mapping[str, Any], sizes: tuple[int, ...], square: bool = True
    ) -> None:
        self.registry = registry
        self.fixed = dict(fixed)
        self.sizes = tuple(sizes)
        self.square = square
        self.params = {p.name: p for p, _ in all_params(registry)}
        scorer_p, backbone_p = framework_params(registry)
        self.scorers = self._choices(scorer_p, registry.scorers)
        offline = tuple(n for n, e in registry.backbones.items() if e.cls.offline_weights)
        self.backbones = self._choices(backbone_p, offline or tuple(registry.backbones))

    def _choices(self, param: Param, available: Any) -> tuple[str, ...]:
        if param.name in self.fixed:
            return (str(self.fixed[param.name]),)
        names = tuple(n for n in (param.options or ()) if n in available)
        if not names:
            raise VadblocksError(f"nothing to tune for --{param.name}: no installed plugin qualifies")
        return names

    def plugin_params(self, scorer: str, backbone: str) -> list[Param]:
        """The parameters a trial with ``scorer`` on ``backbone`` sets: training, then the two plugins'."""
        return (
            [p for p, _ in TRAINING_PARAMS]
            + list(self.registry.scorer(scorer).cls.parameters)
            + list(self.registry.backbone(backbone).cls.parameters)
        )

    def _distribution(self, param: Param) -> "optuna.distributions.BaseDistribution | None":
        from optuna.distributions import CategoricalDistribution

        if param.name in self.fixed:
            return None
        dist = distribution(param)
        if param.name == AUGMENT.name and not self.square and dist is not None:
            dist = CategoricalDistribution([m for m in dist.choices if not augment.square_only(m)])
        return dist

    def suggest(self, trial: "optuna.trial.Trial") -> tuple[dict[str, Any], int]:
        """The values (kebab-case names) and image size of one trial."""
        values = dict(self.fixed)
        for name, choices in ((SCORER_PARAM, self.scorers), (BACKBONE_PARAM, self.backbones)):
            values[name] = choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)
        for p in self.plugin_params(values[SCORER_PARAM], values[BACKBONE_PARAM]):
            dist = self._distribution(p)
            if dist is not None:
                values[p.name] = _suggest(trial, p.name, dist)
        size = self.sizes[0] if len(self.sizes) == 1 else trial.suggest_categorical(IMAGE_SIZE, self.sizes)
        return values, int(size)

    def start(self, scorer: str | None = None, backbone: str | None = None) -> dict[str, Any]:
        """Parameters of the first trial: every searched parameter at its default (``scorer`` and ``backbone``
        if given and searched), at the largest image size up to 96, or the smallest size."""
        scorer = self._searched(scorer, SCORER_PARAM, self.scorers)
        backbone = self._searched(backbone, BACKBONE_PARAM, self.backbones)
        out: dict[str, Any] = {}
        if len(self.scorers) > 1:
            out[SCORER_PARAM] = scorer
        if len(self.backbones) > 1:
            out[BACKBONE_PARAM] = backbone
        for p in self.plugin_params(scorer, backbone):
            dist = self._distribution(p)
            if dist is not None and _contains(dist, p.default):
                out[p.name] = p.default
        if len(self.sizes) > 1:
            out[IMAGE_SIZE] = max([s for s in self.sizes if s <= 96] or [min(self.sizes)])
        return out

    def starts(self, scorer: str | None = None) -> list[dict[str, Any]]:
        """The first trials: :meth:`start`, then every other searched scorer at its defaults on the same
        backbone, then ``start``'s scorer at its defaults on every other searched backbone. Each plugin's
        declared defaults are its author's best guess, so the sampler sees every family at its best guess
        before it models the objectives."""
        chosen = self._searched(scorer, SCORER_PARAM, self.scorers)
        backbone = self._searched(None, BACKBONE_PARAM, self.backbones)
        return (
            [self.start(chosen, backbone)]
            + [self.start(s, backbone) for s in self.scorers if s != chosen]
            + [self.start(chosen, b) for b in self.backbones if b != backbone]
        )

    def _searched(self, name: str | None, param: str, choices: tuple[str, ...]) -> str:
        """``name`` if it is searched, else ``param``'s default if that is, else the first choice."""
        default = self.params[param].default
        return name if name in choices else default if default in choices else choices[0]

    def describe(self) -> list[str]:
        """One line per searched dimension (what `tune` prints at start)."""
        lines = [f"{SCORER_PARAM}: {', '.join(self.scorers)}", f"{BACKBONE_PARAM}: {', '.join(self.backbones)}"]
        seen = set()
        for scorer in self.scorers:
            for backbone in self.backbones:
                for p in self.plugin_params(scorer, backbone):
                    dist = self._distribution(p)
                    if dist is None or p.name in seen:
                        continue
                    seen.add(p.name)
                    if hasattr(dist, "choices"):
                        what = ", ".join(str(c) for c in dist.choices)
                    else:
                        what = (
                            f"{dist.low}..{dist.high}"
                            + (" (log)" if dist.log else "")
                            + (f" step {dist.step}" if getattr(dist, "step", None) not in (None, 1) else "")
                        )
                    lines.append(f"{p.name}: {what}")
        lines.append(f"{IMAGE_SIZE}: {', '.join(map(str, self.sizes))}")
        return lines

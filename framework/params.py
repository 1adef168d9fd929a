"""Parameters: declared once (by a plugin or by the framework), from which everything else is derived.

A plugin lists :class:`Param` objects. :mod:`framework.config` derives from them the items of
Edge Impulse's ``parameters.json``, the CLI options / container arguments and the validation of
user values. This module knows nothing of the plugin registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from framework.errors import VadblocksError

PARAM_TYPES = ("int", "float", "string", "select", "boolean", "flag")
SCORER_PARAM = "scoring-function"
BACKBONE_PARAM = "backbone"
DEFAULT_SCORER = "patchcore"
DEFAULT_BACKBONE = "mobilenetv2"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Search:
    """How ``vadblocks tune`` searches a parameter, where a plugin narrows or widens the default.

    Numbers: ``low``..``high`` (within the declared min/max), an integer ``step``, ``log`` spacing.
    Selects: ``choices``, a subset of the options.
    """

    low: float | None = None
    high: float | None = None
    step: int | None = None
    log: bool = False
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Param:
    """One declared setting of a plugin (or of the framework).

    ``name`` is the kebab-case CLI name and the ``param`` key in parameters.json;
    the estimator receives it as a snake_case keyword (:attr:`attr`).
    ``options`` lists the values of a ``select``; ``min``/``max`` bound numbers.
    ``search`` steers ``vadblocks tune``: None searches every option of a select or boolean and the
    declared range of a bounded number, a :class:`Search` narrows or widens that, False never searches it (True = None).
    ``before`` is the value a model saved without this parameter (older than it) keeps when loaded.
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
    search: Search | bool | None = None
    before: Any = None  # what models saved before this parameter existed used (None: the default)

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
        return self._search_problem()

    def _search_problem(self) -> str | None:
        s = self.search
        if s is None or isinstance(s, bool):
            return None
        if not isinstance(s, Search):
            return "search must be None, False or a Search"
        if self.type == "select":
            if not s.choices or not set(s.choices) <= set(self.options or ()):
                return f"search choices must be a non-empty subset of the options {list(self.options or ())}"
            return None
        if self.type not in ("int", "float"):
            return "only numbers and selects take a Search (booleans are searched over both values)"
        if s.low is None or s.high is None or s.low > s.high:
            return "a search range needs low <= high"
        for v in (s.low, s.high):
            try:
                self.parse(v)
            except VadblocksError:
                return f"search range {s.low}..{s.high} is outside the valid values ({self.describe_valid()})"
        if s.log and s.low <= 0:
            return "a log-spaced search range must be above 0"
        if s.step is not None and (self.type != "int" or s.step < 1 or s.log):
            return "a search step must be a positive integer on a linear integer range"
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
                number = float(raw)
            except (TypeError, ValueError):
                raise bad from None
            if not math.isfinite(number):
                raise bad
            self._check_range(number, raw)
            return number
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
            "help": self.help
            if self.type in ("select", "string", "boolean", "flag")
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


def known_values(values: Mapping[str, Any] | None, known: Iterable[str]) -> dict[str, Any]:
    """User values keyed by kebab-case name (``None`` dropped); unknown names raise one clear error."""
    values = {str(k).replace("_", "-"): v for k, v in (values or {}).items() if v is not None}
    known = list(known)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise VadblocksError(
            f"unknown parameter(s): {', '.join('--' + u for u in unknown)}; "
            f"known parameters: {', '.join('--' + n for n in known)}"
        )
    return values

"""A sampler whose first trials are given configurations (tune's starting points); it delegates the others.

Optuna's ``enqueue_trial`` would do this, but on SQLite two workers can both take one waiting trial
(``SELECT ... FOR UPDATE`` is a no-op there), so both run it and the second cannot report it. Trial numbers
are unique in every storage, so fixing trial ``n`` by its number cannot run twice. Imported only by tune (it
needs the optional ``optuna``).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial


class StartFirstSampler(optuna.samplers.BaseSampler):
    """Trial ``n`` takes ``starts[n]``'s values while there are (a parameter it lacks is sampled); later
    trials come from ``inner``."""

    def __init__(self, inner: optuna.samplers.BaseSampler, starts: list[dict[str, Any]]) -> None:
        self.inner = inner
        self.starts = [dict(s) for s in starts]

    def _start(self, trial: FrozenTrial) -> dict[str, Any] | None:
        return self.starts[trial.number] if trial.number < len(self.starts) else None

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """A starting trial has no relative (joint) space: each of its values is taken one by one."""
        return {} if self._start(trial) is not None else self.inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The inner sampler's joint values (none for a starting trial)."""
        return {} if self._start(trial) is not None else self.inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """The start value for a starting trial, else the inner sampler's."""
        start = self._start(trial)
        if start is not None and param_name in start:
            return start[param_name]
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Delegated."""
        self.inner.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: optuna.trial.TrialState, values: list[float] | None
    ) -> None:
        """Delegated."""
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Delegated."""
        self.inner.reseed_rng()

"""A sampler whose trial 0 is a given configuration (tune's starting point); it delegates every other trial.

Optuna's ``enqueue_trial`` would do this, but on SQLite two workers can both take the one waiting trial
(``SELECT ... FOR UPDATE`` is a no-op there), so both run it and the second cannot report it. Trial numbers
are unique in every storage, so fixing trial 0 by its number cannot run twice. Imported only by tune (it
needs the optional ``optuna``).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial


class StartFirstSampler(optuna.samplers.BaseSampler):
    """Trial 0 takes ``start``'s values (a parameter ``start`` lacks is sampled); later trials come from ``inner``."""

    def __init__(self, inner: optuna.samplers.BaseSampler, start: dict[str, Any]) -> None:
        self.inner = inner
        self.start = dict(start)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Trial 0 has no relative (joint) space: each of its values is taken one by one."""
        return {} if trial.number == 0 else self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """The inner sampler's joint values (none for trial 0)."""
        return {} if trial.number == 0 else self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """The start value for trial 0, else the inner sampler's."""
        if trial.number == 0 and param_name in self.start:
            return self.start[param_name]
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Delegated."""
        self.inner.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: optuna.trial.TrialState,
                    values: list[float] | None) -> None:
        """Delegated."""
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Delegated."""
        self.inner.reseed_rng()

"""The framework's own training settings, declared once like a plugin's (each next to the code it steers)."""

from __future__ import annotations

from framework.train.augment import AUGMENT
from framework.train.int8 import INT8_PRECISION
from framework.params import Param
from framework.train.thresholds import TARGET_FPR, THRESHOLD_POLICY
from framework.train.validation import VALIDATION

# (parameter, its parameters.json ``showIf`` or None)
TRAINING_PARAMS: tuple[tuple[Param, dict[str, str] | None], ...] = (
    (AUGMENT, None),
    (THRESHOLD_POLICY, None),
    (TARGET_FPR, {"parameter": THRESHOLD_POLICY.name, "operator": "eq", "value": "fpr"}),
    (VALIDATION, None),
    (INT8_PRECISION, None),
)

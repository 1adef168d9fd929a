"""The framework's own training settings, declared once like a plugin's.

Only the declarations live here (the plugin host and ``parameters.json`` need them without importing
training code); what each setting does lives in its area: ``framework/train/augment.py``,
``thresholds.py``, ``validation.py`` and ``int8.py``.
"""

from __future__ import annotations

from framework.params import Param

AUGMENT_MODES = ("none", "flips", "rot90", "dihedral")  # framework.train.augment.MODES implements each
THRESHOLD_POLICIES = ("max", "fpr", "f1")  # framework.train.thresholds.suggest implements each
INT8_PRECISIONS = ("mixed", "full")  # framework.train.int8 says what each keeps in float

AUGMENT = Param(
    "augment",
    "select",
    "flips",
    "Memory augmentation: copies of every training image added to what the scorer learns. none; "
    "flips (mirror images, 3x); rot90 (quarter turns, 4x); dihedral (flips and turns, 8x). "
    "More copies cover more of normal on textures that look the same turned, at a larger "
    "PatchCore memory bank (slower fit and inference)",
    label="Memory augmentation",
    options=AUGMENT_MODES,
)
THRESHOLD_POLICY = Param(
    "threshold-policy",
    "select",
    "f1",
    "How the suggested threshold is chosen without labelled anomalies: max (largest training "
    "score, as Edge Impulse does); fpr (conformal quantile of held-out normal scores at the "
    "target false positive rate); f1 (best F1 on held-out normal images against synthetic "
    "anomalies, never below the fpr threshold; needs validation)",
    label="Threshold policy",
    options=THRESHOLD_POLICIES,
    search=False,
)  # the policy moves the threshold, not what tune compares
TARGET_FPR = Param(
    "target-fpr",
    "float",
    0.1,
    "False positive rate on held-out normal images the fpr threshold policy aims at and the f1 policy never exceeds",
    label="Target false positive rate",
    min=0.001,
    max=0.5,
    search=False,
)
VALIDATION = Param(
    "validation",
    "boolean",
    True,
    "Estimate image AUROC, pixel AUROC, F1 and false positive rate at train time on held-out "
    "training images with synthetic anomalies (written to the metadata; adds a fraction of the "
    "fit time)",
    label="Validation at train time",
    search=False,
)  # tune measures every trial through validation
INT8_PRECISION = Param(
    "int8-precision",
    "select",
    "mixed",
    "What the int8 model file quantises (its input is int8 either way): mixed (the input "
    "normalisation and the backbone's first layers stay float: keeps the float model's accuracy "
    "on subtle defects, about 10 % slower on CPUs, more activation memory); full (every layer "
    "but the scorer int8: for microcontrollers without an FPU or with little RAM)",
    label="int8 precision",
    options=INT8_PRECISIONS,
    search=False,
)  # tune's low-power target fixes it to full; other runtimes do not use it

# (parameter, its parameters.json ``showIf`` or None)
TRAINING_PARAMS: tuple[tuple[Param, dict[str, str] | None], ...] = (
    (AUGMENT, None),
    (THRESHOLD_POLICY, None),
    (TARGET_FPR, {"parameter": THRESHOLD_POLICY.name, "operator": "neq", "value": "max"}),
    (VALIDATION, None),
    (INT8_PRECISION, None),
)

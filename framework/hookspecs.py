"""Hook specifications: the two hooks a vadblocks plugin can implement.

A plugin is a module (or object) listed under the ``vadblocks`` entry-point group
that implements one or both hooks with ``@framework.hookimpl``.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("vadblocks")
hookimpl = pluggy.HookimplMarker("vadblocks")


@hookspec
def register_backbones(register: Callable[[type], None]) -> None:
    """Register feature-extractor backbones.

    Call ``register(BackboneClass)`` once per backbone. ``BackboneClass`` subclasses
    :class:`framework.backbone.Backbone` and declares ``name``, ``description``,
    ``parameters``, ``levels`` (strides and channels of its feature maps) and
    ``normalization``; its ``build_module`` returns a torch module that maps an NCHW
    batch to a list of feature maps, stride 8 first.
    """


@hookspec
def register_scorers(register: Callable[[type], None]) -> None:
    """Register anomaly scorers (scoring functions).

    Call ``register(ScorerClass)`` once per scorer. ``ScorerClass`` subclasses
    :class:`framework.scorer.Scorer`: a scikit-learn style estimator with declared
    ``parameters``, ``fit(features)`` on normal data only, ``build_scoring_module()``
    returning the torch module that maps feature maps to the per-cell grid and image
    scores (``predict`` and every exported file run it), ``grid_size(input_width)``, and
    pickle-free ``get_state``/``set_state``; optionally ``holdout`` (validation without a refit) and
    ``holdout_predict`` (work shared between the held-out copies validation scores with).
    """

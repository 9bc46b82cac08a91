"""Attach the recipe's positive generators to a method, as submodules, before the optimizer exists.

``attach_positives(method, recipe)`` is called by the trainer right after the method is built (and
by :mod:`selfsup.bench_step`). Generators become submodules (``method.hallucinator``,
``method.feature_transform``), so their parameters are trained by the same optimizer, saved in
checkpoints and moved with the model. Recipes that make no sense raise a one-line
:class:`~selfsup.errors.ConfigError` naming the option.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import POSITIVES


def attach_positives(method, recipe) -> None:
    """Build the generators listed in ``recipe.positives`` and attach them to ``method``.

    Args:
        method: a :class:`~selfsup.methods.base.Method` (not yet wrapped for distribution).
        recipe: its :class:`~selfsup.config.Recipe`; ``recipe.positives`` holds typed configs.

    Both generators may be on at once (in MoCo the Hallucinator doubles the queries, then FT
    transforms the doubled batch's scores). Raises :class:`ConfigError` for unknown or duplicate
    generators, generators on methods they do not plug into, and invalid options.
    """
    positives = list(recipe.positives or [])
    if not positives:
        return
    try:
        device = next(method.parameters()).device
    except StopIteration:  # pragma: no cover - every method has a backbone
        device = None
    seen: dict[str, str] = {}
    for i, cfg in enumerate(positives):
        where = f"positives[{i}]"
        spec = next((s for _, s in POSITIVES.items() if type(cfg) is s.config), None)
        if spec is None:
            raise ConfigError(f"{where}: unknown positive generator {getattr(cfg, 'name', cfg)!r}")
        attr, build = spec.attr, spec.build
        if attr in seen:
            raise ConfigError(
                f"{where}: duplicate generator '{cfg.name}' (already {seen[attr]}); list each generator once"
            )
        if getattr(method, attr, None) is not None:
            raise ConfigError(f"{where}: the method already has a '{cfg.name}' attached")
        seen[attr] = where
        module = build(method, cfg, where)
        setattr(method, attr, module.to(device) if device is not None else module)

"""Attach the recipe's compatible-training term to a method (called by the trainer)."""

from __future__ import annotations


def attach_compat(method, recipe) -> None:
    """Load the frozen old model(s), precompute what the method needs and add its loss term.

    Does nothing when the recipe has no ``compat`` section. Raises
    :class:`~selfsup.errors.CheckpointError` when ``compat.old`` is unset, missing or not an
    encoder, and :class:`~selfsup.errors.ConfigError` for incomparable dimensions.
    """
    if recipe.compat is None:
        return
    from .common import COMPAT

    COMPAT.lookup(recipe.compat.name, "compat.name").attach(method, recipe, recipe.compat)

"""Attach the recipe's positive generators to a method (filled in by the positives modules)."""

from __future__ import annotations


def attach_positives(method, recipe) -> None:
    if recipe.positives:
        from ..errors import ConfigError

        raise ConfigError("positives: no positive generators are available in this build")

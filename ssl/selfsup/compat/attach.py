"""Attach compatible-training terms to a method (filled in by the compat modules)."""

from __future__ import annotations


def attach_compat(method, recipe) -> None:
    if recipe.compat is not None:
        from ..errors import ConfigError

        raise ConfigError("compat: compatible training is not available in this build")

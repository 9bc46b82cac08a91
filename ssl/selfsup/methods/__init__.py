"""Methods: one file each over :class:`~selfsup.methods.base.Method`."""

from __future__ import annotations

from .base import Method
from .moco import MoCo
from .simclr import SimCLR
from .simsiam import SimSiam
from .supervised import Supervised

METHODS: dict[str, type[Method]] = {m.name: m for m in (SimCLR, MoCo, SimSiam, Supervised)}
METHOD_CONFIGS: dict[str, type] = {name: m.Config for name, m in METHODS.items()}


def build_method(recipe) -> Method:
    """The recipe's method, with its backbone, heads and (after this call) positive generators."""
    return METHODS[recipe.method.name](recipe)


__all__ = ["METHODS", "METHOD_CONFIGS", "Method", "build_method"]

"""Methods: one file each over :class:`~selfsup.methods.base.Method`, registered by name.

Every module of this package is imported here, so a new method is one new file that decorates its
class with :func:`~selfsup.methods.base.register`; recipes then select it with ``method.name``.
"""

from __future__ import annotations

from ..utils.registry import import_submodules
from .base import METHODS, Method, register

import_submodules(__name__, __path__)


def build_method(recipe) -> Method:
    """The recipe's method with its backbone and heads (positives and compat terms attach later)."""
    return METHODS.lookup(recipe.method.name, "method.name")(recipe)


__all__ = ["METHODS", "Method", "build_method", "register"]

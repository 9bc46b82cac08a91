"""Losses as pure functions of tensors (shapes and equations in each docstring)."""

from .contrastive import info_nce, nt_xent
from .regression import negative_cosine

__all__ = ["info_nce", "negative_cosine", "nt_xent"]

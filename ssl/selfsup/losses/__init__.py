"""Losses as pure functions of tensors (shapes and equations in each docstring)."""

from .contrastive import info_nce, nt_xent
from .regression import negative_cosine
from .vicreg import covariance, invariance, variance, vicreg, vicreg_terms

__all__ = [
    "covariance",
    "info_nce",
    "invariance",
    "negative_cosine",
    "nt_xent",
    "variance",
    "vicreg",
    "vicreg_terms",
]

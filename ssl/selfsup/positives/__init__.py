"""Positive generators that plug into contrastive methods (Hallucinator, Feature Transformation).

Each generator's file defines its recipe config and a builder and registers both
(:func:`selfsup.positives.base.register`); recipes list generators under ``positives:`` and
:func:`selfsup.positives.attach.attach_positives` attaches them to a method.
"""

from ..utils.registry import import_submodules
from .base import POSITIVES

import_submodules(__name__, __path__)

__all__ = ["POSITIVES"]

"""Positive generators that plug into contrastive methods (Hallucinator, Feature Transformation).

Each generator has a config dataclass (with a ``name`` field) registered here; recipes list them
under ``positives:`` and :func:`selfsup.positives.attach.attach_positives` attaches them.
"""

from .feature_transform import FeatureTransformConfig
from .hallucinator import HallucinatorConfig

# name -> config dataclass (each with a ``name`` field).
POSITIVE_CONFIGS: dict[str, type] = {
    "hallucinator": HallucinatorConfig,
    "ft": FeatureTransformConfig,
    "feature_transform": FeatureTransformConfig,  # long alias of "ft"
}

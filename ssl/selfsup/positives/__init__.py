"""Positive generators that plug into contrastive methods (Hallucinator, Feature Transformation)."""

# name -> config dataclass (each with a ``name`` field); filled by the generator modules.
POSITIVE_CONFIGS: dict[str, type] = {}

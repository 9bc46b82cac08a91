"""Backward-compatible training against a frozen old model (BCT, BT², OCA)."""

# name -> config dataclass (each with a ``name`` field); filled by the compat modules.
COMPAT_CONFIGS: dict[str, type] = {}

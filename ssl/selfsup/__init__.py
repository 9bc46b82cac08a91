"""selfsup: self-supervised pretraining, evaluation and backward-compatible model updates."""

__version__ = "0.1.0"

"""Backbones (timm), projector/predictor heads and momentum encoders."""

from .backbones import create_backbone, load_backbone_file
from .heads import mlp

__all__ = ["create_backbone", "load_backbone_file", "mlp"]

"""Backbones (timm), heads, momentum encoders, and exported encoders."""

from .backbones import create_backbone
from .export import export_encoder, load_backbone, load_encoder, timm_kwargs
from .heads import mlp

__all__ = ["create_backbone", "export_encoder", "load_backbone", "load_encoder", "mlp", "timm_kwargs"]

"""The base of every method: a backbone, ``training_step(batch) -> dict``, parameter groups.

A method is an ``nn.Module`` whose ``forward`` is its training step (so DDP's gradient hooks see
it). The trainer knows nothing method-specific: it calls ``model(batch)``, backpropagates
``out["loss"]`` and logs the other scalars.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import MethodConfig, Recipe
from ..models.backbones import create_backbone
from ..utils.registry import Registry


class Method(nn.Module):
    name: str = "base"
    Config: type = MethodConfig
    # Normalisation the paper uses across devices when model.norm = auto: "syncbn" or "bn".
    paper_norm: str = "bn"

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.cfg = recipe.method
        self.backbone = create_backbone(recipe.model)
        self.feat_dim: int = self.backbone.num_features
        # Counts training steps; part of the state so resumed runs continue seeded streams exactly.
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        # Optimizer steps of the whole run, set by the trainer before training (momentum schedules).
        self.total_steps: int | None = None
        self.extra_terms = nn.ModuleList()

    def forward(self, batch: dict) -> dict:
        out = self.training_step(batch)
        # Extra loss terms (compatible training) see the batch and the step's outputs, including
        # ``out["feats"]``: backbone features ``[N, feat_dim]`` of the first view.
        for term in self.extra_terms:
            extra = term(self, batch, out)
            out["loss"] = out["loss"] + extra.pop("loss")
            out.update(extra)
        self.step += 1
        return out

    def training_step(self, batch: dict) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def encoder(self) -> nn.Module:
        """The network whose pooled features are evaluated and exported."""
        return self.backbone

    def frozen_modules(self) -> list[nn.Module]:
        """Modules not trained by gradient (momentum encoders): kept out of sync-BN and optimizers."""
        return []

    def local_norm_modules(self) -> list[nn.Module]:
        """Child modules whose BatchNorm stays per process when ``model.norm`` is syncbn."""
        return self.frozen_modules()

    def param_groups(self, weight_decay: float, exclude_bias_norm: bool = True) -> list[dict]:
        """Parameter groups; biases and norm weights get no weight decay (and no LARS scaling)."""
        decay, no_decay = [], []
        fixed_ids = {id(p) for p in self.fixed_lr_params()}
        fixed = []
        for _, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if id(p) in fixed_ids:
                fixed.append(p)
            elif exclude_bias_norm and p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
        ]
        if fixed:
            groups.append({"params": fixed, "weight_decay": weight_decay, "fixed_lr": True})
        return [g for g in groups if g["params"]]

    def fixed_lr_params(self) -> list[nn.Parameter]:
        """Parameters whose lr the schedule does not change (SimSiam's predictor)."""
        return []


# name -> Method subclass; each method file registers its class with @register.
METHODS: Registry[type[Method]] = Registry("method")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available to recipes as ``method.name: <cls.name>``."""
    METHODS.add(cls.name, cls)
    return cls

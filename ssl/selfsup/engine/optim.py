"""Optimizers (SGD, LARS, AdamW) and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as used by SimCLR/BYOL: SGD with a layer-wise trust ratio.

    ``update = g + wd * w``; ``update *= eta * ||w|| / ||update||`` for groups without
    ``lars_exclude``; then heavy-ball momentum. Biases and norm parameters are excluded from both
    weight decay and adaptation (``lars_exclude``), as in the SimCLR reference.
    """

    def __init__(
        self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02
    ):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if g["weight_decay"]:
                    d = d.add(p, alpha=g["weight_decay"])
                if not g.get("lars_exclude"):
                    w_norm, d_norm = torch.norm(p), torch.norm(d)
                    trust = torch.where(
                        (w_norm > 0) & (d_norm > 0), g["eta"] * w_norm / d_norm, torch.ones_like(w_norm)
                    )
                    d = d * trust
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.clone(d).detach()
                else:
                    buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])
        return loss


def build_optimizer(groups: list[dict], cfg, lr: float) -> torch.optim.Optimizer:
    for g in groups:
        g["base_lr"] = lr
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, eta=cfg.lars_eta)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas))
    raise ConfigError(f"optim.name: unknown optimizer '{cfg.name}'")


def peak_lr(cfg, global_batch: int) -> float:
    """The lr the run uses for global batch ``B``, by the paper's rule (``optim.lr_scaling``).

    ``linear``: lr x B / lr_base_batch (Goyal et al. 2017; MoCo, SimSiam); ``sqrt``:
    lr x sqrt(B / lr_base_batch) (SimCLR's LARS rule 0.075 x sqrt(B) is lr 0.075, base batch 1);
    ``none``: lr as given.
    """
    if cfg.lr_scaling == "linear":
        return cfg.lr * global_batch / cfg.lr_base_batch
    if cfg.lr_scaling == "sqrt":
        return cfg.lr * math.sqrt(global_batch / cfg.lr_base_batch)
    if cfg.lr_scaling == "none":
        return cfg.lr
    raise ConfigError(f"optim.lr_scaling: unknown rule '{cfg.lr_scaling}'")


def lr_rule(cfg, global_batch: int) -> str:
    """The lr rule in words, e.g. ``0.03 x 512 / 256 (linear)``: for the run header and report."""
    if cfg.lr_scaling == "linear":
        return f"{cfg.lr:g} x {global_batch} / {cfg.lr_base_batch} (linear)"
    if cfg.lr_scaling == "sqrt":
        return f"{cfg.lr:g} x sqrt({global_batch} / {cfg.lr_base_batch}) (sqrt)"
    return f"{cfg.lr:g} as given (no scaling)"


class WarmupCosine:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * peak`` (or constant, or step decay).

    Per optimizer step. ``schedule="step"`` multiplies the lr by ``gamma`` at each of
    ``milestones`` (steps; MoCo v1's x0.1 at epochs 120 and 160). Groups flagged ``fixed_lr`` keep
    their base lr (SimSiam's predictor).
    """

    def __init__(
        self,
        optimizer,
        total_steps: int,
        warmup_steps: int,
        schedule: str = "cosine",
        min_ratio: float = 0.0,
        milestones: list[int] | tuple[int, ...] = (),
        gamma: float = 0.1,
    ):
        self.opt = optimizer
        self.total = max(1, total_steps)
        self.warmup = warmup_steps
        self.schedule = schedule
        self.min_ratio = min_ratio
        self.milestones = sorted(milestones)
        self.gamma = gamma
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "step":
            return self.gamma ** sum(step >= m for m in self.milestones)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def _apply(self) -> None:
        f = self.factor(self.last_step)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] if g.get("fixed_lr") else g["base_lr"] * f

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"last_step": self.last_step}

    def load_state_dict(self, sd: dict) -> None:
        self.last_step = int(sd["last_step"])
        self._apply()

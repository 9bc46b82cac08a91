"""Hallucinator: one extra positive per sample, generated in embedding space.

Wu, Hobbs, Hovakimyan, "Hallucination Improves the Performance of Unsupervised Visual
Representation Learning", ICCV 2023, arXiv 2307.12168 (notes:
``docs/methods/hallucinator.md``).

Per training step the generator draws ONE ``r ~ U(0, r_max)`` (shared by every sample and
dimension), extrapolates each embedding away from its positive, ``x_ex = x + r (x - a)``, and maps
``[x, x_ex]`` through a 3-layer MLP without BatchNorm. The output ``[x; h]`` doubles the batch; the
hallucinated rows get the unchanged base loss (no extra term). The MLP is a submodule of the method
and is trained by the same optimizer from the first step.

Where it plugs in (``x`` / anchor ``a``; gradient through ``a``):

- MoCo v1/v2: un-normalised projector output q / normalised momentum key k (no gradient: key
  branch). ``q' = normalize(G(q, k))`` ``[2N, d]``, positives ``[k; k]``.
- SimCLR: raw projection of view 1 / raw projection of view 2 (gradient flows). NT-Xent on
  ``G(z1, z2)`` ``[2N, d]`` against ``[z2; z2]``.
- SimSiam: prediction p1 / p2 and p2 / p1 (the ORIGINAL p1), with independent draws of r;
  targets z duplicated (and detached, as SimSiam always does).

Official quirks, each behind an option whose default is the official behaviour:

- ``enqueue_duplicates`` (MoCo; default ``True`` = official): the queue receives ``[k; k]``, so it
  holds about ``K / 2`` distinct keys. ``False`` (clean): each key is enqueued once.
- ``duplicate_negatives`` (SimCLR; default ``True`` = official): NT-Xent on ``[z1; h]`` vs
  ``[z2; z2]`` puts the copy of ``z2_i`` (identical to ``z1_i``'s positive) in ``z1_i``'s
  denominator, and ``z1_i`` / ``h_i`` are negatives of each other. ``False`` (clean): every other
  row of the same source image except the anchor's own positive is removed from its denominator.

Unlike the official code the dimensions are derived from the model (MoCo/SimCLR: projector output
``d``; SimSiam: predictor output), with ``hidden = min(2 d, 1024)`` by default (256 for d = 128 and
1024 for d = 512, the official sizes). The cap keeps the generator near the official size where the
embedding is wider than the official code's: SimSiam at the paper's 2048 dims would otherwise get
a 4096-wide generator of 42M parameters (more than a ResNet-50); capped it has 7.3M (official:
2.6M at 512 dims). The MoCo queue is written modulo its size, so ``K`` need not be
divisible by ``2 * batch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import ConfigError
from .base import register

# The official generators' widest hidden layer (SimSiam's); the default never exceeds it.
MAX_DEFAULT_HIDDEN = 1024


@dataclass
class HallucinatorConfig:
    """Recipe options of ``positives: [{name: hallucinator, ...}]``."""

    name: str = "hallucinator"
    r_max: float = 0.1  # r ~ U(0, r_max), one draw per step (paper: 0.1)
    dim: int | None = None  # None: the model's embedding width; set it to assert that width
    hidden: int | None = None  # MLP hidden width; None: min(2 * dim, 1024) (the official 256 / 1024)
    enqueue_duplicates: bool = True  # MoCo: enqueue [k; k] (official) or k once (False, clean)
    duplicate_negatives: bool = True  # SimCLR: same-image copies count as negatives (official)

    def resolve(self, recipe) -> None:
        """Unset widths become the values used, so that the run's config.yaml records them."""
        spec = HALLUCINATOR_DIM.get(recipe.method.name)
        if spec is None:
            return  # build() refuses the method
        dim = getattr(recipe.method, spec[0].split(".", 1)[1], None)
        if self.dim is None and isinstance(dim, int):
            self.dim = dim
        if self.hidden is None and self.dim is not None:
            self.hidden = min(2 * self.dim, MAX_DEFAULT_HIDDEN)


class Hallucinator(nn.Module):
    """The generator ``G(x, a)``: ``[N, d]`` x ``[N, d]`` -> ``[2 N, d]`` (originals first).

    Args:
        dim: embedding width ``d`` of ``x`` and ``a`` (and of the output).
        hidden: hidden width of the MLP ``2d -> hidden -> hidden -> d``.
        r_max: upper bound of the extrapolation strength ``r ~ U(0, r_max)``.
    """

    def __init__(self, dim: int, hidden: int | None = None, r_max: float = 0.1) -> None:
        super().__init__()
        hidden = hidden or 2 * dim
        self.dim, self.r_max = dim, float(r_max)
        # No BatchNorm and no output activation (paper): G must not renormalise the embeddings.
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, dim),
        )
        self.last_r: float = 0.0  # the most recent draw, logged as ``hallucinator_r``

    def draw_r(self) -> float:
        """One ``r ~ U(0, r_max)`` from torch's global CPU generator.

        The global generator is seeded identically on every process and is part of the
        checkpoint's RNG state, so the draw is reproducible, equal across processes and continues
        exactly after a resume. Drawing on the CPU keeps the GPU stream free of a sync.
        """
        self.last_r = float(torch.rand(())) * self.r_max
        return self.last_r

    def forward(self, x: torch.Tensor, anchor: torch.Tensor, r: float | None = None) -> torch.Tensor:
        """``[x; MLP([x, x + r (x - a)])]``.

        Args:
            x: ``[N, d]`` embeddings to hallucinate from (gradient flows).
            anchor: ``[N, d]`` each row's positive; gradient flows through it unless the caller
                detaches it (MoCo's keys come from the no-grad momentum branch).
            r: extrapolation strength; ``None`` draws a fresh one (one per call = per step).

        Returns:
            ``[2 N, d]``: the ``N`` original rows, then the ``N`` hallucinated ones.
        """
        if r is None:
            r = self.draw_r()
        x_ex = x + r * (x - anchor)
        h = self.mlp(torch.cat([x, x_ex], dim=1))
        return torch.cat([x, h], dim=0)


def same_sample_mask(ids_anchor: torch.Tensor, ids_cand: torch.Tensor, pos_idx: torch.Tensor) -> torch.Tensor:
    """``[A, C]`` bool: candidate ``j`` shows the same image as anchor ``i`` and is not its positive.

    Used by the clean SimCLR variant (``duplicate_negatives: false``) to drop same-image copies from
    the NT-Xent denominator. ``ids_*`` are global source-image ids; ``pos_idx`` ``[A]`` the column of
    each anchor's positive.
    """
    mask = ids_anchor[:, None] == ids_cand[None, :]
    mask[torch.arange(len(pos_idx), device=pos_idx.device), pos_idx] = False
    return mask


# The width the Hallucinator works in, per method.
HALLUCINATOR_DIM = {
    "moco": ("method.dim", "projector output"),
    "simclr": ("method.proj_dim", "projector output"),
    "simsiam": ("method.proj_dim", "predictor output"),
}
FT_METHODS = ("moco", "simclr")  # methods with negatives


def _choice(value: str, valid: tuple[str, ...], where: str) -> None:
    if value not in valid:
        raise ConfigError(f"{where}: '{value}' is not one of {', '.join(valid)}")


def build(method, cfg: HallucinatorConfig, where: str) -> Hallucinator:
    """The generator for ``method``, sized from its embedding width; refuses nonsense."""
    name = method.name
    if name not in HALLUCINATOR_DIM:
        raise ConfigError(
            f"{where}: the hallucinator plugs into {', '.join(HALLUCINATOR_DIM)}, not method '{name}'"
        )
    key, what = HALLUCINATOR_DIM[name]
    dim = int(getattr(method.cfg, key.split(".", 1)[1]))
    if cfg.dim is not None and cfg.dim != dim:
        raise ConfigError(
            f"{where}.dim={cfg.dim} does not match the {name} {what} width {dim} ({key}); "
            f"drop {where}.dim or set it to {dim}"
        )
    if cfg.hidden is not None and cfg.hidden < 1:
        raise ConfigError(f"{where}.hidden: must be a positive width, got {cfg.hidden}")
    if cfg.r_max < 0:
        raise ConfigError(f"{where}.r_max: must be >= 0 (r ~ U(0, r_max)), got {cfg.r_max}")
    if not cfg.enqueue_duplicates and name != "moco":
        raise ConfigError(f"{where}.enqueue_duplicates applies to moco (its queue), not {name}")
    if not cfg.duplicate_negatives and name != "simclr":
        raise ConfigError(f"{where}.duplicate_negatives applies to simclr (in-batch negatives), not {name}")
    gen = Hallucinator(dim, cfg.hidden, cfg.r_max)
    gen.cfg = cfg
    return gen


register("hallucinator", HallucinatorConfig, "hallucinator", build)

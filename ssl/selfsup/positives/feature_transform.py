"""Feature Transformation (FT): positive extrapolation and negative interpolation on scores.

Zhu, Zhao, Liu, Sun, Chen, "Improving Contrastive Learning by Visualizing Feature
Transformation", ICCV 2021, arXiv 2108.02982 (notes:
``docs/methods/ft.md``).

FT is parameter-free. It acts on the L2-normalised embeddings just before scoring:

- positive extrapolation, ``lam_ex = 1 + Beta(pos_alpha, pos_alpha)`` in (1, 2), applied
  symmetrically::

      q_hat = lam_ex q + (1 - lam_ex) k,   k_hat = lam_ex k + (1 - lam_ex) q

  ``k_hat`` is built from ``q``, so gradient flows into ``q`` through BOTH ``q_hat`` and ``k_hat``:
  ``d<q_hat, k_hat>/dq = lam k_hat + (1 - lam) q_hat``. For unit q, k with
  cosine c the positive score becomes ``(lam^2 + (1 - lam)^2) c + 2 lam (1 - lam)`` (< c);
- negative interpolation, ``lam_in = Beta(neg_alpha, neg_alpha)`` in (0, 1), mixing every
  negative with a random permutation of the negatives: ``n_hat = lam_in n + (1 - lam_in) n[perm]``.
  In MoCo the negatives are a COPY of the queue; the stored queue is never modified and always
  receives the un-mixed keys (the official DDP behaviour).

No re-normalisation after mixing (``postmix_norm: false``, the README runs), so the scores are dot
products of non-unit vectors; ``selfsup.losses.contrastive.info_nce`` does not re-normalise either.

By default (official README flags) each lambda is ONE scalar per step (``per_element: none``);
``per_element`` = pos / neg / both draws one lambda per element of the positive pairs / negatives
(the official ``dim_mask``). FT is active when ``epoch > start_epoch`` with epochs counted from 1
(``mix_start_epoch``, default 0 = always).

Collapse (see ``docs/methods/ft.md``): for unit q, k with cosine c the extrapolated positive score
is ``1 - s (1 - c)`` with ``s = lam^2 + (1 - lam)^2`` in (1, 5) (mean 2.6 for Beta(2, 2)), so
extrapolation multiplies every positive pair's distance by ``s`` while the negatives' mean score
is unchanged (a permutation does not move the mean of the interpolated queue). Near a collapsed
embedding, gradient descent then contracts it further unless the two views' deviations correlate
by more than ``1 - E[lam] / E[s]`` (0.42; :func:`critical_invariance`), where plain InfoNCE only
needs a positive correlation. ``rho = 1 - (1 - pos_cos) / (1 - neg_cos)``
(:func:`selfsup.report.collapse.view_invariance`)
estimates that correlation from the score statistics. A randomly initialised encoder starts close
to a collapse, and on the embedded digits no encoder gets far above 0.4, so FT collapses there.
``min_invariance`` (not in the official code; 0 = off, the official behaviour) gates FT on the
previous epoch's measured ``rho``; each epoch that does not reach it trains without FT.

Randomness: per-step lambdas and the permutation come from torch's global CPU generator (seeded
identically on every process, part of the checkpoint's RNG state); per-element lambdas from the
generator of the tensors' device. Per-element positive lambdas are drawn for the global batch and
sliced to this process's rows, so N processes draw what one process would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..report.collapse import view_invariance
from ..utils.dist import rank, world_size
from .base import choice, register


@dataclass
class FeatureTransformConfig:
    """Recipe options of ``positives: [{name: ft, ...}]`` (official option names in comments)."""

    name: str = "ft"
    target: str = "posneg"  # pos | neg | posneg (mixnorm_target; README run: posneg)
    pos_alpha: float = 2.0  # Beta parameter of lam_ex - 1 (pos_alpha)
    neg_alpha: float = 1.6  # Beta parameter of lam_in (neg_alpha)
    distribution: str = "beta"  # beta | uniform (mask_distribution); uniform: U(0, 1)
    per_element: str = "none"  # none | pos | neg | both (dim_mask): per-element lambdas
    start_epoch: int = 0  # active when epoch > start_epoch, epochs from 1 (mix_start_epoch)
    postmix_norm: bool = False  # re-normalise after mixing (off in the official runs)
    # Extension (not official): FT trains an epoch only if the previous epoch's view invariance
    # rho = 1 - (1 - pos_cos) / (1 - neg_cos) reached this; 0 = off. critical_invariance() is the
    # value below which positive extrapolation contracts the embedding (0.42 for Beta(2, 2)).
    min_invariance: float = 0.0


class FeatureTransform(nn.Module):
    """Score-level feature transformation; holds no parameters, only the current epoch.

    The ``epoch`` buffer (1-based, the epoch being trained) is advanced by the method's
    ``on_epoch_end`` and saved in checkpoints, so a resumed run keeps the ``start_epoch`` gate;
    ``gate_open`` (the ``min_invariance`` gate, set from the last epoch's statistics) likewise.
    """

    def __init__(self, cfg: FeatureTransformConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("epoch", torch.ones((), dtype=torch.long))
        # Closed until an epoch's statistics show enough invariance. Only gated runs carry it, so
        # checkpoints of ungated runs keep their layout (None is a registered, unsaved buffer).
        self.register_buffer("gate_open", torch.tensor(False) if cfg.min_invariance > 0 else None)

    @property
    def active(self) -> bool:
        gate = self.gate_open is None or bool(self.gate_open)
        return int(self.epoch) > self.cfg.start_epoch and gate

    def end_epoch(self, epoch: int, record: dict | None) -> None:
        """Advance to epoch ``epoch + 1`` and set the invariance gate from ``record``.

        Args:
            epoch: the epoch just trained (1-based).
            record: its score statistics (:meth:`ScoreTracker.epoch_record`, identical on every
                process), or ``None`` (no statistics: the gate keeps its state).
        """
        self.epoch.fill_(int(epoch) + 1)
        if self.gate_open is not None and record is not None:
            # Near a collapse rho is a ratio of rounding errors: a collapsed epoch shuts the gate.
            rho = None if record.get("collapsed") else view_invariance(record)
            self.gate_open.fill_(rho is not None and rho >= self.cfg.min_invariance)

    @property
    def mixes_pos(self) -> bool:
        return self.cfg.target in ("pos", "posneg")

    @property
    def mixes_neg(self) -> bool:
        return self.cfg.target in ("neg", "posneg")

    def _draw(self, alpha: float, shape: tuple[int, ...] = (), device=None) -> torch.Tensor | float:
        """Beta(alpha, alpha) or U(0, 1): a Python float for ``shape == ()``, else a tensor."""
        if shape == ():
            if self.cfg.distribution == "uniform":
                return float(torch.rand(()))
            a = torch.tensor(float(alpha))
            return float(torch.distributions.Beta(a, a).sample())
        if self.cfg.distribution == "uniform":
            return torch.rand(shape, device=device)
        a = torch.tensor(float(alpha), device=device)
        return torch.distributions.Beta(a, a).sample(shape)

    def extrapolate(
        self, q: torch.Tensor, k: torch.Tensor, rows: tuple[torch.Tensor, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive extrapolation (FT paper, Sec. 4.1), identity when ``target`` is ``neg``.

        Args:
            q: ``[B, d]`` anchors (unit, with gradient).
            k: ``[B, d]`` their positives (unit; detached in MoCo, not in SimCLR).
            rows: for per-element lambdas, ``(positions [B], total)``: where these rows sit in the
                global batch as one process orders it. Default: rank-major blocks of ``B``.

        Returns:
            ``q_hat, k_hat``, ``[B, d]`` each; ``k_hat`` depends on ``q`` (not detached).
        """
        if not self.mixes_pos:
            return q, k
        if self.cfg.per_element in ("pos", "both"):
            b = q.shape[0]
            if rows is None:
                rows = (torch.arange(b, device=q.device) + rank() * b, b * world_size())
            # Draw for the global batch and keep this rank's rows: N processes == 1 process.
            lam = 1.0 + self._draw(self.cfg.pos_alpha, (rows[1], q.shape[1]), q.device)
            lam = lam[rows[0]].to(q.dtype)
        else:
            lam = 1.0 + self._draw(self.cfg.pos_alpha)
        q_hat = lam * q + (1 - lam) * k
        k_hat = lam * k + (1 - lam) * q
        if self.cfg.postmix_norm:
            q_hat, k_hat = F.normalize(q_hat, dim=1), F.normalize(k_hat, dim=1)
        return q_hat, k_hat

    def interpolate(self, negatives: torch.Tensor) -> torch.Tensor:
        """Negative interpolation (FT paper, Sec. 4.2), identity when ``target`` is ``pos``.

        Args:
            negatives: ``[K, d]`` negatives, identical on every process (a copy of the MoCo queue,
                or SimCLR's gathered in-batch candidates). Never modified in place.

        Returns:
            ``[K, d]``: ``lam_in * negatives + (1 - lam_in) * negatives[perm]``.
        """
        if not self.mixes_neg:
            return negatives
        n = negatives.shape[0]
        perm = torch.randperm(n).to(negatives.device)
        if self.cfg.per_element in ("neg", "both"):
            lam = self._draw(self.cfg.neg_alpha, tuple(negatives.shape), negatives.device)
            lam = lam.to(negatives.dtype)
        else:
            lam = self._draw(self.cfg.neg_alpha)
        # lam * negatives + (1 - lam) * negatives[perm] as a + lam (b - a) in place on the permuted
        # copy: one K x d allocation and two passes (the queue is the largest tensor of the step).
        mixed = negatives.index_select(0, perm).lerp_(negatives, lam)
        return F.normalize(mixed, dim=1) if self.cfg.postmix_norm else mixed


def extrapolated_positive_score(c: float, lam: float) -> float:
    """Closed form of ``<q_hat, k_hat>`` for unit ``q, k`` with cosine ``c``.

    Equals ``1 - s (1 - c)`` with ``s = lam^2 + (1 - lam)^2``: the pair's distance times ``s``.
    """
    return (lam**2 + (1 - lam) ** 2) * c + 2 * lam * (1 - lam)


def mean_stretch(cfg: FeatureTransformConfig) -> float:
    """``E[s]``, ``s = lam^2 + (1 - lam)^2`` with ``lam = 1 + u``: ``2 + 2 E[u^2]``.

    ``u ~ Beta(a, a)``: ``E[u^2] = 1/4 + 1 / (4 (2a + 1))`` (2.6 for a = 2); ``u ~ U(0, 1)``:
    ``1/3``. Without FT's positive target the positive scores are not stretched: 1.
    """
    if cfg.target == "neg":
        return 1.0
    eu2 = 1.0 / 3.0 if cfg.distribution == "uniform" else 0.25 + 0.25 / (2 * cfg.pos_alpha + 1)
    return 2.0 + 2.0 * eu2


def critical_invariance(cfg: FeatureTransformConfig | None = None, lam: float | None = None) -> float:
    """The view invariance below which FT's positive extrapolation contracts the embedding.

    Near a collapsed embedding (every vector close to one unit direction ``v``), write each unit
    vector as ``v`` plus a small deviation ``e d``. To first order in ``e``, the gradient of FT's
    InfoNCE with respect to a query's raw (un-normalised) projection, along the deviations, is
    ``(e / T) [(s - lam) d_q - s d_k]`` (``d_k``: its key's deviation; the queue's mean deviation,
    about 0, drops out and negative interpolation does not move it). Descent grows ``|d_q|`` only
    if ``corr(d_q, d_k) > 1 - lam / s``; plain InfoNCE (``lam = s = 1``) needs only a positive
    correlation. For one ``lam``: ``1 - lam / s``; averaged over FT's draws (the SGD average of a
    gradient linear in ``lam`` and ``s``): ``1 - E[lam] / E[s]`` = 0.423 for Beta(2, 2), reaching
    0.6 on steps with ``lam`` near 2.
    """
    if lam is not None:
        return 1.0 - lam / (lam**2 + (1 - lam) ** 2)
    cfg = cfg or FeatureTransformConfig()
    if cfg.target == "neg":
        return 0.0
    return 1.0 - 1.5 / mean_stretch(cfg)  # E[lam] = 1.5: Beta(a, a) and U(0, 1) are symmetric


FT_METHODS = ("moco", "simclr")  # methods with negatives


def build(method, cfg: FeatureTransformConfig, where: str) -> FeatureTransform:
    """FT for ``method`` (which must have negatives); refuses invalid option combinations."""
    if method.name not in FT_METHODS:
        raise ConfigError(
            f"{where}: ft transforms positive AND negative scores; method '{method.name}' has no "
            f"negatives (use it with {' or '.join(FT_METHODS)})"
        )
    choice(cfg.target, ("pos", "neg", "posneg"), f"{where}.target")
    choice(cfg.distribution, ("beta", "uniform"), f"{where}.distribution")
    choice(cfg.per_element, ("none", "pos", "neg", "both"), f"{where}.per_element")
    for key in ("pos_alpha", "neg_alpha"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{where}.{key}: Beta parameters must be > 0, got {getattr(cfg, key)}")
    if cfg.start_epoch < 0:
        raise ConfigError(f"{where}.start_epoch: must be >= 0 (0 = from the first epoch)")
    if not 0.0 <= cfg.min_invariance < 1.0:
        raise ConfigError(
            f"{where}.min_invariance: must be in [0, 1) (0 = off; {critical_invariance(cfg):.3f} is the "
            f"value below which positive extrapolation contracts the embedding), got {cfg.min_invariance}"
        )
    if cfg.per_element in ("pos", "both") and cfg.target == "neg":
        raise ConfigError(f"{where}.per_element={cfg.per_element} needs target pos or posneg (target is neg)")
    if cfg.per_element in ("neg", "both") and cfg.target == "pos":
        raise ConfigError(f"{where}.per_element={cfg.per_element} needs target neg or posneg (target is pos)")
    return FeatureTransform(cfg)


register("ft", FeatureTransformConfig, "feature_transform", build, aliases=("feature_transform",))

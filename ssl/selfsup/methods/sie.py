"""SIE, Split Invariant-Equivariant (Garrido, Najman, LeCun, ICML 2023, arXiv 2302.10283).

The representation ``h`` ``[B, F]`` is split: the first ``F - equi_dims`` dimensions are the
invariant part, the last ``equi_dims`` the equivariant part. Each part has its own expander, whose
widths are the nominal ``mlp`` scaled by the part's share of ``F`` (512 = 256 + 256 with
2048-2048-2048 gives 1024-1024-1024 each). With ``z_inv``, ``z_eq`` the two parts' embeddings of
views 1 and 2, ``Z = [z_inv, z_eq]`` and the transformation ``t`` between the views (quaternion of
``R1^-1 R2``, plus the two hue deltas with ``transform: rotation_color``):

    p      = W(t) z_eq1                                  # hypernetwork predictor, models.hypernet
    L_inv  = mse(z_inv1, z_inv2)                          # local batch
    L_eq   = mse(p, z_eq2)                                # local batch
    L_var  = (v(Z1) + v(Z2)) / 2                          # global batch (losses.vicreg.variance)
    L_pvar = v(p) / 2                                     # global batch; off with pred_variance: false
    L_cov  = c(Z1) + c(Z2)                                # global batch, on the concatenation
    L = inv_coeff L_inv + inv_coeff equi_factor L_eq + std_coeff (L_var + L_pvar) + cov_coeff L_cov

Covariance on the concatenation penalises the invariant/equivariant cross-covariance on purpose,
to push information shared by the parts into one of them. Both views get gradients (no
stop-gradient, no EMA). ``only_equi`` is SIE-OnlyEqui: the whole representation is equivariant,
one expander of the nominal widths, and ``L = inv_coeff L_eq + std (L_var + L_pvar) + cov L_cov``.

Departures from the reference code (each a deliberate choice, see docs/methods/sie.md): no online
evaluator (it trains probes on detached features and cannot change the encoder; selfsup evaluates
after training), and the predictor never materialises the ``B x D x D`` weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..config import MethodConfig
from ..errors import ConfigError
from ..losses.vicreg import covariance, invariance, variance
from ..models.heads import expander
from ..models.hypernet import HyperPredictor
from .base import Method, register
from .vicreg import check_mlp

TRANSFORMS = {"rotation": 4, "rotation_color": 6}  # transformation -> its width


@dataclass
class SIEConfig(MethodConfig):
    name: str = "sie"
    equi_dims: int = 256  # last equi_dims dims of the representation are equivariant (reference: --equi 256)
    only_equi: bool = False  # SIE-OnlyEqui: no split, the whole representation is equivariant
    mlp: list[int] = field(default_factory=lambda: [2048, 2048, 2048])  # nominal expander, scaled per part
    transform: str = "rotation"  # rotation (4-d quaternion) | rotation_color (+ floor and spot hue deltas)
    hypernetwork: str = "linear"  # linear (the paper's) | deep (two K x K ReLU layers first)
    hypernet_bias: bool = False  # bias in the hypernetwork (reference: --bias-hypernet, off)
    inv_coeff: float = 10.0  # weight of the invariance term (reference: --sim-coeff 10)
    equi_factor: float = 0.45  # prediction weight = inv_coeff x equi_factor = 4.5 (README's run)
    std_coeff: float = 10.0  # variance weight, also on the predictions
    cov_coeff: float = 1.0  # covariance weight
    pred_variance: bool = True  # variance hinge on the predictions; false = SIE-NoVar
    gather: bool = True  # variance and covariance over the batches of every process

    def check(self, recipe) -> None:
        if self.transform not in TRANSFORMS:
            raise ConfigError(
                f"method.transform: expected rotation or rotation_color, got '{self.transform}'"
            )
        if self.hypernetwork not in ("linear", "deep"):
            raise ConfigError(f"method.hypernetwork: expected linear or deep, got '{self.hypernetwork}'")
        check_mlp(self.mlp)
        if not self.only_equi and self.equi_dims < 1:
            raise ConfigError(f"method.equi_dims: must be at least 1, got {self.equi_dims}")
        if not getattr(recipe.data, "pairs", False):
            src = recipe.data.source
            where = (
                "" if src in ("render3d", "3diebench") else f" (data.source={src} has no rotation latents)"
            )
            raise ConfigError(
                "method sie trains on pairs of views with their relative rotation: set data.pairs: true "
                f"and data.source to render3d or 3diebench{where}"
            )


def part_dims(cfg: SIEConfig, feat_dim: int) -> tuple[int, int]:
    """``(invariant, equivariant)`` widths of the representation; checks the split fits."""
    if cfg.only_equi:
        return 0, feat_dim
    e = int(cfg.equi_dims)
    if not 0 < e < feat_dim:
        raise ConfigError(
            f"method.equi_dims={e} does not fit the backbone's {feat_dim} features: choose 1..{feat_dim - 1} "
            "(e.g. half of them), or set method.only_equi: true for a fully equivariant representation"
        )
    return feat_dim - e, e


def scaled_mlp(mlp: list[int], share: float) -> list[int]:
    """A part's expander widths: the nominal ones times its share of the representation, rounded."""
    return [max(1, int(round(int(d) * share))) for d in mlp]


def head_specs(cfg: SIEConfig, feat_dim: int) -> dict:
    """What evaluations need to rebuild the equivariant expander and the predictor."""
    n_inv, n_eq = part_dims(cfg, feat_dim)
    dims = [int(d) for d in cfg.mlp] if cfg.only_equi else scaled_mlp(cfg.mlp, n_eq / feat_dim)
    return {
        "repr_dim": feat_dim,
        "equi_dims": n_eq,
        "transform": cfg.transform,
        "projector": {"in_dim": n_eq, "dims": dims},
        "predictor": {
            "dim": dims[-1],
            "latent_dim": TRANSFORMS[cfg.transform],
            "hypernetwork": cfg.hypernetwork,
            "bias": cfg.hypernet_bias,
        },
    }


@register
class SIE(Method):
    name = "sie"
    Config = SIEConfig
    paper_norm = "syncbn"

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        c = self.cfg
        c.check(recipe)  # also when built from a recipe object made without load_recipe
        self.n_inv, self.n_eq = part_dims(c, self.feat_dim)
        self.specs = head_specs(c, self.feat_dim)
        if not c.only_equi:
            self.projector_inv = expander(self.n_inv, scaled_mlp(c.mlp, self.n_inv / self.feat_dim))
        self.projector_equi = expander(self.n_eq, self.specs["projector"]["dims"])
        p = self.specs["predictor"]
        self.predictor = HyperPredictor(p["dim"], p["latent_dim"], p["hypernetwork"], p["bias"])

    def transformation(self, batch: dict) -> torch.Tensor:
        """``[B, 4]`` quaternion of R1^-1 R2, or ``[B, 6]`` with the floor and spot hue deltas."""
        if "quat" not in batch:
            raise ConfigError(
                "method sie needs batches with 'quat' (data.pairs: true on render3d or 3diebench)"
            )
        t = batch["quat"].float()
        if self.cfg.transform == "rotation_color":
            t = torch.cat([t, batch["color_delta"].float()], 1)
        return t

    def training_step(self, batch: dict) -> dict:
        c = self.cfg
        v1, v2 = batch["views"][:2]
        t = self.transformation(batch)
        # One backbone pass per view: BN statistics per view, as the reference code.
        h1, h2 = self.backbone(v1), self.backbone(v2)
        e1 = self.projector_equi(h1[:, self.n_inv :])
        e2 = self.projector_equi(h2[:, self.n_inv :])
        if c.only_equi:
            z1, z2 = e1, e2
            l_inv = h1.new_zeros(())
        else:
            i1, i2 = self.projector_inv(h1[:, : self.n_inv]), self.projector_inv(h2[:, : self.n_inv])
            z1, z2 = torch.cat([i1, e1], 1), torch.cat([i2, e2], 1)
            l_inv = invariance(i1, i2)
        p = self.predictor(e1, t)
        l_eq = F.mse_loss(p, e2)
        l_var = (variance(z1, gather=c.gather) + variance(z2, gather=c.gather)) / 2
        l_pvar = variance(p, gather=c.gather) / 2 if c.pred_variance else h1.new_zeros(())
        l_cov = covariance(z1, gather=c.gather) + covariance(z2, gather=c.gather)
        w_eq = c.inv_coeff if c.only_equi else c.inv_coeff * c.equi_factor
        loss = c.inv_coeff * l_inv + w_eq * l_eq + c.std_coeff * (l_var + l_pvar) + c.cov_coeff * l_cov
        terms = {"inv": l_inv, "equi": l_eq, "var": l_var, "pred_var": l_pvar, "cov": l_cov}
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}, "feats": h1}

    def export_info(self) -> dict:
        """The split, the equivariant expander and the predictor: what MRR, Hit@k and PRE use."""
        return {
            "equivariance": {
                **self.specs,
                "projector_state": {
                    k: v.detach().cpu().clone() for k, v in self.projector_equi.state_dict().items()
                },
                "predictor_state": {
                    k: v.detach().cpu().clone() for k, v in self.predictor.state_dict().items()
                },
            }
        }

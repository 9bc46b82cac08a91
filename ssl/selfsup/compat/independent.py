"""``independent``: no compatibility term, the baseline every compat method is compared with.

The new model trains exactly as without a ``compat`` section; ``compat.old`` is still loaded and
checked (it must exist, and its dimension must be comparable with the new one) because
``selfsup compat train`` evaluates old/old, new/old and new/new retrieval. The paper tables
(docs/methods/compat.md) show such a model fails the compatibility criterion (e.g. 0.8 vs 33.6 top-1
new/old vs old/old on CIFAR-100). Its export lists no ``compatible_with``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import CompatConfig, check_dims, load_frozen, register


@dataclass
class IndependentConfig(CompatConfig):
    name: str = "independent"


def attach(method, recipe, cfg: IndependentConfig) -> None:
    _, info = load_frozen(cfg.old)
    check_dims(info["dim"], method.feat_dim, "backbone")


register(IndependentConfig, attach)

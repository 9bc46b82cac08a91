"""Attach the recipe's positive generators to a method, as submodules, before the optimizer exists.

``attach_positives(method, recipe)`` is called by the trainer right after the method is built (and
by :mod:`selfsup.positives.bench`). Generators become submodules (``method.hallucinator``,
``method.feature_transform``), so their parameters are trained by the same optimizer, saved in
checkpoints and moved with the model. Recipes that make no sense raise a one-line
:class:`~selfsup.errors.ConfigError` naming the option.
"""

from __future__ import annotations

from ..errors import ConfigError
from .feature_transform import FeatureTransform, FeatureTransformConfig
from .hallucinator import Hallucinator, HallucinatorConfig

# The width the Hallucinator works in, per method (card, "Where it plugs in").
HALLUCINATOR_DIM = {
    "moco": ("method.dim", "projector output"),
    "simclr": ("method.proj_dim", "projector output"),
    "simsiam": ("method.proj_dim", "predictor output"),
}
FT_METHODS = ("moco", "simclr")  # methods with negatives


def _choice(value: str, valid: tuple[str, ...], where: str) -> None:
    if value not in valid:
        raise ConfigError(f"{where}: '{value}' is not one of {', '.join(valid)}")


def _hallucinator(method, cfg: HallucinatorConfig, where: str) -> Hallucinator:
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


def _feature_transform(method, cfg: FeatureTransformConfig, where: str) -> FeatureTransform:
    if method.name not in FT_METHODS:
        raise ConfigError(
            f"{where}: ft transforms positive AND negative scores; method '{method.name}' has no "
            f"negatives (use it with {' or '.join(FT_METHODS)})"
        )
    _choice(cfg.target, ("pos", "neg", "posneg"), f"{where}.target")
    _choice(cfg.distribution, ("beta", "uniform"), f"{where}.distribution")
    _choice(cfg.per_element, ("none", "pos", "neg", "both"), f"{where}.per_element")
    for key in ("pos_alpha", "neg_alpha"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{where}.{key}: Beta parameters must be > 0, got {getattr(cfg, key)}")
    if cfg.start_epoch < 0:
        raise ConfigError(f"{where}.start_epoch: must be >= 0 (0 = from the first epoch)")
    if cfg.per_element in ("pos", "both") and cfg.target == "neg":
        raise ConfigError(f"{where}.per_element={cfg.per_element} needs target pos or posneg (target is neg)")
    if cfg.per_element in ("neg", "both") and cfg.target == "pos":
        raise ConfigError(f"{where}.per_element={cfg.per_element} needs target neg or posneg (target is pos)")
    return FeatureTransform(cfg)


BUILDERS = {
    HallucinatorConfig: ("hallucinator", _hallucinator),
    FeatureTransformConfig: ("feature_transform", _feature_transform),
}


def attach_positives(method, recipe) -> None:
    """Build the generators listed in ``recipe.positives`` and attach them to ``method``.

    Args:
        method: a :class:`~selfsup.methods.base.Method` (not yet wrapped for distribution).
        recipe: its :class:`~selfsup.config.Recipe`; ``recipe.positives`` holds typed configs.

    Both generators may be on at once (in MoCo the Hallucinator doubles the queries, then FT
    transforms the doubled batch's scores). Raises :class:`ConfigError` for unknown or duplicate
    generators, generators on methods they do not plug into, and invalid options.
    """
    positives = list(recipe.positives or [])
    if not positives:
        return
    try:
        device = next(method.parameters()).device
    except StopIteration:  # pragma: no cover - every method has a backbone
        device = None
    seen: dict[str, str] = {}
    for i, cfg in enumerate(positives):
        where = f"positives[{i}]"
        if type(cfg) not in BUILDERS:
            raise ConfigError(f"{where}: unknown positive generator {getattr(cfg, 'name', cfg)!r}")
        attr, build = BUILDERS[type(cfg)]
        if attr in seen:
            raise ConfigError(
                f"{where}: duplicate generator '{cfg.name}' (already {seen[attr]}); list each generator once"
            )
        if getattr(method, attr, None) is not None:
            raise ConfigError(f"{where}: the method already has a '{cfg.name}' attached")
        seen[attr] = where
        module = build(method, cfg, where)
        setattr(method, attr, module.to(device) if device is not None else module)

"""Validation of a recipe's core sections: every value's range, length and type, checked at load.

Each check raises :class:`~selfsup.errors.ConfigError` naming the key, what it must be and the value
given, so that a bad recipe fails before anything is built or written. Plug-in sections check
themselves (``Config.check``).
"""

from __future__ import annotations

from ..errors import ConfigError
from .parse import choice as _choice
from .schema import Recipe


def _at_least(value: float | None, lo: float, key: str, what: str = "") -> None:
    if value is not None and value < lo:
        raise ConfigError(f"{key}: must be at least {lo}{what}, got {value}")


def _positive(value: float | None, key: str, what: str = "") -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{key}: must be positive{what}, got {value}")


def _unit(value: float, key: str, what: str = "a probability") -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key}: must be in [0, 1] ({what}), got {value}")


def _length(values: list, n: int, key: str, what: str) -> None:
    if len(values) != n:
        raise ConfigError(f"{key}: expected {n} values ({what}), got {len(values)}: {values}")


def _scale_range(values: list[float], key: str) -> None:
    _length(values, 2, key, "min and max area fraction")
    lo, hi = values
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"{key}: need 0 < min <= max <= 1, got {values}")


def _nonempty(value: str, key: str, example: str) -> None:
    if not str(value).strip():
        raise ConfigError(f"{key}: must not be empty (e.g. {example})")


def validate_core(r: Recipe) -> None:
    """Checks of every core value (ranges, lengths, choices, emptiness), when the recipe is loaded.

    Plug-ins check their own sections (their config class's ``check(recipe)``, called by
    :func:`selfsup.recipe.load_recipe`). Each failure is one sentence naming the key.
    """
    _nonempty(r.name, "name", "name: cifar10-mocov2")
    if "/" in r.name or r.name in (".", ".."):
        raise ConfigError(f"name: '{r.name}' names the run folder runs/<name>; use no '/'")
    _at_least(r.seed, 0, "seed")
    d, a = r.data, r.data.augment
    _nonempty(d.source, "data.source", "data.source: digits")
    _choice(d.loader, ("auto", "ffcv", "torchvision"), "data.loader")
    _choice(a.preset, ("simclr", "mocov1", "mocov2", "none"), "data.augment.preset")
    _at_least(d.image_size, 8, "data.image_size", " pixels")
    if d.batch_size < 2:
        raise ConfigError(
            f"data.batch_size: must be at least 2 (contrastive methods need pairs), got {d.batch_size}"
        )
    _at_least(d.num_workers, 0, "data.num_workers")
    _at_least(d.views, 1, "data.views")
    _length(d.mean, 3, "data.mean", "one per RGB channel")
    _length(d.std, 3, "data.std", "one per RGB channel")
    for i, v in enumerate(d.std):
        _positive(v, f"data.std[{i}]")
    if not 0 < d.train_fraction <= 1:
        raise ConfigError(f"data.train_fraction: must be in (0, 1], got {d.train_fraction}")
    if d.classes is not None:
        if not d.classes:
            raise ConfigError("data.classes: an empty list selects no images; omit it to keep every class")
        if min(d.classes) < 0:
            raise ConfigError(f"data.classes: class ids are non-negative, got {d.classes}")
        if len(set(d.classes)) != len(d.classes):
            raise ConfigError(f"data.classes: lists a class twice: {d.classes}")
    _scale_range(a.crop_scale, "data.augment.crop_scale")
    for key in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
        _unit(getattr(a, key), f"data.augment.{key}")
    _length(a.jitter, 4, "data.augment.jitter", "brightness, contrast, saturation, hue")
    for i, v in enumerate(a.jitter):
        _at_least(v, 0, f"data.augment.jitter[{i}]")
    if a.jitter[3] > 0.5:
        raise ConfigError(f"data.augment.jitter: hue is at most 0.5, got {a.jitter[3]}")
    _length(a.blur_sigma, 2, "data.augment.blur_sigma", "min and max sigma")
    if not 0 < a.blur_sigma[0] <= a.blur_sigma[1]:
        raise ConfigError(f"data.augment.blur_sigma: need 0 < min <= max, got {a.blur_sigma}")
    _at_least(a.local_views, 0, "data.augment.local_views")
    if a.local_views:
        _at_least(a.local_size, 8, "data.augment.local_size", " pixels")
        _scale_range(a.local_scale, "data.augment.local_scale")
    _at_least(a.plain_views, 0, "data.augment.plain_views")
    if a.plain_views:
        _at_least(a.plain_size, 8, "data.augment.plain_size", " pixels")
        if not 0 < a.plain_crop <= 1:
            raise ConfigError(f"data.augment.plain_crop: need 0 < plain_crop <= 1, got {a.plain_crop}")

    m = r.model
    _nonempty(m.backbone, "model.backbone", "model.backbone: resnet18")
    _positive(m.width, "model.width", " (ResNet base channels; 64 is standard, omit it for that)")
    _choice(m.norm, ("auto", "bn", "syncbn"), "model.norm")

    o = r.optim
    _choice(o.name, ("sgd", "lars", "adam", "adamw"), "optim.name")
    _positive(o.lr, "optim.lr")
    _choice(o.lr_scaling, ("linear", "sqrt", "none"), "optim.lr_scaling")
    _at_least(o.lr_base_batch, 1, "optim.lr_base_batch")
    if not 0 <= o.momentum < 1:
        raise ConfigError(f"optim.momentum: must be in [0, 1), got {o.momentum}")
    _at_least(o.weight_decay, 0, "optim.weight_decay")
    _length(o.betas, 2, "optim.betas", "Adam's beta1 and beta2")
    for i, v in enumerate(o.betas):
        if not 0 <= v < 1:
            raise ConfigError(f"optim.betas[{i}]: must be in [0, 1), got {v}")
    _positive(o.lars_eta, "optim.lars_eta")
    _choice(o.schedule, ("cosine", "constant", "step"), "optim.schedule")
    if o.schedule == "step" and not o.step_epochs:
        raise ConfigError(
            "optim.step_epochs: schedule 'step' needs the epochs where the lr drops, e.g. [120, 160]"
        )
    _unit(o.step_gamma, "optim.step_gamma", "the factor applied at each step")
    _at_least(o.warmup_epochs, 0, "optim.warmup_epochs")
    _unit(o.min_lr_ratio, "optim.min_lr_ratio", "a fraction of the peak lr")

    t = r.train
    _at_least(t.epochs, 1, "train.epochs")
    _at_least(t.max_steps, 1, "train.max_steps", " (omit it to train every epoch)")
    _at_least(t.grad_accum, 1, "train.grad_accum")
    _choice(t.precision, ("auto", "no", "fp16", "bf16"), "train.precision")
    _choice(t.channels_last, ("auto", "on", "off"), "train.channels_last")
    _at_least(t.ckpt_every_steps, 0, "train.ckpt_every_steps", " (0: at the end of each epoch)")
    _at_least(t.log_every, 1, "train.log_every")
    if o.warmup_epochs > t.epochs:
        raise ConfigError(f"optim.warmup_epochs={o.warmup_epochs} is longer than train.epochs={t.epochs}")

    e = r.eval
    for name in e.run:
        _choice(name, ("linear", "knn", "retrieval", "equivariance"), "eval.run")
    if len(set(e.run)) != len(e.run):
        raise ConfigError(f"eval.run: lists an evaluation twice: {e.run}")
    _at_least(e.batch_size, 1, "eval.batch_size")
    _at_least(e.linear.epochs, 1, "eval.linear.epochs")
    _positive(e.linear.lr, "eval.linear.lr")
    _at_least(e.linear.batch_size, 1, "eval.linear.batch_size")
    _at_least(e.linear.weight_decay, 0, "eval.linear.weight_decay")
    if not e.knn.k:
        raise ConfigError("eval.knn.k: needs at least one k, e.g. [20, 200]")
    for k in e.knn.k:
        _at_least(k, 1, "eval.knn.k", " neighbours")
    _positive(e.knn.temperature, "eval.knn.temperature")
    _check_latents(r)


def _check_latents(r: Recipe) -> None:
    """Pairs, renders and the equivariance evaluation (SIE's data)."""
    latent_sources = ("render3d", "3diebench")
    if r.data.pairs and r.data.source not in latent_sources:
        raise ConfigError(
            f"data.pairs: view pairs with their relative rotation need per-view latents, which "
            f"data.source={r.data.source} has none of; use render3d or 3diebench"
        )
    if "equivariance" in r.eval.run and r.data.source not in latent_sources:
        raise ConfigError(
            f"eval.run: equivariance needs per-view rotation latents, which data.source={r.data.source} has "
            "none of; use render3d or 3diebench, or drop equivariance from eval.run"
        )
    if r.data.render is not None:
        if r.data.source != "render3d":
            raise ConfigError(
                f"data.render: only render3d datasets are rendered, not data.source={r.data.source}"
            )
        rc = r.data.render
        if min(rc.classes, rc.views, rc.size) < 1 or rc.objects < 2:
            raise ConfigError("data.render: classes, views and size must be at least 1, objects at least 2")
    eq = r.eval.equivariance
    if eq.epochs < 1 or eq.batch_size < 1 or eq.hidden < 1 or eq.val_pairs < 1:
        raise ConfigError("eval.equivariance: epochs, batch_size, hidden and val_pairs must be at least 1")
    _positive(eq.lr, "eval.equivariance.lr")
    _at_least(eq.equi_dims, 1, "eval.equivariance.equi_dims")

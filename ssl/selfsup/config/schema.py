"""Recipe schema: the core sections of a recipe as typed dataclasses, and their presets.

This module knows no plug-in. ``method``, ``positives`` and ``compat`` sections are typed by the
plug-ins themselves (each method, positive generator and compat method defines and registers its
own dataclass where it is defined); :mod:`selfsup.recipe`, which sits above the plug-ins, picks the
class by name when it loads a recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .parse import choice as _choice


@dataclass
class AugmentConfig:
    """View augmentations, torchvision semantics (FFCV ops mirror them)."""

    preset: str = "simclr"  # simclr | mocov1 | mocov2 | none; fills defaults below when unset
    crop_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])
    flip_p: float = 0.5
    jitter_p: float = 0.8
    jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.1])  # b, c, s, h
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])
    solarize_p: float = 0.0
    local_views: int = 0  # multi-crop: extra small views (OBoW, SwAV style)
    local_size: int = 16
    local_scale: list[float] = field(default_factory=lambda: [0.05, 0.14])
    # Plain views, after the local ones: a centre square (plain_crop x the short side, i.e. Resize
    # 256 -> CenterCrop 224) resized to plain_size, flipped with flip_p, no colour: OBoW's teacher input.
    plain_views: int = 0
    plain_size: int | None = None  # None: data.image_size
    plain_crop: float = 0.875


@dataclass
class DataConfig:
    source: str = "digits"  # digits | render3d | imagefolder | cifar10 | cifar100 | beton | 3diebench
    path: str | None = None  # root folder of the source (not needed for digits)
    image_size: int = 32
    loader: str = "auto"  # auto | ffcv | torchvision
    batch_size: int = 64  # per process
    num_workers: int = 0
    views: int = 2
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    train_fraction: float = 1.0  # use a class-balanced-ish prefix of the training set (tiny runs)
    classes: list[int] | None = None  # keep only these class ids (compat: old model on half the classes)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # any timm model name
    cifar_stem: bool = False  # 3x3 stride-1 first conv, no max-pool (32 px images)
    width: int | None = None  # ResNet base channel count (64 is standard); small for CPU tests
    kwargs: dict = field(default_factory=dict)  # passed to timm.create_model
    norm: str = "auto"  # auto | bn | syncbn ; auto = the method's paper default


@dataclass
class MethodConfig:
    """Base for method options; each method subclasses it with its own fields."""

    name: str = "simclr"


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | lars | adamw
    lr: float = 0.06
    scale_lr: bool = True  # lr * global_batch / 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lars_eta: float = 0.02
    exclude_bias_norm: bool = True  # no weight decay (and no LARS adaptation) on biases and norms
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of the peak lr


@dataclass
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests)
    grad_accum: int = 1
    precision: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | no | fp16 | bf16
    ckpt_every_steps: int = 0  # 0: only at the end of each epoch
    log_every: int = 10
    progress: bool = True
    compile: bool = False


@dataclass
class LinearEvalConfig:
    epochs: int = 100
    lr: float = 0.1
    batch_size: int = 256
    weight_decay: float = 0.0


@dataclass
class KnnEvalConfig:
    k: list[int] = field(default_factory=lambda: [20, 200])
    temperature: float = 0.07


@dataclass
class EvalConfig:
    run: list[str] = field(default_factory=lambda: ["linear", "knn"])
    linear: LinearEvalConfig = field(default_factory=LinearEvalConfig)
    knn: KnnEvalConfig = field(default_factory=KnnEvalConfig)
    batch_size: int = 256
    compare_random_init: bool = False  # also evaluate an untrained encoder of the same architecture


@dataclass
class Recipe:
    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    positives: list[Any] = field(default_factory=list)  # each a positive generator's config
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    compat: Any = None  # compatible-training options (selfsup.compat), None for plain pretraining


# Augmentation presets: the papers' view recipes. A recipe's own keys override the preset.
AUGMENT_PRESETS: dict[str, dict] = {
    # SimCLR (Chen et al. 2020, App. A): crop 0.08-1, colour strength s=1, blur on ImageNet.
    "simclr": {
        "crop_scale": [0.08, 1.0],
        "jitter": [0.8, 0.8, 0.8, 0.2],
        "jitter_p": 0.8,
        "grayscale_p": 0.2,
        "blur_p": 0.5,
        "solarize_p": 0.0,
        "flip_p": 0.5,
    },
    # MoCo v1 (He et al. 2020): crop 0.2-1, jitter 0.4 always, grayscale 0.2.
    "mocov1": {
        "crop_scale": [0.2, 1.0],
        "jitter": [0.4, 0.4, 0.4, 0.4],
        "jitter_p": 1.0,
        "grayscale_p": 0.2,
        "blur_p": 0.0,
        "solarize_p": 0.0,
        "flip_p": 0.5,
    },
    # MoCo v2 (Chen et al. 2020, "aug+"): jitter p 0.8, blur sigma 0.1-2 p 0.5.
    "mocov2": {
        "crop_scale": [0.2, 1.0],
        "jitter": [0.4, 0.4, 0.4, 0.1],
        "jitter_p": 0.8,
        "grayscale_p": 0.2,
        "blur_p": 0.5,
        "solarize_p": 0.0,
        "flip_p": 0.5,
    },
    "none": {
        "crop_scale": [1.0, 1.0],
        "jitter_p": 0.0,
        "grayscale_p": 0.0,
        "blur_p": 0.0,
        "solarize_p": 0.0,
        "flip_p": 0.0,
    },
}


def apply_preset(tree: dict) -> None:
    data = tree.get("data")
    if not isinstance(data, dict):
        return
    aug = data.get("augment") or {}
    if not isinstance(aug, dict):
        return
    preset = aug.get("preset", AugmentConfig.preset)
    if preset in AUGMENT_PRESETS:
        data["augment"] = {**AUGMENT_PRESETS[preset], **aug}


def validate_core(r: Recipe) -> None:
    """Checks of the core sections; plug-ins check their own sections when they are built."""
    _choice(r.data.loader, ("auto", "ffcv", "torchvision"), "data.loader")
    _choice(r.data.augment.preset, ("simclr", "mocov1", "mocov2", "none"), "data.augment.preset")
    _choice(r.optim.name, ("sgd", "lars", "adamw"), "optim.name")
    _choice(r.optim.schedule, ("cosine", "constant"), "optim.schedule")
    _choice(r.train.precision, ("auto", "no", "fp16", "bf16"), "train.precision")
    _choice(r.model.norm, ("auto", "bn", "syncbn"), "model.norm")
    for name in r.eval.run:
        _choice(name, ("linear", "knn", "retrieval", "equivariance"), "eval.run")
    if r.data.batch_size < 2:
        raise ConfigError("data.batch_size: must be at least 2 (contrastive methods need pairs)")
    if r.data.views < 1:
        raise ConfigError("data.views: must be at least 1")
    if r.train.epochs < 1:
        raise ConfigError("train.epochs: must be at least 1")
    if r.train.grad_accum < 1:
        raise ConfigError("train.grad_accum: must be at least 1")
    a = r.data.augment
    if a.local_views < 0 or a.plain_views < 0:
        raise ConfigError("data.augment.local_views and plain_views: must be 0 or more")
    if not 0 < a.plain_crop <= 1:
        raise ConfigError(f"data.augment.plain_crop: need 0 < plain_crop <= 1, got {a.plain_crop}")
    lo, hi = r.data.augment.crop_scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"data.augment.crop_scale: need 0 < min <= max <= 1, got {[lo, hi]}")

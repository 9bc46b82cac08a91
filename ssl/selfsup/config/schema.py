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


@dataclass
class AugmentConfig:
    """View augmentations, torchvision semantics (FFCV ops mirror them)."""

    preset: str = "simclr"  # simclr | mocov1 | mocov2 | none; fills defaults below when unset
    # random-resized-crop area range, as fractions of the image
    crop_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])
    flip_p: float = 0.5  # probability of a horizontal flip
    jitter_p: float = 0.8  # probability of applying colour jitter
    jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.1])  # b, c, s, h
    grayscale_p: float = 0.2  # probability of converting a view to greyscale
    blur_p: float = 0.0  # probability of Gaussian blur
    # Gaussian blur sigma range in pixels
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])
    solarize_p: float = 0.0  # probability of solarisation
    local_views: int = 0  # multi-crop: extra small views (OBoW, SwAV style)
    local_size: int = 16  # side of the local (multi-crop) views in pixels
    # crop area range of the local views
    local_scale: list[float] = field(default_factory=lambda: [0.05, 0.14])
    # plain views after the local ones: centre crop resized to plain_size, flip_p, no colour (OBoW's teacher)
    plain_views: int = 0
    plain_size: int | None = None  # side of the plain views in pixels (None: data.image_size)
    plain_crop: float = 0.875  # centre square / short side of the plain views (224/256: CenterCrop 224)


@dataclass
class RenderConfig:
    """A render3d dataset to render on first use (``selfsup data render3d`` with these settings)."""

    classes: int = 10  # the first N shape classes
    objects: int = 20  # objects per class (80/20 train/val split per class)
    views: int = 10  # renders per object
    size: int = 64  # image side in pixels
    seed: int = 0  # the render's seed (shapes, poses, colours, lights)


@dataclass
class DataConfig:
    source: str = "digits"  # digits | render3d | imagefolder | cifar10 | cifar100 | beton | 3diebench
    path: str | None = None  # root folder of the source (not needed for digits)
    image_size: int = 32  # side of the square training views in pixels
    loader: str = "auto"  # auto | ffcv | torchvision
    batch_size: int = 64  # GLOBAL batch, as papers state it: split over processes and grad_accum
    num_workers: int = 0  # loader worker processes (FFCV threads) per training process
    views: int = 2  # global views per image (2 for the two-view methods)
    # per-channel normalisation mean (RGB, 0-1 scale)
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    # per-channel normalisation standard deviation
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    train_fraction: float = 1.0  # use a class-balanced-ish prefix of the training set (tiny runs)
    classes: list[int] | None = None  # keep only these class ids (compat: old model on half the classes)
    # Pairs (SIE, and its VICReg/SimCLR baselines on 3D data): each item is one object of a
    # render3d/3diebench source seen in two distinct renders, with the quaternion of R1^-1 R2
    # ("quat") and the hue deltas ("color_delta") in the batch; resize + normalise, no augmentation.
    pairs: bool = False
    # render3d only: render this dataset into data.path (default datasets/render3d-<settings>) when
    # it is not there yet; without it, an unset data.path means the small default render.
    render: RenderConfig | None = None
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
    # Keys that were renamed: the message says what replaced them.
    RENAMED = {
        "scale_lr": "optim.lr_scaling: linear | sqrt | none (lr x B / lr_base_batch, "
        "lr x sqrt(B / lr_base_batch), or lr as given; B = data.batch_size, the global batch) with "
        "optim.lr_base_batch (default 256); scale_lr: false is lr_scaling: none",
    }

    name: str = "sgd"  # sgd | lars | adam (L2 weight decay, SIE's) | adamw
    lr: float = 0.06  # the paper's base lr, for lr_base_batch images (see lr_scaling)
    lr_scaling: str = "linear"  # linear: lr*B/base | sqrt: lr*sqrt(B/base) | none; B = global batch
    lr_base_batch: int = 256  # the batch the base lr is stated for (Goyal et al.: 256)
    momentum: float = 0.9  # SGD / LARS momentum
    weight_decay: float = 5e-4  # L2 weight decay (decoupled for adamw)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw betas
    lars_eta: float = 0.02  # LARS trust coefficient (SimCLR's official LARS: 0.001)
    exclude_bias_norm: bool = True  # no weight decay (and no LARS adaptation) on biases and norms
    schedule: str = "cosine"  # cosine | constant | step (x step_gamma at each of step_epochs)
    warmup_epochs: float = 0.0  # linear warm-up from 0 to the peak lr over this many epochs
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of the peak lr
    step_epochs: list[float] = field(default_factory=list)  # schedule step: epochs where lr drops
    step_gamma: float = 0.1  # schedule step: factor applied at each of step_epochs


@dataclass
class TrainConfig:
    epochs: int = 10  # passes over the training set
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests)
    grad_accum: int = 1  # micro-batches accumulated per optimizer step (the global batch is split over them)
    precision: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | no | fp16 | bf16
    ckpt_every_steps: int = 0  # 0: only at the end of each epoch
    log_every: int = 10  # optimizer steps between logged training scalars
    progress: bool = True  # show a progress bar with ETA
    compile: bool = False  # torch.compile the backbone (falls back to eager with a warning if it can't)
    channels_last: str = "auto"  # auto (on CUDA) | on | off: NHWC weights and inputs


@dataclass
class LinearEvalConfig:
    epochs: int = 100  # linear-probe epochs on frozen, standardised features
    lr: float = 0.1  # linear-probe SGD lr (cosine schedule)
    batch_size: int = 256  # linear-probe batch size
    weight_decay: float = 0.0  # linear-probe weight decay


@dataclass
class KnnEvalConfig:
    # neighbour counts to report (cosine similarity, weighted vote)
    k: list[int] = field(default_factory=lambda: [20, 200])
    temperature: float = 0.07  # vote weight exp(similarity / temperature) (Wu et al. 2018)


@dataclass
class EquivarianceEvalConfig:
    """SIE's protocols (selfsup.eval.equivariance); defaults are the paper's heads on 3DIEBench."""

    epochs: int = 300  # every head: Adam, no schedule, no augmentation, frozen backbone in eval mode
    lr: float = 1.0e-3  # Adam learning rate of every head (the reference's)
    batch_size: int = 256  # head training batch (the reference's)
    hidden: int = 1024  # width of the rotation/colour MLP heads (2d -> hidden -> hidden -> 4 or 2)
    val_pairs: int = 5  # seeded pairs per val object for R^2 (the reference draws 1 per epoch, unseeded)
    equi_dims: int | None = None  # split an encoder without one: its last equi_dims features are "equi"
    retrieval: bool = True  # MRR, Hit@k and PRE with the SIE predictor (skipped for other encoders)


@dataclass
class EvalConfig:
    # evaluations after training: linear, knn, retrieval, equivariance
    run: list[str] = field(default_factory=lambda: ["linear", "knn"])
    linear: LinearEvalConfig = field(default_factory=LinearEvalConfig)
    knn: KnnEvalConfig = field(default_factory=KnnEvalConfig)
    equivariance: EquivarianceEvalConfig = field(default_factory=EquivarianceEvalConfig)
    batch_size: int = 256  # batch size of feature extraction
    compare_random_init: bool = False  # also evaluate an untrained encoder of the same architecture
    compare_raw_pixels: bool = False  # also probe the normalised input pixels themselves (a baseline)


@dataclass
class ReferenceConfig:
    paper: str = ""  # where the recipe's settings come from (paper, section or table; official code)
    target: str = ""  # the published result this recipe aims at, with its source ("" when none)


@dataclass
class Recipe:
    name: str = "run"  # run name (reports, TensorBoard)
    seed: int = 0  # seed of weights, augmentations and data order
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)  # provenance; not used to train
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


def split_batch(global_batch: int, world_size: int, grad_accum: int = 1) -> tuple[int, int]:
    """``(per-process batch, per-process micro-batch)`` of a global ``data.batch_size``.

    The global batch is what one optimizer step sees over all processes; each process holds
    ``B / world_size`` of it, fed as ``grad_accum`` micro-batches of ``B / (world_size * grad_accum)``.
    """
    parts = world_size * grad_accum
    if global_batch % parts:
        how = f"{world_size} processes" + (f" x train.grad_accum {grad_accum}" if grad_accum > 1 else "")
        raise ConfigError(
            f"data.batch_size={global_batch} is the global batch and must divide evenly over {how} "
            f"({global_batch} / {parts} is not an integer); use a multiple of {parts}"
        )
    return global_batch // world_size, global_batch // parts

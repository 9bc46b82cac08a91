"""Recipe schema: typed dataclasses loaded from YAML, with helpful errors.

A recipe is one YAML file describing one run. Loading it checks every key against the schema; an
unknown key is reported with its location and the closest valid key. ``--set a.b=c`` overrides
any value (the value is parsed as YAML, so ``--set optim.lr=0.1`` gives a float).

Method-, positive- and compat-specific options are typed too: each method registers its own
dataclass (``selfsup.methods.METHOD_CONFIGS``), selected by ``method.name``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from .errors import ConfigError


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


# ---------------------------------------------------------------------------------------------
# Generic dataclass <-> dict conversion with precise errors


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(valid)}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner,) = args or (Any,)
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`ConfigError`."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in (data or {}).items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            section = f"in '{where}'" if where else "at the top level"
            raise ConfigError(f"unknown key '{key}' {section}{_closest(str(key), list(fields))}")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------------------------------------
# Recipes


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        if isinstance(node, list):
            try:
                node = node[int(k)]
                continue
            except (ValueError, IndexError):
                raise ConfigError(f"--set {dotted}: '{k}' is not a valid list index") from None
        if node.get(k) is None:
            node[k] = {}
        node = node[k]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {dotted}: '{k}' holds a value, not a section")
    if isinstance(node, list):
        try:
            node[int(keys[-1])] = value
        except (ValueError, IndexError):
            raise ConfigError(f"--set {dotted}: '{keys[-1]}' is not a valid list index") from None
    else:
        node[keys[-1]] = value


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, Any]]:
    out = []
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. optim.lr=0.1), got '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


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


def _apply_preset(tree: dict) -> None:
    data = tree.get("data")
    if not isinstance(data, dict):
        return
    aug = data.get("augment") or {}
    if not isinstance(aug, dict):
        return
    preset = aug.get("preset", AugmentConfig.preset)
    if preset in AUGMENT_PRESETS:
        data["augment"] = {**AUGMENT_PRESETS[preset], **aug}


def _resolve_sections(tree: dict) -> Recipe:
    """Typed sections chosen by name (method, positives, compat) need their registries."""
    from .compat import COMPAT_CONFIGS
    from .methods import METHOD_CONFIGS
    from .positives import POSITIVE_CONFIGS

    tree = dict(tree)
    tree.setdefault("data", {})
    _apply_preset(tree)
    method = tree.pop("method", None) or {"name": "simclr"}
    positives = tree.pop("positives", None) or []
    compat = tree.pop("compat", None)
    recipe = from_dict(Recipe, tree)

    if not isinstance(method, dict):
        raise ConfigError("method: expected a mapping with at least 'name'")
    name = method.get("name", "simclr")
    if name not in METHOD_CONFIGS:
        raise ConfigError(f"method.name: unknown method '{name}'{_closest(str(name), list(METHOD_CONFIGS))}")
    recipe.method = from_dict(METHOD_CONFIGS[name], method, "method")

    if not isinstance(positives, list):
        raise ConfigError("positives: expected a list of generators, e.g. [{name: hallucinator}]")
    recipe.positives = []
    for i, p in enumerate(positives):
        if isinstance(p, str):
            p = {"name": p}
        if not isinstance(p, dict) or "name" not in p:
            raise ConfigError(f"positives[{i}]: expected a mapping with 'name'")
        if p["name"] not in POSITIVE_CONFIGS:
            raise ConfigError(
                f"positives[{i}].name: unknown generator '{p['name']}'"
                f"{_closest(str(p['name']), list(POSITIVE_CONFIGS))}"
            )
        recipe.positives.append(from_dict(POSITIVE_CONFIGS[p["name"]], p, f"positives[{i}]"))

    if compat is not None:
        if not isinstance(compat, dict) or "name" not in compat:
            raise ConfigError("compat: expected a mapping with 'name' (e.g. bct, bt2, oca)")
        if compat["name"] not in COMPAT_CONFIGS:
            raise ConfigError(
                f"compat.name: unknown method '{compat['name']}'"
                f"{_closest(str(compat['name']), list(COMPAT_CONFIGS))}"
            )
        recipe.compat = from_dict(COMPAT_CONFIGS[compat["name"]], compat, "compat")
    validate(recipe)
    return recipe


def _choice(value: str, valid: tuple[str, ...], where: str) -> None:
    if value not in valid:
        raise ConfigError(
            f"{where}: '{value}' is not one of {', '.join(valid)}{_closest(value, list(valid))}"
        )


def validate(r: Recipe) -> None:
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
    lo, hi = r.data.augment.crop_scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"data.augment.crop_scale: need 0 < min <= max <= 1, got {[lo, hi]}")


def load_recipe(source: str | Path | dict, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe from a YAML path (or a dict) and apply ``--set`` overrides."""
    if isinstance(source, dict):
        tree = yaml.safe_load(yaml.safe_dump(source))  # deep copy of plain data
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"recipe '{path}' not found; pass a YAML file such as recipes/demo.yaml")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            loc = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"recipe '{path}' is not valid YAML{loc}: {getattr(e, 'problem', e)}") from None
    if not isinstance(tree, dict):
        raise ConfigError("a recipe must be a YAML mapping of sections (data, model, method, ...)")
    for key, value in parse_overrides(overrides):
        _set_path(tree, key, value)
    return _resolve_sections(tree)


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)

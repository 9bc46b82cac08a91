"""Recipe loading: YAML (or a dict) + ``--set`` overrides -> a typed, validated :class:`Recipe`.

This module sits above the plug-ins: the core sections are typed by :mod:`selfsup.config`, the
``method``, ``positives`` and ``compat`` sections by the config classes that methods, positive
generators and compat methods register where they are defined. Every error is one sentence
naming the key, its location and, for a typo, the closest valid name.

Loading also makes the recipe *effective*: a plug-in config class may define
``resolve(self, recipe) -> None`` that fills its ``None`` defaults with the values the run will
use (MoCo's version-dependent temperature and head), so ``config.yaml`` records every value; and
``check(self, recipe) -> None`` that refuses bad values of its section. Core sections are checked
by :func:`selfsup.config.validate_core`. So a bad recipe fails here, before anything is built.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .compat import COMPAT
from .config import (
    Recipe,
    apply_preset,
    dump_recipe,
    from_dict,
    parse_overrides,
    read_yaml,
    set_path,
    validate_core,
)
from .errors import ConfigError
from .methods import METHODS
from .positives import POSITIVES


def resolve(tree: dict) -> Recipe:
    """Build a :class:`Recipe` from plain data; typed sections are chosen by their ``name``."""
    tree = dict(tree)
    tree.setdefault("data", {})
    apply_preset(tree)
    method = tree.pop("method", None) or {"name": "simclr"}
    positives = tree.pop("positives", None) or []
    compat = tree.pop("compat", None)
    recipe = from_dict(Recipe, tree)

    if not isinstance(method, dict):
        raise ConfigError("method: expected a mapping with at least 'name'")
    method_cls = METHODS.lookup(method.get("name", "simclr"), "method.name")
    recipe.method = from_dict(method_cls.Config, method, "method")

    if not isinstance(positives, list):
        raise ConfigError("positives: expected a list of generators, e.g. [{name: hallucinator}]")
    recipe.positives = []
    for i, p in enumerate(positives):
        if isinstance(p, str):
            p = {"name": p}
        if not isinstance(p, dict) or "name" not in p:
            raise ConfigError(f"positives[{i}]: expected a mapping with 'name'")
        spec = POSITIVES.lookup(p["name"], f"positives[{i}].name")
        recipe.positives.append(from_dict(spec.config, p, f"positives[{i}]"))

    if compat is not None:
        if not isinstance(compat, dict) or "name" not in compat:
            raise ConfigError("compat: expected a mapping with 'name' (e.g. bct, bt2, oca)")
        spec = COMPAT.lookup(compat["name"], "compat.name")
        recipe.compat = from_dict(spec.config, compat, "compat")
    validate_core(recipe)
    _check_data_and_model(recipe)
    plugins = [recipe.method, *recipe.positives] + ([recipe.compat] if recipe.compat is not None else [])
    for cfg in plugins:
        hook = getattr(cfg, "resolve", None)
        if hook is not None:
            hook(recipe)
    for cfg in plugins:
        hook = getattr(cfg, "check", None)
        if hook is not None:
            hook(recipe)
    return recipe


def _check_data_and_model(recipe: Recipe) -> None:
    """What the core schema cannot know: the data sources and the backbones that exist."""
    from .config.parse import choice
    from .data.catalog import NEEDS_PATH, SOURCES
    from .models.backbones import check_backbone

    d = recipe.data
    choice(d.source, tuple(SOURCES), "data.source")
    if d.source in NEEDS_PATH and not d.path:
        raise ConfigError(
            f"data.path is required for data.source={d.source}: {NEEDS_PATH[d.source]}; "
            "set it in the recipe or with --set data.path=..."
        )
    check_backbone(recipe.model.backbone)


SHIPPED = Path(__file__).resolve().parent / "recipes"


def shipped_recipe(source: str | Path) -> Path:
    """``source`` itself, or, when it does not exist and reads ``recipes/...``, the recipe of that
    name shipped inside the package: ``selfsup pretrain recipes/cifar10/simclr.yaml`` works from
    any directory after ``pip install``."""
    path = Path(source)
    parts = path.parts
    if not path.exists() and len(parts) > 1 and parts[0] == "recipes" and not path.is_absolute():
        candidate = SHIPPED.joinpath(*parts[1:])
        if candidate.is_file():
            return candidate
    return path


def load_recipe(source: str | Path | dict, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe from a YAML path (or a dict) and apply ``--set`` overrides.

    A path ``recipes/...`` that does not exist relative to the working directory names a recipe
    shipped with the package (:func:`shipped_recipe`)."""
    if isinstance(source, dict):
        tree = yaml.safe_load(yaml.safe_dump(source))  # deep copy of plain data
    else:
        tree = read_yaml(shipped_recipe(source))
    for key, value in parse_overrides(overrides):
        set_path(tree, key, value)
    return resolve(tree)


__all__ = ["SHIPPED", "dump_recipe", "load_recipe", "resolve", "shipped_recipe"]

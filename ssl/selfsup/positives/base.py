"""The registry of positive generators: each generator's file registers itself here.

A generator contributes a recipe config dataclass (with a ``name`` field), the attribute it is
attached under (``method.<attr>``, which the loss hooks in :mod:`selfsup.positives.hooks` look
for) and a builder ``build(method, cfg, where) -> nn.Module`` that checks the combination and
raises a one-line :class:`~selfsup.errors.ConfigError` for nonsense.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ..errors import ConfigError
from ..utils.registry import Registry


@dataclass(frozen=True)
class PositiveSpec:
    config: type
    attr: str
    build: Callable[..., nn.Module]


POSITIVES: Registry[PositiveSpec] = Registry("generator")


def register(name: str, config: type, attr: str, build: Callable[..., nn.Module], aliases=()) -> None:
    """Make a generator available to recipes as ``positives: [{name: <name>, ...}]``."""
    POSITIVES.add(name, PositiveSpec(config, attr, build), tuple(aliases))


def choice(value: str, valid: tuple[str, ...], where: str) -> None:
    if value not in valid:
        raise ConfigError(f"{where}: '{value}' is not one of {', '.join(valid)}")

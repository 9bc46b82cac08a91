"""Dataclass <-> plain data conversion with precise errors, ``--set`` overrides, YAML reading.

``from_dict`` checks every key against the dataclass: an unknown key is reported with its location
and the closest valid key (or, for a key that was renamed, what replaced it); values are coerced to
the field's type or refused with a sentence. Numbers in scientific notation are numbers: YAML 1.1
(PyYAML) reads ``1e-4`` (no dot) as a string, which every paper and user writes for a learning rate.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from ..errors import ConfigError


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(valid)}"


# A decimal number as text: "1e-4", "3.05e-5", "-2", ".5", "1_000" is not (YAML 1.1 only).
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _number(value: Any) -> Any:
    """``value`` as int/float when it is a string spelling a number (YAML 1.1's ``1e-4``)."""
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        text = value.strip()
        return float(text) if any(c in text for c in ".eE") else int(text)
    return value


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
        value = _number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        value = _number(value)
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
    renamed = getattr(cls, "RENAMED", {})
    kwargs = {}
    for key, value in (data or {}).items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields and key in renamed:
            raise ConfigError(f"{path} was replaced: {renamed[key]}")
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


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``; lists are values (compared whole)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def diff_trees(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two plain recipes, with both values (None if absent)."""
    a, b = flatten(old), flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def set_path(tree: dict, dotted: str, value: Any) -> None:
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


def choice(value: str, valid: tuple[str, ...], where: str) -> None:
    """Refuse ``value`` unless it is one of ``valid``, suggesting the closest."""
    if value not in valid:
        raise ConfigError(
            f"{where}: '{value}' is not one of {', '.join(valid)}{_closest(value, list(valid))}"
        )


def closest_hint(key: str, valid: list[str]) -> str:
    """ "; did you mean 'x'?" (or the list of valid keys) for an unknown ``key``."""
    return _closest(key, valid)


def read_yaml(source: str | Path) -> dict:
    """A recipe file as a dict; missing, unreadable or non-mapping files raise :class:`ConfigError`."""
    path = Path(source)
    if path.is_dir():
        raise ConfigError(f"recipe '{path}' is a folder; pass a YAML file such as recipes/demo.yaml")
    if not path.is_file():
        raise ConfigError(f"recipe '{path}' not found; pass a YAML file such as recipes/demo.yaml")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"recipe '{path}' is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None
    except OSError as e:
        raise ConfigError(f"recipe '{path}' cannot be read: {e.strerror or e}") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"recipe '{path}' is not valid YAML{loc}: {getattr(e, 'problem', e)}") from None
    if tree is None:
        # An empty file would silently train the built-in defaults.
        raise ConfigError(f"recipe '{path}' is empty; start from a recipe such as recipes/demo.yaml")
    if not isinstance(tree, dict):
        raise ConfigError(
            f"recipe '{path}' must be a YAML mapping of sections (data, model, method, ...), "
            f"not a {type(tree).__name__}"
        )
    return tree


def dump_recipe(recipe: Any) -> str:
    """A recipe (or any config dataclass) as YAML: what ``config.yaml`` in a run directory holds."""
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)

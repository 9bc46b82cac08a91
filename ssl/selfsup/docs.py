"""Reference documentation generated from the code, so it cannot drift from it.

- ``docs/recipe_reference.md``: every recipe key (core sections and every registered method,
  positive generator and compat method) with its type, default and meaning. The meaning is the
  comment on the field's line in its config dataclass (or the comment lines just above it); a key
  without one is an error (:func:`missing_descriptions`, checked by the tests).
- ``docs/recipes.md``: one table of the shipped recipes (method, data, backbone, global batch, lr
  rule, epochs, the published result they target), read from the recipe files.
- ``README.md``: the sample recipe between ``<!-- include: FILE -->`` and ``<!-- /include -->``
  is the shipped file itself, copied verbatim.

``python -m selfsup.docs`` rewrites both; ``--check`` exits 1 when the files on disk are stale.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import sys
import tokenize
import typing
from functools import cache
from pathlib import Path
from typing import Any

from . import config as core
from .compat import COMPAT
from .methods import METHODS
from .positives import POSITIVES

PLUGIN_KEYS = {"method": "method", "positives": "positives[i]", "compat": "compat"}
CORE_SECTIONS: list[tuple[str, type]] = [
    ("", core.Recipe),
    ("data", core.DataConfig),
    ("data.augment", core.AugmentConfig),
    ("model", core.ModelConfig),
    ("optim", core.OptimConfig),
    ("train", core.TrainConfig),
    ("eval", core.EvalConfig),
    ("eval.linear", core.LinearEvalConfig),
    ("eval.knn", core.KnnEvalConfig),
]


@cache
def _class_comments(cls: type) -> dict[str, str]:
    """Field name -> description from the comments of ``cls``'s own source (not its bases)."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):  # pragma: no cover - classes built at run time
        return {}
    src = inspect.cleandoc("\n" + "".join(lines)) if lines[0].startswith(" ") else "".join(lines)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    out: dict[str, str] = {}
    src_lines = src.splitlines()
    for no, line in enumerate(src_lines, start=1):
        stripped = line.strip()
        name = stripped.split(":", 1)[0].strip()
        if not stripped or ":" not in stripped or not name.isidentifier() or line[:1] not in (" ", "\t"):
            continue
        if no in comments:
            out[name] = comments[no]
            continue
        above, k = [], no - 1
        while k >= 1 and src_lines[k - 1].strip().startswith("#"):
            above.insert(0, comments.get(k, ""))
            k -= 1
        if above:
            out[name] = " ".join(above)
    return out


def field_description(cls: type, name: str) -> str:
    for klass in cls.__mro__:
        if dataclasses.is_dataclass(klass) and name in _class_comments(klass):
            return _class_comments(klass)[name]
    return ""


def _type_text(tp: Any) -> str:
    text = tp if isinstance(tp, (str, typing.GenericAlias)) or typing.get_args(tp) else tp.__name__
    return str(text).replace("typing.", "").replace("NoneType", "null").replace(" | ", " or ")


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(value):
            return "(section)"
    else:
        return "(required)"
    return "null" if value is None else repr(value).replace("'", "")


def rows(section: str, cls: type) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, description)`` for the fields of ``cls`` under ``section``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints.get(f.name)) or (cls is core.Recipe and f.name in PLUGIN_KEYS):
            continue  # nested sections and plug-in sections get their own tables
        key = f"{section}.{f.name}" if section else f.name
        desc = field_description(cls, f.name)
        if f.name == "name" and section in PLUGIN_KEYS.values():
            desc = desc or "selects this plug-in"
        out.append((key, _type_text(hints.get(f.name, f.type)), _default_text(f), desc))
    return out


def plugin_sections() -> list[tuple[str, str, type]]:
    """``(title, section, config class)`` of every registered plug-in."""
    out = [(f"method.name: {n}", "method", cls.Config) for n, cls in sorted(METHODS.items())]
    out += [(f"positives: [{{name: {n}}}]", "positives[i]", s.config) for n, s in sorted(POSITIVES.items())]
    out += [(f"compat.name: {n}", "compat", s.config) for n, s in sorted(COMPAT.items())]
    return out


def missing_descriptions() -> list[str]:
    """Recipe keys whose config field has no description comment."""
    missing = []
    for section, cls in CORE_SECTIONS:
        missing += [k for k, _, _, d in rows(section, cls) if not d]
    for _, section, cls in plugin_sections():
        missing += [
            f"{section}.{k.split('.', 1)[1]} ({cls.__name__})" for k, _, _, d in rows(section, cls) if not d
        ]
    return missing


def _table(rows_: list[tuple[str, str, str, str]]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | `{d}` | {m.replace('|', '/')} |" for k, t, d, m in rows_]
    return "\n".join(lines)


def recipe_reference() -> str:
    parts = [
        "# Recipe reference",
        "",
        "Every key a recipe may set, generated from the config dataclasses by `python -m selfsup.docs`",
        "(do not edit by hand). A misspelled key is an error naming the closest valid key; `--set a.b=c`",
        "overrides any key from the command line.",
        "",
    ]
    for section, cls in CORE_SECTIONS:
        parts += [f"## `{section or 'top level'}`", "", _table(rows(section, cls)), ""]
    parts += [
        "# Plug-ins",
        "",
        "Each method, positive generator and compat method types its own section.",
        "",
    ]
    for title, section, cls in plugin_sections():
        parts += [f"## `{title}`", "", _table(rows(section, cls)), ""]
    return "\n".join(parts).rstrip() + "\n"


def _lr_rule(o: core.OptimConfig, batch: int) -> str:
    if o.lr_scaling == "linear":
        rule, lr = f"{o.lr:g} x B/{o.lr_base_batch}", o.lr * batch / o.lr_base_batch
    elif o.lr_scaling == "sqrt":
        rule, lr = f"{o.lr:g} x sqrt(B/{o.lr_base_batch})", o.lr * (batch / o.lr_base_batch) ** 0.5
    else:
        rule, lr = "as given", o.lr
    sched = {"step": "step " + "/".join(f"{e:g}" for e in o.step_epochs)}.get(o.schedule, o.schedule)
    warm = f", warm-up {o.warmup_epochs:g}" if o.warmup_epochs else ""
    return f"{o.name.upper()} {rule} = {lr:.4g}; {sched}{warm}"


def recipe_rows(root: Path) -> list[dict[str, str]]:
    """One row per shipped recipe under ``root/recipes``, read through the recipe loader."""
    from .recipe import load_recipe

    out = []
    for path in sorted((root / "recipes").rglob("*.yaml")):
        tree = core.read_yaml(path)
        needs_path = isinstance(tree.get("data"), dict) and tree["data"].get("source") not in (
            None,
            "digits",
            "render3d",
        )
        r = load_recipe(path, ["data.path=DATA"] if needs_path and not tree["data"].get("path") else [])
        method = r.method.name + (f" {r.method.version}" if getattr(r.method, "version", None) else "")
        extras = [p.name for p in r.positives] + ([f"compat {r.compat.name}"] if r.compat else [])
        m = r.model
        backbone = (
            m.backbone + (" (CIFAR stem)" if m.cifar_stem else "") + (f" w{m.width}" if m.width else "")
        )
        out.append(
            {
                "recipe": str(path.relative_to(root)),
                "method": method + "".join(f" + {e}" for e in extras),
                "data": f"{r.data.source} {r.data.image_size}px",
                "backbone": backbone,
                "global batch": str(r.data.batch_size),
                "lr": _lr_rule(r.optim, r.data.batch_size),
                "epochs": str(r.train.epochs),
                "target": r.reference.target or "-",
                "source": r.reference.paper or "-",
            }
        )
    return out


def recipes_table(root: Path) -> str:
    rows_ = recipe_rows(root)
    cols = list(rows_[0]) if rows_ else []
    lines = [
        "# Shipped recipes",
        "",
        "Generated from the files under `recipes/` by `python -m selfsup.docs` (do not edit by hand).",
        "`target` is the published result a recipe's settings come from (the `reference:` section of",
        "the file, whose comments cite the paper's section or table for each value); `B` is the",
        "global batch (`data.batch_size`), the lr is the peak after scaling. A recipe for real data",
        "needs `--set data.path=...` (see `datasets/`).",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for row in rows_:
        cells = [f"`{v}`" if k == "recipe" else v.replace("|", "/") for k, v in row.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


INCLUDE_RE = re.compile(r"(<!-- include: (\S+) -->\n```yaml\n)(.*?)(```\n<!-- /include -->)", re.S)


def readme_with_includes(root: Path) -> str:
    """README.md with each ``<!-- include: FILE -->`` yaml block refreshed from FILE (verbatim)."""
    text = (root / "README.md").read_text()
    return INCLUDE_RE.sub(lambda m: m.group(1) + (root / m.group(2)).read_text() + m.group(4), text)


def write(root: Path, check: bool = False) -> list[Path]:
    """Write (or with ``check``, compare) the generated docs; returns the stale files."""
    stale = []
    generated = (
        ("docs/recipe_reference.md", recipe_reference()),
        ("docs/recipes.md", recipes_table(root)),
        ("README.md", readme_with_includes(root)),
    )
    for name, text in generated:
        path = root / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not check:
            path.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfsup.docs", description=__doc__.splitlines()[0])
    p.add_argument("--root", default=".", help="repository root (default: .)")
    p.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    args = p.parse_args(argv)
    missing = missing_descriptions()
    if missing:
        print("keys without a description comment: " + ", ".join(missing), file=sys.stderr)
        return 1
    stale = write(Path(args.root), args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    raise SystemExit(main())

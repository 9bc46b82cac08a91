"""What a run records about itself: the resume check, the run facts, the header printed at start.

The facts (world size, global / per-process batch, effective lr, precision, loader, versions) go
into ``metrics.json`` under ``run/...`` and ``versions/...`` and into the report, so a result can
always be traced to how it was obtained.
"""

from __future__ import annotations

import textwrap
from typing import Any

from ..config import Recipe, diff_trees, to_dict
from ..errors import ConfigError

# What may change when a run is resumed: how long it trains, how often it logs and saves, and what
# is evaluated at the end. Anything else (batch, lr, seed, data, model) would make the resumed run
# a different experiment recorded under the old one's name. The number of loader workers may change
# too (moving to a machine with other cores): the FFCV pipeline draws each sample's augmentation from
# (seed, epoch, sample index), so the batches do not depend on it.
RESUME_MAY_CHANGE = (
    "data.num_workers",
    "train.epochs",
    "train.max_steps",
    "train.ckpt_every_steps",
    "train.log_every",
    "train.progress",
)
RESUME_MAY_CHANGE_SECTIONS = ("eval.", "reference.")


def _allowed(key: str) -> bool:
    return key in RESUME_MAY_CHANGE or key.startswith(RESUME_MAY_CHANGE_SECTIONS)


def check_resume_recipe(saved: dict | None, recipe: Recipe, ckpt_path: str) -> None:
    """Refuse to resume with a recipe that differs from the saved one outside the allow-list."""
    if not isinstance(saved, dict):
        raise ConfigError(f"--resume: '{ckpt_path}' records no recipe; start a new run with --out")
    changed = [d for d in diff_trees(saved, to_dict(recipe)) if not _allowed(d[0])]
    if not changed:
        return
    shown = ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in changed[:5])
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    raise ConfigError(
        f"--resume: the recipe differs from the one this run was started with in {shown}{more}; "
        f"only {', '.join(RESUME_MAY_CHANGE)} and eval.* may change when resuming; "
        "restore those values or start a new run with another --out"
    )


def run_facts(
    recipe: Recipe,
    *,
    world_size: int,
    per_process_batch: int,
    micro_batch: int,
    lr: float,
    lr_rule: str,
    precision: str,
    device: str,
    loader: str,
    steps_per_epoch: int,
    planned_steps: int,
    method_facts: dict | None = None,
) -> dict[str, Any]:
    """The flat ``run/...``, ``versions/...`` (and method) entries of ``metrics.json``."""
    from ..utils.versions import library_versions

    facts: dict[str, Any] = {
        "run/world_size": world_size,
        "run/global_batch": recipe.data.batch_size,
        "run/per_process_batch": per_process_batch,
        "run/micro_batch": micro_batch,
        "run/grad_accum": recipe.train.grad_accum,
        "run/lr": lr,
        "run/lr_rule": lr_rule,
        "run/precision": precision,
        "run/device": device,
        "run/loader": loader,
        "run/steps_per_epoch": steps_per_epoch,
        "run/planned_steps": planned_steps,
    }
    facts.update({f"versions/{k}": v for k, v in library_versions().items()})
    facts.update(method_facts or {})
    return facts


def run_header(recipe: Recipe, run_dir: str, facts: dict[str, Any], resumed_at: int | None = None) -> str:
    """One paragraph printed when ``pretrain`` starts: what will run, on what, with which numbers."""
    m = recipe.model
    arch = m.backbone + "".join(
        [f", width {m.width}" if m.width else "", ", CIFAR stem" if m.cifar_stem else ""]
    )
    w = facts["run/world_size"]
    accum = recipe.train.grad_accum
    batch = (
        f"global batch {recipe.data.batch_size} = {w} process{'es' if w > 1 else ''} x "
        f"{facts['run/per_process_batch']}"
        + (f" ({accum} micro-batches of {facts['run/micro_batch']})" if accum > 1 else "")
    )
    groups = ""
    if "moco/bn_groups_per_process" in facts:
        groups = (
            f" MoCo key BN over groups of {facts['moco/bn_group_size']} images "
            f"({facts['moco/bn_groups_per_process']} per process)."
        )
    v = {k.split("/", 1)[1]: val for k, val in facts.items() if k.startswith("versions/")}
    start = f"resuming at step {resumed_at}" if resumed_at else "starting"
    text = (
        f"selfsup {v['selfsup']}: run '{recipe.name}' in {run_dir}, {start}. "
        f"{recipe.method.name} on {arch}, data {recipe.data.source} at {recipe.data.image_size} px. "
        f"{batch}; {facts['run/steps_per_epoch']} steps per epoch, {facts['run/planned_steps']} steps "
        f"planned. lr {facts['run/lr']:.4g} = {facts['run/lr_rule']}, {recipe.optim.name}, "
        f"{recipe.optim.schedule} schedule. Device {facts['run/device']}, precision "
        f"{facts['run/precision']}, loader {facts['run/loader']} (data.loader: {recipe.data.loader}).{groups} "
        f"torch {v['torch']}, timm {v['timm']}, accelerate {v['accelerate']}, ffcv {v['ffcv']}, "
        f"faiss {v['faiss']}."
    )
    return textwrap.fill(text, width=100)

"""The trainer: one code path for one process and for ``accelerate launch`` (N processes).

It builds the loader, the method, the optimizer and the schedule, runs the steps with optional
gradient accumulation and autocast, logs to TensorBoard, checkpoints atomically, resumes exactly,
and stops cleanly on a non-finite loss (keeping the last good checkpoint).

``data.batch_size`` is the global batch, as papers state it: each of the W processes holds
B / W, fed as ``train.grad_accum`` micro-batches; the lr follows the paper's rule for B
(``optim.lr_scaling``). So the same recipe means the same experiment on 1 or N processes.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

from ..config import Recipe, dump_recipe, split_batch, to_dict
from ..errors import CheckpointError, UserError
from ..models.export import export_encoder
from ..utils.checkpoint import load_model_state, read_checkpoint, save_checkpoint
from ..utils.dist import convert_sync_bn
from ..utils.io import atomic_write_text, check_folder, write_metrics
from .checkpoint import rng_state, set_rng_state
from .logging import RunLogger
from .optim import WarmupCosine, build_optimizer, lr_rule, peak_lr
from .runinfo import check_resume_recipe, run_facts, run_header
from .speed import apply as apply_speed_options
from .speed import first_step


def make_accelerator(recipe: Recipe):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cuda = torch.cuda.is_available()
    precision = recipe.train.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    # broadcast_buffers=False: the MoCo queue is identical on every rank by construction, and
    # re-broadcasting it each step would cost K x D floats.
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    return Accelerator(cpu=not cuda, mixed_precision=precision, kwargs_handlers=[ddp])


def _prepare(acc, model, opt):
    # torch deprecates broadcast_buffers for forward_sync_buffers, whose False still syncs at init
    # and which accelerate cannot pass yet: the warning would be printed by every process.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        return acc.prepare(model, opt)


def _norm_mode(recipe: Recipe, method_cls) -> str:
    mode = recipe.model.norm
    return method_cls.paper_norm if mode == "auto" else mode


class Trainer:
    def __init__(self, recipe: Recipe, run_dir: str | Path, resume: bool = False) -> None:
        from ..data.loaders import build_train_loader
        from ..methods import METHODS

        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.last_ckpt = self.ckpt_dir / "last.pt"
        check_folder(self.run_dir, "--out")
        self._fresh_dir = not self.run_dir.exists()  # removed again if the run fails before step 1
        if resume and not self.last_ckpt.exists():
            raise CheckpointError(
                f"--resume: nothing to resume in '{self.run_dir}' (no checkpoints/last.pt); drop --resume to start"
            )
        if not resume and self.last_ckpt.exists():
            raise UserError(
                f"'{self.run_dir}' already holds a run; pass --resume to continue it or --out to start elsewhere"
            )
        resume_state = None
        if resume:  # read once, checked before anything is built
            resume_state = read_checkpoint(self.last_ckpt)
            if "model" not in resume_state:
                raise CheckpointError(f"'{self.last_ckpt}' is an exported encoder, not a training checkpoint")
            check_resume_recipe(resume_state.get("recipe"), recipe, str(self.last_ckpt))
        self.acc = make_accelerator(recipe)
        from accelerate.utils import set_seed

        set_seed(recipe.seed)
        self.is_main = self.acc.is_main_process
        self.world = self.acc.num_processes
        accum = recipe.train.grad_accum
        self.per_process_batch, self.micro_batch = split_batch(recipe.data.batch_size, self.world, accum)
        # The model first: its checks (and a compat method's frozen models) fail before the loader
        # converts a dataset to a cached .beton.
        method_cls = METHODS[recipe.method.name]
        model = method_cls(recipe)
        from ..positives.attach import attach_positives

        attach_positives(model, recipe)
        from ..compat.attach import attach_compat

        attach_compat(model, recipe)
        self.loader = build_train_loader(recipe, self.acc.process_index, self.world, self.micro_batch)
        if self.world > 1 and _norm_mode(recipe, method_cls) == "syncbn":
            local = {id(m) for m in model.local_norm_modules()}
            for name, child in list(model.named_children()):
                if id(child) not in local:
                    setattr(model, name, convert_sync_bn(child))
        self.global_batch = recipe.data.batch_size
        lr = peak_lr(recipe.optim, self.global_batch)
        opt = build_optimizer(
            model.param_groups(recipe.optim.weight_decay, recipe.optim.exclude_bias_norm), recipe.optim, lr
        )
        self.steps_per_epoch = len(self.loader) // accum
        if self.steps_per_epoch < 1:
            raise UserError(
                "fewer batches per epoch than train.grad_accum; lower grad_accum or data.batch_size"
            )
        self.total_steps = self.steps_per_epoch * recipe.train.epochs
        # The schedule is planned over the steps that will run: max_steps cuts the plan, not the
        # cosine halfway through.
        self.planned_steps = min(self.total_steps, recipe.train.max_steps or self.total_steps)
        model.total_steps = self.planned_steps
        self.sched = WarmupCosine(
            opt,
            self.planned_steps,
            int(recipe.optim.warmup_epochs * self.steps_per_epoch),
            recipe.optim.schedule,
            recipe.optim.min_lr_ratio,
            [int(e * self.steps_per_epoch) for e in recipe.optim.step_epochs],
            recipe.optim.step_gamma,
        )
        # channels_last on CUDA, opt-in torch.compile (engine/speed.py); before prepare (DDP)
        self.speed = apply_speed_options(model, recipe, self.acc.device)
        self.model, self.opt = _prepare(self.acc, model, opt)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        describe = getattr(self.method, "describe", None)
        self.facts = run_facts(
            recipe,
            world_size=self.world,
            per_process_batch=self.per_process_batch,
            micro_batch=self.micro_batch,
            lr=lr,
            lr_rule=lr_rule(recipe.optim, self.global_batch),
            precision={"no": "fp32"}.get(self.acc.mixed_precision, self.acc.mixed_precision),
            device=str(self.acc.device),
            loader=getattr(self.loader, "name", type(self.loader).__name__),
            steps_per_epoch=self.steps_per_epoch,
            planned_steps=self.planned_steps,
            method_facts=describe() if describe is not None else None,
        )
        self.logger = RunLogger(self.run_dir, enabled=self.is_main)
        if resume:
            self._load(resume_state, self.last_ckpt)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # The effective recipe (on resume: with the allowed changes, e.g. more epochs).
            atomic_write_text(self.run_dir / "config.yaml", dump_recipe(recipe))
            print(run_header(recipe, str(self.run_dir), self.facts, self.global_step or None), flush=True)

    # -- state -------------------------------------------------------------------------------
    @property
    def method(self):
        return self.acc.unwrap_model(self.model)

    def _state(self) -> dict:
        from ..models.export import arch_dict

        return {
            "model": self.method.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "recipe": to_dict(self.recipe),
            "arch": arch_dict(self.recipe.model),
            "world_size": self.world,
        }

    def save(self) -> None:
        self.acc.wait_for_everyone()
        if self.is_main:
            save_checkpoint(self.last_ckpt, self._state())
            self.logger.flush()
        self.acc.wait_for_everyone()

    def _load(self, ckpt: dict, path: Path) -> None:
        if ckpt.get("recipe", {}).get("method", {}).get("name") != self.recipe.method.name:
            raise CheckpointError(
                f"'{path}' was trained with method '{ckpt.get('recipe', {}).get('method', {}).get('name')}', "
                f"not '{self.recipe.method.name}'"
            )
        load_model_state(self.method, ckpt["model"], path)
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        self.epoch, self.step_in_epoch, self.global_step = (
            ckpt["epoch"],
            ckpt["step_in_epoch"],
            ckpt["global_step"],
        )
        self.logger.truncate(self.global_step)

    # -- loop ----------------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        dev = self.acc.device
        fmt = torch.channels_last if self.speed["channels_last"] else torch.preserve_format

        def move(t):
            if t.ndim == 4:  # images
                return t.to(dev, non_blocking=True, memory_format=fmt)
            return t.to(dev, non_blocking=True)

        return {
            k: ([move(t) for t in v] if isinstance(v, list) else (move(v) if torch.is_tensor(v) else v))
            for k, v in batch.items()
        }

    def _global_loss(self, loss: torch.Tensor) -> float:
        """The mean loss over processes (what one process on the global batch reports).

        Also stops every process together on a non-finite loss, keeping the last good checkpoint.
        """
        val = loss.detach().float().reshape(1)
        stats = torch.cat(
            [torch.nan_to_num(val, nan=0.0, posinf=0.0, neginf=0.0), (~torch.isfinite(val)).float()]
        )
        if self.world > 1:
            stats = self.acc.reduce(stats, reduction="sum")
        if stats[1].item() > 0:
            kept = (
                f"the last good checkpoint is kept at {self.last_ckpt}"
                if self.last_ckpt.exists()
                else "no checkpoint was written yet"
            )
            raise UserError(
                f"loss became {loss.item()} at step {self.global_step + 1} (epoch {self.epoch}); {kept}. "
                "Lower optim.lr, add warm-up (optim.warmup_epochs) or check the data"
            )
        return stats[0].item() / self.world

    def fit(self) -> dict:
        """Train; a run that fails before its first step leaves no run folder behind."""
        try:
            return self._fit()
        except BaseException:
            if self.is_main and self._fresh_dir and self.global_step == 0:
                import shutil

                self.logger.close()
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _fit(self) -> dict:
        r = self.recipe
        accum = r.train.grad_accum
        max_steps = self.planned_steps
        kill_at = int(os.environ.get("SELFSUP_KILL_AT_STEP", "0"))  # test hook: simulate a crash
        pbar = None
        if self.is_main and r.train.progress:
            from tqdm.auto import tqdm

            pbar = tqdm(
                total=min(max_steps, self.total_steps),
                initial=self.global_step,
                desc="pretrain",
                unit="step",
                dynamic_ncols=True,
            )
        images_per_step = self.global_batch
        last = {}
        t_start = t_run = time.time()
        steps_this_run = 0
        stop = self.global_step >= max_steps
        while self.epoch < r.train.epochs and not stop:
            self.loader.set_epoch(self.epoch, self.step_in_epoch * accum)
            t_epoch = time.time()
            t_step = time.time()
            micro = 0
            for batch in self.loader:
                batch = self._to_device(batch)
                micro += 1
                sync = micro % accum == 0
                ctx = self.acc.no_sync(self.model) if (not sync and self.world > 1) else nullcontext()

                def micro_step(batch=batch, ctx=ctx):
                    with ctx, self.acc.autocast():
                        out = self.model(batch)
                        loss = out["loss"]
                    loss_value = self._global_loss(loss)
                    self.acc.backward(loss / accum)
                    return out, loss_value

                if steps_this_run == 0 and micro == 1:  # compile failures surface here: fall back
                    out, loss_value = first_step(micro_step, self.model, self.speed)
                else:
                    out, loss_value = micro_step()
                if not sync:
                    continue
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
                self.sched.step()
                self.global_step += 1
                self.step_in_epoch += 1
                steps_this_run += 1
                now = time.time()
                if steps_this_run == 1:
                    t_run = now  # throughput excludes the first step (loader JIT compile, warm-up)
                ips = images_per_step / max(1e-9, now - t_step)
                t_step = now
                last = {"train/loss": loss_value, "train/lr": self.sched.get_lr(), "train/img_per_s": ips}
                last.update(
                    {
                        f"train/{k}": float(v)
                        for k, v in out.items()
                        if k != "loss" and torch.is_tensor(v) and v.numel() == 1
                    }
                )
                last.update({f"train/{k}": float(v) for k, v in out.items() if isinstance(v, (int, float))})
                if self.global_step % max(1, r.train.log_every) == 0 or self.global_step == 1:
                    self.logger.log(self.global_step, last)
                if pbar is not None:
                    pbar.update(1)
                    pbar.set_postfix(loss=f"{last['train/loss']:.4f}", epoch=self.epoch)
                if r.train.ckpt_every_steps and self.global_step % r.train.ckpt_every_steps == 0:
                    self.save()
                if kill_at and self.global_step == kill_at:
                    os._exit(137)
                if self.global_step >= max_steps or self.step_in_epoch >= self.steps_per_epoch:
                    break
            if self.step_in_epoch >= self.steps_per_epoch:
                if self.is_main:
                    self.logger.log(
                        self.global_step,
                        {"train/epoch_time_s": time.time() - t_epoch, "train/epoch": self.epoch + 1},
                    )
                self.epoch += 1
                self.step_in_epoch = 0
                hook = getattr(self.method, "on_epoch_end", None)
                if hook is not None:
                    hook(self.epoch, self.run_dir)
            stop = self.global_step >= max_steps
            self.save()
        if pbar is not None:
            pbar.close()
        wall = time.time() - t_run
        wall_total = time.time() - t_start
        summary = {
            "train/steps": float(self.global_step),
            "train/epochs": float(self.epoch),
            "train/final_loss": float(last.get("train/loss", math.nan)),
            "train/img_per_s": (steps_this_run - 1) * images_per_step / wall if steps_this_run > 1 else 0.0,
            "train/wall_s": wall_total,
            **self.facts,
        }
        if self.is_main:
            self.export()
            write_metrics(self.run_dir / "metrics.json", summary)
            self.logger.close()
        self.acc.wait_for_everyone()
        return summary

    def export(self) -> Path:
        from ..models.export import arch_dict, fingerprint

        enc = self.method.encoder()
        path = self.run_dir / "encoder.pt"
        info = {
            "model_id": f"{self.recipe.name}@{self.global_step}",
            "fingerprint": fingerprint(enc),
            "recipe": to_dict(self.recipe),
        }
        extra = getattr(self.method, "export_info", None)
        if extra is not None:
            info.update(extra())
        export_encoder(path, enc, arch_dict(self.recipe.model), info)
        return path


def pretrain(recipe: Recipe, run_dir: str | Path, resume: bool = False) -> dict:
    """Train per the recipe into ``run_dir``; returns the training summary metrics."""
    trainer = Trainer(recipe, run_dir, resume)
    return trainer.fit()

"""Training-speed options: channels_last on CUDA and opt-in ``torch.compile`` with a safe fallback.

- ``train.channels_last`` (``auto``: on CUDA only): the model's weights and the input views in
  NHWC memory order, which cuDNN's convolutions (and tensor cores under bf16) run fastest; on CPU
  it is left off. ``train.precision: auto`` already means bf16 autocast on CUDA (fp16 where bf16
  is unsupported), fp32 on CPU (:func:`selfsup.engine.trainer.make_accelerator`).
- ``train.compile: true``: the method's backbone (the bulk of the compute) is compiled in place
  with ``nn.Module.compile`` (state-dict keys and checkpoints unchanged). Whether compiling works
  is checked before training on a tiny function on the training device; if it does not (no C++
  compiler, no Triton, an old torch) a one-line warning says so and training runs eagerly. If the
  backbone itself then fails to compile at the first step, :func:`first_step` restores the model
  and random state to before that step, turns compiling off with a warning and runs the step
  again, so a run never dies mid-way because of the compiler.

Which of these pay off is measured by ``tools/gpu_check.sh`` (``selfsup bench step`` variants).
"""

from __future__ import annotations

import copy
import sys

import torch
import torch.nn as nn

from ..errors import UserError


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def use_channels_last(recipe, device: torch.device) -> bool:
    mode = recipe.train.channels_last
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def compiler_works(device: torch.device) -> str | None:
    """``None`` when ``torch.compile`` compiles and runs a tiny function on ``device``, else why not."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    try:
        import torch._dynamo as dynamo

        dynamo.reset()
        fn = torch.compile(lambda x: torch.relu(x * 2.0 + 1.0), dynamic=False)
        x = torch.linspace(-1.0, 1.0, 8, device=device)
        got = fn(x)
        if not torch.allclose(got, torch.relu(x * 2.0 + 1.0)):
            return "torch.compile returned wrong values on a test function"
    except Exception as e:  # noqa: BLE001 - any failure means "not usable here"
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {first}"[:300]
    return None


def compile_targets(model: nn.Module) -> list[nn.Module]:
    """The modules compiled by ``train.compile``: the backbone (where the FLOPs are)."""
    backbone = getattr(model, "backbone", None)
    return [backbone] if isinstance(backbone, nn.Module) else []


def apply(model: nn.Module, recipe, device: torch.device) -> dict:
    """Apply the recipe's speed options to ``model`` (before ``accelerator.prepare``).

    Returns what is in effect: ``{"channels_last": bool, "compiled": [modules]}``.
    """
    state = {"channels_last": use_channels_last(recipe, device), "compiled": []}
    if state["channels_last"]:
        model.to(memory_format=torch.channels_last)
    if recipe.train.compile:
        reason = compiler_works(device)
        if reason is not None:
            warn(f"train.compile: torch.compile does not work here ({reason}); training without it")
        else:
            for m in compile_targets(model):
                m.compile()
            state["compiled"] = compile_targets(model)
    return state


def uncompile(modules: list[nn.Module]) -> None:
    """Undo ``nn.Module.compile`` (the module runs eagerly again)."""
    for m in modules:
        m._compiled_call_impl = None


def first_step(step_fn, model: nn.Module, state: dict):
    """Run ``step_fn()``; if a compiled module fails there, restore, compile off, and run it again."""
    if not state["compiled"]:
        return step_fn()
    saved = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        return step_fn()
    except UserError:
        raise  # e.g. a non-finite loss: not the compiler's doing
    except Exception as e:  # noqa: BLE001 - a compiler failure must not end the run
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warn(f"train.compile: compiling the model failed ({first[:200]}); continuing without it")
        uncompile(state["compiled"])
        state["compiled"] = []
        model.load_state_dict(saved)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        for p in model.parameters():
            p.grad = None
        return step_fn()

"""Training state for exact resume: the RNG states beside model, optimizer and schedule.

``checkpoints/last.pt`` holds everything needed to continue exactly: model (with MoCo queue and
step counter), optimizer, schedule, RNG states, and the position in the epoch. Files are written
by :func:`selfsup.utils.checkpoint.save_checkpoint` (temporary file + rename).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

"""Positive/negative score statistics of contrastive methods, per step and per epoch.

What the FT paper tracks (Zhu et al., ICCV 2021, arXiv 2108.02982, Sec. 3 and the official
``mem_moco.py``): per anchor ``i``, on the vectors actually scored (after FT, before dividing by
the temperature), ``mean_j neg_ij``, ``var_j neg_ij``, ``pos_i``, ``mean_j exp(neg_ij / T)`` and
``exp(pos_i / T)``; reduced over the batch as means (plus the variance of ``pos_i``). With FT on
these are not cosines, so the per-epoch histograms are of the TRUE cosines
(before FT), which are the same quantity for every run and can be overlaid.

Everything is computed from scores the loss already needs (no extra forward). The only extra work
is reductions, plus, when FT is active, one small ``[N, 4096]`` matmul for the cosine histogram.
For a MoCo queue longer than 4096 the negative statistics use every ``ceil(K / 4096)``-th slot
(evenly spaced, so keys of every age), which keeps them cheap next to the loss.
Sums stay on the device (no host sync per step); the epoch summary is all-reduced over processes and
written by rank 0 to ``RUN/scores.json`` atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..report.collapse import is_collapsed, view_invariance
from ..utils.dist import all_reduce_sum, is_dist, rank, world_size

STAT_KEYS = ("pos_mean", "pos_var", "neg_mean", "neg_var", "pos_exp", "neg_exp")
# Means of the TRUE cosines (before FT; equal to pos_mean / neg_mean without FT): comparable across
# runs, and what the collapse check reads (selfsup.positives.collapse).
COS_KEYS = ("pos_cos", "neg_cos")
# Logged every step as ``train/score/<key>``; ``pos_var`` only goes to scores.json (keeps the
# curves panel short).
STEP_KEYS = ("pos_mean", "neg_mean", "neg_var", "pos_exp", "neg_exp", "pos_cos", "neg_cos")
HIST_BINS = 100  # over [-1, 1]
HIST_NEG_COLS = 4096  # at most this many (evenly spaced) queue negatives per anchor enter the stats
SCORES_FORMAT = "selfsup.scores/1"


@torch.no_grad()
def score_stats(
    pos: torch.Tensor, neg: torch.Tensor, temperature: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """The statistics ``STAT_KEYS`` as one ``[6]`` float tensor.

    Args:
        pos: ``[A]`` positive score of each anchor (before dividing by ``temperature``).
        neg: ``[A, C]`` negative scores of each anchor.
        temperature: ``T`` of the exp-scores ``exp(s / T)``.
        valid: ``[A, C]`` bool, which entries of ``neg`` are negatives (``None``: all).

    Variances are population variances (``1/n``). Under N processes each computes these on its
    own anchors (against the global negatives); epoch summaries average them over processes, which
    equals the one-process value for every statistic except ``pos_var`` (a per-process variance).
    """
    pos, neg = pos.float(), neg.float()
    exp_neg = torch.exp(neg / temperature)
    if valid is None:
        neg_mean = neg.mean(1)
        neg_var = neg.var(1, unbiased=False)
        neg_exp = exp_neg.mean(1)
    else:
        cnt = valid.sum(1).clamp_min(1)
        neg_mean = neg.masked_fill(~valid, 0).sum(1) / cnt
        neg_var = ((neg - neg_mean[:, None]).masked_fill(~valid, 0) ** 2).sum(1) / cnt
        neg_exp = exp_neg.masked_fill(~valid, 0).sum(1) / cnt
    return torch.stack(
        [
            pos.mean(),
            pos.var(unbiased=False),
            neg_mean.mean(),
            neg_var.mean(),
            torch.exp(pos / temperature).mean(),
            neg_exp.mean(),
        ]
    )


class ScoreTracker:
    """Accumulates :func:`score_stats` and cosine histograms over an epoch.

    A plain object (not an ``nn.Module``): it holds no state worth checkpointing, so a method's
    ``state_dict`` is unchanged by it.
    """

    def __init__(self, bins: int = HIST_BINS) -> None:
        self.bins = bins
        self.was_collapsed = False  # the last closed epoch's flag: the log explains only the onset
        self.reset()

    def reset(self) -> None:
        self._sum: torch.Tensor | None = None
        self._hist_pos: torch.Tensor | None = None
        self._hist_neg: torch.Tensor | None = None
        self._steps = 0
        self.ft_steps = 0
        self.temperature: float | None = None

    def _hist(self, x: torch.Tensor) -> torch.Tensor:
        # Cosines can exceed 1 by rounding; histc would drop them.
        return torch.histc(x.float().clamp(-1.0, 1.0), bins=self.bins, min=-1.0, max=1.0)

    @torch.no_grad()
    def update(
        self,
        pos: torch.Tensor,
        neg: torch.Tensor,
        temperature: float,
        pos_cos: torch.Tensor,
        neg_cos: torch.Tensor,
        valid: torch.Tensor | None = None,
        ft_active: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Record one step; returns the step's scalars ``{"score/<key>": tensor}`` for logging.

        Args:
            pos, neg, valid: scored values as in :func:`score_stats` (after FT).
            pos_cos: ``[A]`` true cosines of the positive pairs (before FT).
            neg_cos: ``[A, C']`` true cosines of (a subset of) the negatives; ``valid`` applies
                when ``C' == C``.
        """
        stats = score_stats(pos.detach(), neg.detach(), temperature, valid)
        hp = self._hist(pos_cos.detach())
        nc = neg_cos.detach()
        nc = nc[valid] if (valid is not None and valid.shape == nc.shape) else nc
        hn = self._hist(nc)
        cos = torch.stack([pos_cos.detach().float().mean(), nc.float().mean()]).to(stats.device)
        stats = torch.cat([stats, cos])
        if self._sum is None:
            self._sum, self._hist_pos, self._hist_neg = stats, hp, hn
        else:
            self._sum = self._sum + stats
            self._hist_pos = self._hist_pos + hp
            self._hist_neg = self._hist_neg + hn
        self._steps += 1
        self.ft_steps += int(ft_active)
        self.temperature = float(temperature)
        keys = STAT_KEYS + COS_KEYS
        return {f"score/{k}": stats[keys.index(k)] for k in STEP_KEYS}

    def epoch_record(self, epoch: int) -> dict | None:
        """All-reduce the epoch's sums over processes (collective: call on every rank) and reset."""
        if self._sum is None:
            self.reset()
            return None
        counts = torch.tensor([float(self._steps), float(self.ft_steps)], device=self._sum.device)
        packed = torch.cat([self._sum, counts, self._hist_pos, self._hist_neg])
        if is_dist():
            packed = all_reduce_sum(packed)
        keys = STAT_KEYS + COS_KEYS
        n = len(keys)
        s, c = packed[:n], packed[n : n + 2]
        hp, hn = packed[n + 2 : n + 2 + self.bins], packed[n + 2 + self.bins :]
        steps = max(1.0, float(c[0]))  # summed over processes: means are over (process, step)
        rec = {"epoch": int(epoch), "steps": int(round(steps / world_size())), "ft_active": bool(c[1] > 0)}
        rec.update({k: float(v) / steps for k, v in zip(keys, s.tolist())})
        rec["invariance"] = view_invariance(rec)
        rec["collapsed"] = is_collapsed(rec)
        rec["hist_pos"] = [int(round(v)) for v in hp.tolist()]
        rec["hist_neg"] = [int(round(v)) for v in hn.tolist()]
        temperature = self.temperature
        self.reset()
        self.temperature = temperature
        return rec

    def write_epoch(self, epoch: int, run_dir: str | Path, info: dict | None = None) -> Path | None:
        """Append epoch ``epoch`` to ``run_dir/scores.json`` (rank 0; collective before)."""
        return self.write_record(self.epoch_record(epoch), run_dir, info)

    def write_record(self, rec: dict | None, run_dir: str | Path, info: dict | None = None) -> Path | None:
        """Append an :meth:`epoch_record` to ``run_dir/scores.json`` (rank 0 writes; atomic)."""
        if rec is None or rank() != 0:
            return None
        from ..utils.io import atomic_write_text

        epoch = int(rec["epoch"])
        path = Path(run_dir) / "scores.json"
        data: dict = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError:
                data = {}
        # A resumed run redoes epochs >= this one: drop them.
        epochs = [e for e in data.get("epochs", []) if e.get("epoch", 0) < epoch]
        data = {
            "format": SCORES_FORMAT,
            "temperature": self.temperature,
            "bins": torch.linspace(-1.0, 1.0, self.bins + 1).tolist(),
            "stats": (
                "per-epoch means of per-step batch statistics of the scored values (after FT, "
                "before /T); pos_cos/neg_cos: means of the true cosines (before FT); "
                "invariance: 1 - (1 - pos_cos) / (1 - neg_cos); collapsed: both cosine means "
                "above the collapse threshold; hist_pos/hist_neg: counts of true cosines in 'bins'"
            ),
            **(info or {}),
            "epochs": [*epochs, rec],
        }
        atomic_write_text(path, json.dumps(data) + "\n")
        return path

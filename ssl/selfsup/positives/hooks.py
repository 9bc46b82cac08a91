"""The small hooks the methods call: positive generators, contrastive scores and their statistics.

A method owns its encoders and calls one function here at the point each generator's paper names.
Generators are found as submodules (``method.hallucinator``, ``method.feature_transform``, attached
by :func:`selfsup.positives.attach.attach_positives`); with none attached every hook computes
exactly what the method computed before (same operations, same order), plus score statistics.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..utils.dist import gather_with_grad, rank, world_size
from .hallucinator import same_sample_mask
from .score_stats import HIST_NEG_COLS


def _generators(method) -> tuple:
    return getattr(method, "hallucinator", None), getattr(method, "feature_transform", None)


def _track(method, *args, **kwargs) -> dict:
    tracker = getattr(method, "scores", None)
    return tracker.update(*args, **kwargs) if tracker is not None else {}


def _canonical_rows(n: int, copies: int, device) -> torch.Tensor:
    """Positions of this process's rows in the global batch as one process would order it.

    Rows are ``copies`` blocks of ``n`` local rows (originals, then hallucinated); one process
    holding the global batch orders them ``[originals of all ranks; hallucinated of all ranks]``.
    Drawing per-row randomness for that layout and indexing it keeps N processes equal to one.
    """
    w, r = world_size(), rank()
    base = torch.arange(n, device=device) + r * n
    return torch.cat([base + c * w * n for c in range(copies)])


def _queue_filled(method, size: int, keys_per_step: int) -> int:
    """How many queue slots hold keys: the queue fills from slot 0, ``keys_per_step`` per step."""
    step = getattr(method, "step", None)
    if step is None:
        return size
    return min(size, int(step) * keys_per_step)


def moco_loss(
    method, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
    """InfoNCE of MoCo (He et al. 2020, Eq. 1) with the attached generators.

    Args:
        q: ``[N, d]`` UN-normalised query projections (the Hallucinator extrapolates them first).
        k: ``[N, d]`` normalised momentum keys (no gradient).
        queue: ``[K, d]`` detached copy of the queue.
        temperature: tau.

    Returns:
        ``(loss, keys_to_enqueue, stats)``: the mean over the (possibly doubled) queries; the key
        batches the queue must receive, in order (``[k, k]`` with the Hallucinator's official
        ``enqueue_duplicates``, else ``[k]``; never FT-mixed); ``score/*`` scalars. Enqueuing the
        duplicate as a second batch keeps the queue of N processes identical to one process's.
    """
    hal, ft = _generators(method)
    k = k.detach()  # MoCo's keys never receive gradient (momentum branch); a no-op in MoCo itself
    n = k.shape[0]
    enqueue = [k]
    if hal is not None:
        # Card: x = un-normalised q, anchor = normalised key (no gradient), output normalised.
        q = F.normalize(hal(q, k), dim=1)  # [2N, d]
        k = torch.cat([k, k], 0)
        if hal.cfg.enqueue_duplicates:
            enqueue = [enqueue[0], enqueue[0]]
    else:
        q = F.normalize(q, dim=1)
    q_s, k_s, negatives = q, k, queue
    ft_on = ft is not None and ft.active
    if ft_on:
        rows = _canonical_rows(n, q.shape[0] // n, q.device)
        q_s, k_s = ft.extrapolate(q, k, rows=(rows, q.shape[0] * world_size()))
        negatives = ft.interpolate(queue)
    # Same operations as selfsup.losses.contrastive.info_nce, kept here to reuse the scores.
    l_pos = (q_s * k_s).sum(1, keepdim=True)
    l_neg = q_s @ negatives.T
    logits = torch.cat([l_pos, l_neg], 1) / temperature
    loss = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
    with torch.no_grad():
        # Statistics over at most HIST_NEG_COLS evenly spaced queue slots (all ages of keys): on a
        # 65536-key queue the full [N, K] reductions would cost as much as the loss itself on CPU.
        stride = -(-queue.shape[0] // HIST_NEG_COLS)
        neg = l_neg[:, ::stride]
        pos_cos = (q * k).sum(1) if ft_on else l_pos[:, 0]
        # The true cosines skip slots that still hold the random initial vectors: they would pull
        # the first epoch's negative cosines towards 0 and fake an invariant, spread-out encoder.
        filled = _queue_filled(method, queue.shape[0], n * world_size() * len(enqueue))
        if filled < queue.shape[0]:
            real = queue[:filled] if filled > 0 else queue
            neg_cos = q @ real[:: -(-real.shape[0] // HIST_NEG_COLS)].T
        else:
            neg_cos = q @ queue[::stride].T if ft_on else neg
    stats = _track(method, l_pos[:, 0], neg, temperature, pos_cos, neg_cos, ft_active=ft_on)
    return loss, enqueue, stats


def simclr_loss(
    method, z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: bool = True
) -> tuple[torch.Tensor, dict]:
    """NT-Xent of SimCLR (Chen et al. 2020, Eq. 1) with the attached generators.

    Args:
        z1, z2: ``[N, d]`` raw projections of the two views; row ``i`` of each is a positive pair.
        temperature: tau.
        gather: candidates from every process, with gradient (as
            :func:`selfsup.losses.contrastive.nt_xent`).

    With the Hallucinator, NT-Xent runs on ``f1 = G(z1, z2)`` ``[2N, d]`` against
    ``f2 = [z2; z2]``; ``duplicate_negatives: false`` removes same-image rows other than the
    positive from each denominator. With FT, each anchor ``a`` and its positive ``p`` are
    extrapolated (``a_hat``, ``p_hat``) and the in-batch candidates are interpolated with a
    permutation of themselves; the anchor's negatives are scored as ``a_hat . c_hat_j`` and its
    positive as ``a_hat . p_hat``. (A mixed candidate may contain a share of the anchor or its
    positive when the permutation pairs them: probability about 2 / (2 N_global).)

    Returns:
        ``(loss, stats)``: mean over the ``2N`` (``4N`` with the Hallucinator) local anchors.
    """
    hal, ft = _generators(method)
    n = z1.shape[0]
    copies = 1
    if hal is not None:
        z1 = hal(z1, z2)  # [2N, d]; gradient flows into z2 through the anchor (paper)
        z2 = torch.cat([z2, z2], 0)
        copies = 2
    f1, f2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    m = f1.shape[0]
    a1 = gather_with_grad(f1) if gather else f1
    a2 = gather_with_grad(f2) if gather else f2
    m_all = a1.shape[0]
    w = m_all // m  # processes whose rows are candidates
    if copies > 1 and w > 1:
        # Gathered blocks are [z1_r; h_r] per rank; reorder to one process's [z1_all; h_all] so
        # that FT's candidate permutation mixes the same pairs for any number of processes.
        a1, a2 = (t.view(w, copies, n, -1).transpose(0, 1).reshape(m_all, -1) for t in (a1, a2))
    local = _canonical_rows(n, copies, z1.device) if w > 1 else torch.arange(m, device=z1.device)
    candidates = torch.cat([a1, a2], 0)  # [2 M_all, d]
    anchors = torch.cat([f1, f2], 0)  # [2 M, d]
    self_idx = torch.cat([local, local + m_all])
    pos_idx = torch.cat([local + m_all, local])
    mask = F.one_hot(self_idx, 2 * m_all).bool()
    if hal is not None and not hal.cfg.duplicate_negatives:
        ids = torch.arange(2 * m_all, device=z1.device) % (w * n)  # source image of each candidate
        mask = mask | same_sample_mask(ids[self_idx], ids, pos_idx)
    ft_on = ft is not None and ft.active
    if ft_on:
        positives = candidates[pos_idx]
        a_hat, p_hat = ft.extrapolate(anchors, positives, rows=(self_idx, 2 * m_all))
        scores = a_hat @ ft.interpolate(candidates).T
        scores = scores.scatter(1, pos_idx[:, None], (a_hat * p_hat).sum(1, keepdim=True))
    else:
        scores = anchors @ candidates.T
    # Same operations as selfsup.losses.contrastive.nt_xent when no generator is attached.
    logits = scores / temperature
    logits = logits.masked_fill(mask, torch.finfo(logits.dtype).min)
    loss = F.cross_entropy(logits, pos_idx)
    with torch.no_grad():
        pos_1h = F.one_hot(pos_idx, 2 * m_all).bool()
        valid = ~(mask | pos_1h)
        s = scores.detach()
        cos = (anchors @ candidates.T) if ft_on else s
        pos_s, pos_cos = s.gather(1, pos_idx[:, None])[:, 0], cos.gather(1, pos_idx[:, None])[:, 0]
    stats = _track(method, pos_s, s, temperature, pos_cos, cos, valid=valid, ft_active=ft_on)
    return loss, stats


def simsiam_hallucinate(
    method, p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimSiam with the Hallucinator; identity when none is attached.

    Args:
        p1, p2: ``[N, d]`` predictions of the two views; z1, z2: ``[N, d]`` projections.

    Returns:
        ``p1' = G(p1, p2)``, ``p2' = G(p2, p1)`` (anchor: the ORIGINAL p1; independent draws of r;
        gradient through the anchors), ``[z1; z1]``, ``[z2; z2]``, each ``[2N, d]``. The caller's
        loss detaches z, as SimSiam always does.
    """
    hal = getattr(method, "hallucinator", None)
    if hal is None:
        return p1, p2, z1, z2
    p1_h = hal(p1, p2)
    p2_h = hal(p2, p1)
    return p1_h, p2_h, torch.cat([z1, z1], 0), torch.cat([z2, z2], 0)


def epoch_end(method, epoch: int, run_dir: str | Path | None) -> None:
    """Close the epoch's score statistics, advance FT's gates, warn on collapse, write ``scores.json``.

    Called on every process (the statistics are all-reduced, so FT's gates agree everywhere); only
    rank 0 warns and writes. Two warnings go to stderr (``warning: ...``) and into
    ``RUN/scores.json`` (``warnings``), from where the run report repeats them: an epoch whose mean
    positive and negative cosines both exceed the collapse threshold, and (once per run) FT about
    to train on an encoder whose view invariance is below the value at which its positive
    extrapolation contracts the embedding. At the recipe's last epoch rank 0 also draws
    ``RUN/scores.png`` so that the run report includes it.
    """
    from ..report.collapse import collapse_message
    from .feature_transform import critical_invariance

    hal, ft = _generators(method)
    tracker = getattr(method, "scores", None)
    rec = tracker.epoch_record(epoch) if tracker is not None else None  # collective
    ft_was_active = ft is not None and ft.active
    if ft is not None:
        ft.end_epoch(epoch, rec)
    if rec is None:
        return
    warnings: list[str] = []
    if rec["collapsed"]:
        # The full explanation at the onset; a short line for each further collapsed epoch.
        if tracker.was_collapsed:
            warnings.append(
                f"epoch {epoch} still collapsed (mean cosine pos {rec['pos_cos']:.3f}, neg {rec['neg_cos']:.3f})"
            )
        else:
            warnings.append(collapse_message(rec, ft=ft_was_active))
    tracker.was_collapsed = bool(rec["collapsed"])
    if ft is not None and ft.active and ft.mixes_pos and not getattr(ft, "warned_invariance", False):
        rho, crit = rec.get("invariance"), critical_invariance(ft.cfg)
        if rho is not None and rho < crit:
            ft.warned_invariance = True
            warnings.append(
                f"epoch {epoch}: view invariance {rho:.2f} is below {crit:.2f}, where FT's positive "
                "extrapolation starts to contract the embedding towards a collapse (docs/methods/ft.md)"
            )
    if rank() == 0:
        import sys

        for w in warnings:
            print(f"warning: {w}", file=sys.stderr, flush=True)
    if run_dir is None:
        return
    names = [g for g, mod in (("hallucinator", hal), ("ft", ft)) if mod is not None]
    info = {"method": method.name, "generators": names, "name": getattr(method.recipe, "name", "")}
    if ft is not None:
        info["ft_critical_invariance"] = critical_invariance(ft.cfg)
    rec["warnings"] = warnings
    path = tracker.write_record(rec, run_dir, info)
    if path is not None and int(epoch) >= method.recipe.train.epochs:
        try:
            from ..report.scores import plot_scores

            plot_scores([Path(run_dir)], Path(run_dir) / "scores.png")
        except Exception as e:  # noqa: BLE001 - a plot must never cost the run its last checkpoint
            import warnings as _warnings

            _warnings.warn(f"scores.png not drawn: {e}", stacklevel=2)

"""The pieces of OBoW (:mod:`selfsup.methods.obow`): stage maps, vocabulary queue, dynamic head.

- :func:`stage_names` / :func:`stage_maps`: intermediate feature maps of a timm backbone read with
  forward hooks on the modules its ``feature_info`` names, so the exported encoder stays a plain
  timm model;
- :class:`Vocabulary`: one level's FIFO queue of teacher features (the visual words) and the
  running mean ``mu`` of the distance to the nearest word;
- :class:`WeightGenerator`: the student's dynamic BoW prediction head of one level, which turns
  the vocabulary into L2-normalised classifier weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError


def stage_names(backbone: nn.Module, levels: list[int], arch: str) -> list[str]:
    """Module names of the backbone stages that ``levels`` (indices into ``feature_info``) select."""
    info = getattr(backbone, "feature_info", None)
    names = [f.get("module") for f in info] if info is not None else []
    if not names or any(n is None for n in names):
        raise ConfigError(
            f"model.backbone: OBoW reads the feature maps of the backbone's stages, and '{arch}' "
            "lists none (no timm feature_info); use a ResNet"
        )
    try:
        picked = [names[i] for i in levels]
    except IndexError:
        raise ConfigError(
            f"method.levels: {levels} is outside the {len(names)} stages of '{arch}' ({', '.join(names)})"
        ) from None
    if len(set(picked)) != len(picked):
        raise ConfigError(f"method.levels: {levels} names the same stage twice")
    reductions = [info[i]["reduction"] for i in levels]
    if len(levels) > 1 and len(set(reductions)) == 1:
        raise ConfigError(
            f"model.backbone: OBoW needs stages at different resolutions (a ResNet); '{arch}' "
            f"has blocks {', '.join(picked)} all at stride {reductions[0]} (a transformer?)"
        )
    return picked


def stage_maps(
    model: nn.Module, x: torch.Tensor, names: list[str]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run ``model`` on ``x``; return the outputs of the modules ``names`` and the model's output."""
    modules = dict(model.named_modules())
    got: dict[str, torch.Tensor] = {}

    def keep(name: str):
        return lambda _m, _i, out: got.__setitem__(name, out)

    handles = [modules[n].register_forward_hook(keep(n)) for n in names]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return [got[n] for n in names], out


def check_maps(
    backbone: nn.Module, names: list[str], size: int, border: int, update: str, arch: str
) -> list[tuple[int, int, int]]:
    """``(channels, height, width)`` of each selected stage at ``size`` px, after the border crop.

    Refuses stages that do not give spatial maps (a ViT's blocks give token sequences) and maps
    too small for the border crop and the vocabulary update's 3x3 averaging.
    """
    was_training = backbone.training
    backbone.eval()  # no BN statistics update, one image suffices
    try:
        with torch.no_grad():
            maps, _ = stage_maps(backbone, torch.zeros(1, 3, size, size), names)
    except Exception as e:  # noqa: BLE001 - any failure here means "not a usable backbone"
        raise ConfigError(
            f"model.backbone: OBoW cannot read the stage maps of '{arch}' at {size} px ({e}); use a ResNet"
        ) from None
    finally:
        backbone.train(was_training)
    shapes = []
    for name, m in zip(names, maps):
        if not torch.is_tensor(m) or m.dim() != 4:
            raise ConfigError(
                f"model.backbone: stage '{name}' of '{arch}' gives no spatial feature map; OBoW needs "
                "a convolutional backbone with stages (a ResNet)"
            )
        c, h, w = m.shape[1], m.shape[2] - 2 * border, m.shape[3] - 2 * border
        need = 3 if update == "local_average" else 1
        if min(h, w) < need:
            raise ConfigError(
                f"method: stage '{name}' is {m.shape[2]}x{m.shape[3]} at {size} px, {h}x{w} after "
                f"method.border={border}, too small for vocab_update={update}; raise "
                "data.augment.plain_size (the teacher's view) or lower method.border"
            )
        shapes.append((c, h, w))
    return shapes


class Vocabulary(nn.Module):
    """One level's visual words: a FIFO queue ``[K, C]`` and the distance normaliser ``mu``.

    Initialised N(0, 1) clamped at 0 (ReLU-like, as the teacher's features). The queue is written
    in blocks of one global batch from a pointer to the oldest block, so ``K`` must be a multiple
    of the rows written per step (checked when OBoW is built).
    """

    def __init__(self, num_words: int, dim: int, decay: float = 0.99, mu0: float = 0.5) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("words", torch.randn(num_words, dim).clamp(min=0))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("mu", torch.full((), mu0))

    @property
    def num_words(self) -> int:
        return self.words.shape[0]

    @torch.no_grad()
    def update_mu(self, mean_min_distance: torch.Tensor) -> None:
        """``mu <- decay mu + (1 - decay) mean_min_distance`` (the mean over the global batch)."""
        self.mu.mul_(self.decay).add_(mean_min_distance.to(self.mu.dtype), alpha=1.0 - self.decay)

    @torch.no_grad()
    def enqueue(self, rows: torch.Tensor) -> None:
        """Overwrite the oldest ``len(rows)`` words with ``rows`` (``[B_global, C]``, rank order)."""
        b, k = rows.shape[0], self.num_words
        if k % b:
            raise RuntimeError(f"vocabulary of {k} words cannot take blocks of {b} rows")
        p = int(self.ptr)
        self.words[p : p + b] = rows.to(self.words.dtype)
        self.ptr.fill_((p + b) % k)


def sample_local_features(feats: torch.Tensor, update: str, locations: torch.Tensor | None) -> torch.Tensor:
    """One feature vector per image for the vocabulary queue.

    Args:
        feats: ``[B, C, H, W]`` border-cropped teacher map.
        update: ``local_average`` (3x3 average pooling, stride 1, no padding, then one location),
            ``no_averaging`` (one location of the map itself) or ``global_average`` (the mean).
        locations: ``[B]`` flat location indices into the (pooled) map, drawn by the caller
            uniformly in ``[0, H' W')``; unused for ``global_average``.

    Returns:
        ``[B, C]``.
    """
    if update == "global_average":
        return feats.mean((2, 3))
    if update == "local_average":
        feats = F.avg_pool2d(feats, kernel_size=3, stride=1, padding=0)
    flat = feats.flatten(2)  # [B, C, L]
    idx = locations.view(-1, 1, 1).expand(-1, flat.shape[1], 1)
    return flat.gather(2, idx)[:, :, 0]


def pooled_locations(h: int, w: int, update: str) -> int:
    """Number of candidate locations after the update's pooling (``H' W'``)."""
    return (h - 2) * (w - 2) if update == "local_average" else h * w


class WeightGenerator(nn.Module):
    """Dynamic BoW prediction head of one level (paper Sec. 3.2, Eq. 4).

    ``W = l2norm(Linear(ReLU(BN(Linear(l2norm(V))))))``: ``[K, C_l] -> [K, C]`` with the first
    linear layer without bias, hidden width ``2 C``; logits ``= kappa f W^T`` for the student's
    un-normalised pooled feature ``f`` ``[M, C]``. ``kappa`` is fixed unless ``learn_kappa``.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden: int, kappa: float, learn_kappa: bool = False
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        self.kappa = nn.Parameter(torch.tensor(float(kappa)), requires_grad=learn_kappa)

    def weights(self, words: torch.Tensor) -> torch.Tensor:
        """``[K, C_l]`` words -> ``[K, C]`` L2-normalised classifier weights."""
        h = F.relu(self.bn(self.fc1(F.normalize(words, dim=1))))
        return F.normalize(self.fc2(h), dim=1)

    def forward(self, feats: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """Logits ``[M, K]`` of the features ``[M, C]`` over the words ``[K, C_l]``."""
        return self.kappa * feats @ self.weights(words).T

"""Embed a source with an encoder: the one loop every evaluation and compat method uses."""

from __future__ import annotations

import numpy as np
import torch

from ..config import DataConfig
from .torchvision_loader import build_eval_loader


@torch.no_grad()
def extract_features(
    encoder: torch.nn.Module,
    source,
    data_cfg: DataConfig,
    batch_size: int = 256,
    progress: bool = True,
    device: str | torch.device | None = None,
    desc: str = "features",
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features ``[N, D]`` float32 and labels ``[N]`` of a source, in source order.

    ``num_workers`` decoding processes (0: in this process).
    """
    from tqdm.auto import tqdm

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder = encoder.to(device).eval()
    loader = build_eval_loader(source, data_cfg, batch_size, num_workers)
    feats, labels = [], []
    for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False):
        feats.append(encoder(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats).numpy(), torch.cat(labels).numpy().astype(np.int64)

"""The choice of training loader: FFCV when installed (or asked for), else torchvision.

Both implement :class:`selfsup.data.base.TrainLoader` over the same sharding
(:mod:`selfsup.data.sharding`) and yield the same batch format, so the choice changes nothing else
in a run.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import TrainLoader
from .torchvision_loader import TorchvisionTrainLoader, build_eval_loader

__all__ = ["build_eval_loader", "build_train_loader", "ffcv_available"]


def ffcv_available() -> bool:
    try:
        from .ffcv_loader import ffcv_available as _avail
    except ImportError:
        return False
    return _avail()


def build_train_loader(
    recipe, rank: int = 0, world_size: int = 1, batch_size: int | None = None
) -> TrainLoader:
    """The recipe's training loader: ``data.loader`` = auto (FFCV when installed) | ffcv | torchvision.

    ``batch_size`` is this process's batch per loader step (the trainer's micro-batch,
    ``data.batch_size / (world_size * grad_accum)``); by default ``data.batch_size / world_size``.
    """
    choice = recipe.data.loader
    if choice == "ffcv" or (choice == "auto" and ffcv_available()):
        if not ffcv_available():
            raise ConfigError(
                "data.loader=ffcv but ffcv is not installed; run tools/setup.sh (needs Debian's "
                "pkg-config libturbojpeg0-dev libopencv-dev) or set data.loader=torchvision"
            )
        from .ffcv_loader import FFCVTrainLoader

        return FFCVTrainLoader(recipe, rank, world_size, batch_size=batch_size)
    return TorchvisionTrainLoader(recipe, rank, world_size, batch_size=batch_size)

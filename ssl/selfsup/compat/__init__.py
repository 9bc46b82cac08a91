"""Backward-compatible training against a frozen old model (BCT, BT², OCA, Hot-Refresh).

One module per method, each with a config dataclass (selected by ``compat.name``) and
``attach(method, recipe, cfg)``, registered with :func:`selfsup.compat.common.register`;
:func:`selfsup.compat.attach.attach_compat` dispatches.
"""

from ..utils.registry import import_submodules
from .common import COMPAT

import_submodules(__name__, __path__)

__all__ = ["COMPAT"]

"""Backward-compatible training against a frozen old model (BCT, BT², OCA, Hot-Refresh).

One module per method, each with a config dataclass ``Config`` (selected by ``compat.name``) and
``attach(method, recipe, cfg)``; :func:`selfsup.compat.attach.attach_compat` dispatches.
"""

from . import bct, bt2, hotrefresh, independent, oca

COMPAT_METHODS = {m.Config.name: m for m in (independent, bct, bt2, oca, hotrefresh)}
# name -> config dataclass (each with a ``name`` field), used by the recipe loader.
COMPAT_CONFIGS: dict[str, type] = {name: m.Config for name, m in COMPAT_METHODS.items()}

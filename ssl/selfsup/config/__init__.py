"""Core recipe configuration: the schema of the core sections and the parsing helpers.

Nothing here knows a method, positive generator or compat method; recipes are assembled by
:mod:`selfsup.recipe`, above the plug-ins.
"""

from .parse import (
    choice,
    diff_trees,
    dump_recipe,
    flatten,
    from_dict,
    parse_overrides,
    read_yaml,
    set_path,
    to_dict,
)
from .schema import (
    AUGMENT_PRESETS,
    AugmentConfig,
    DataConfig,
    EquivarianceEvalConfig,
    EvalConfig,
    KnnEvalConfig,
    LinearEvalConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    Recipe,
    RenderConfig,
    TrainConfig,
    apply_preset,
    split_batch,
)
from .validate import validate_core

__all__ = [
    "AUGMENT_PRESETS",
    "AugmentConfig",
    "DataConfig",
    "EquivarianceEvalConfig",
    "EvalConfig",
    "KnnEvalConfig",
    "LinearEvalConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "Recipe",
    "RenderConfig",
    "TrainConfig",
    "apply_preset",
    "choice",
    "diff_trees",
    "dump_recipe",
    "flatten",
    "from_dict",
    "parse_overrides",
    "read_yaml",
    "set_path",
    "split_batch",
    "to_dict",
    "validate_core",
]

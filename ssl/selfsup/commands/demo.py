"""``selfsup demo``: the embedded end-to-end run behind ``make demo``."""

from __future__ import annotations

NAME = "demo"
HELP = "pretrain a small encoder on embedded data, evaluate it against a random encoder, write a report"


def add_arguments(p) -> None:
    p.add_argument("--out", default=None, help="run directory (default: runs/demo-<time>)")
    p.add_argument("--recipe", default=None, help="recipe to run (default: recipes/demo.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run(args) -> int:
    import textwrap
    import time
    from pathlib import Path

    from ..recipe import load_recipe
    from ..workflow import pretrain_and_evaluate

    recipe_path = Path(args.recipe) if args.recipe else demo_recipe_path()
    recipe = load_recipe(recipe_path, args.overrides)
    out = Path(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"selfsup demo: {recipe.method.name} on {recipe.data.source} ({recipe_path}) -> {out}")
    metrics = pretrain_and_evaluate(recipe, out)
    from ..report.run_report import baseline_sentence

    sentence = baseline_sentence(metrics)
    if sentence:
        print(textwrap.fill(sentence, 100))
    print(f"total wall time: {metrics.get('run/wall_s', 0):.0f}s")
    return 0


def demo_recipe_path():
    """The demo recipe shipped inside the package (``selfsup/recipes/demo.yaml``), from any directory."""
    from ..errors import UserError
    from ..recipe import SHIPPED

    shipped = SHIPPED / "demo.yaml"
    if shipped.is_file():
        return shipped
    raise UserError(f"the demo recipe is missing from the installed package ({shipped}); reinstall selfsup")

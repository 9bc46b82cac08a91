"""``selfsup pretrain RECIPE``: train, then run the evaluations the recipe lists."""

from __future__ import annotations

NAME = "pretrain"
HELP = "pretrain an encoder from a YAML recipe (works under accelerate launch)"


def add_arguments(p) -> None:
    p.add_argument("recipe", help="YAML recipe, e.g. recipes/demo.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set optim.lr=0.1 (repeatable)",
    )
    p.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluations listed in the recipe")


def run(args) -> int:
    from ..recipe import load_recipe
    from ..workflow import pretrain_and_evaluate

    recipe = load_recipe(args.recipe, args.overrides)
    out = args.out or f"runs/{recipe.name}"
    pretrain_and_evaluate(recipe, out, resume=args.resume, evaluate=not args.no_eval)
    return 0

"""The ``selfsup`` command line.

Every module in :mod:`selfsup.commands` contributes one command. A module defines ``NAME``,
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; a module that also defines
``GROUP`` becomes a subcommand of that group (``selfsup bench loader`` is ``GROUP = "bench"``,
``NAME = "loader"``). Command modules import heavy libraries inside ``run`` so that ``--help``
stays fast.

User errors (:class:`selfsup.errors.UserError`) print ``error: <message>`` and exit 2. Under a
multi-process launch (``selfsup launch`` or ``accelerate launch``) every process that fails exits
2, but an error is printed once per machine: by the first process to fail (a message that differs
from the one printed is printed too). ``selfsup launch`` then exits 2 itself, without the
launcher's traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import __version__
from .errors import UserError
from .utils.console import print_error

GROUP_HELP = {
    "eval": "evaluate a checkpoint: linear probe, kNN, retrieval, equivariance",
    "data": "make, write and describe datasets (.beton, 3D renders)",
    "compat": "backward-compatible training and compatibility matrices",
    "index": "backfill-free gallery index (faiss)",
    "bench": "throughput benchmarks",
    "plot": "plots from run directories",
}
ORDER = ["demo", "pretrain", "eval", "data", "compat", "index", "bench", "plot"]


def _command_modules() -> list:
    from . import commands

    mods = []
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfsup", description="Self-supervised pretraining, evaluation and compatible model updates."
    )
    parser.add_argument("--version", action="version", version=f"selfsup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    mods = _command_modules()
    top = {m.NAME: m for m in mods if not getattr(m, "GROUP", None)}
    groups: dict[str, list] = {}
    for m in mods:
        if getattr(m, "GROUP", None):
            groups.setdefault(m.GROUP, []).append(m)
    names = sorted(set(top) | set(groups), key=lambda n: (ORDER.index(n) if n in ORDER else 99, n))
    for name in names:
        if name in top:
            p = sub.add_parser(name, help=top[name].HELP, description=top[name].HELP)
            top[name].add_arguments(p)
            p.set_defaults(_run=top[name].run)
        else:
            gp = sub.add_parser(name, help=GROUP_HELP.get(name, ""), description=GROUP_HELP.get(name, ""))
            gsub = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
            gp.set_defaults(_run=lambda a, gp=gp: (gp.print_help(), 2)[1])
            for m in sorted(groups[name], key=lambda m: m.NAME):
                p = gsub.add_parser(m.NAME, help=m.HELP, description=m.HELP)
                m.add_arguments(p)
                p.set_defaults(_run=m.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["launch"]:
        # The launcher takes accelerate's options before the command: argparse cannot.
        from .commands.launch import launch

        names = {getattr(m, "GROUP", None) or m.NAME for m in _command_modules()} - {"launch"}
        return launch(argv[1:], names)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        print_error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: keep user-facing output to one line
        if os.environ.get("SELFSUP_DEBUG"):
            raise
        # Known user-caused failures from libraries surface here; anything else is a bug.
        print_error(f"{type(e).__name__}: {e} (set SELFSUP_DEBUG=1 for the traceback)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``selfsup launch [ACCELERATE OPTIONS] COMMAND ...``: run a selfsup command on N processes.

A thin wrapper over ``accelerate launch -m selfsup.cli``, for two things plain ``accelerate
launch`` cannot do:

- exit codes: torch's launcher turns any failed process into a ``ChildFailedError`` with about
  40 lines of traceback and exits 1. Here the processes print a user error once (see
  :func:`selfsup.cli.print_error`) and the launcher exits with their code (2), no traceback;
- defaults: without an ``accelerate config`` file, accelerate warns about every option left at
  its default. Those are filled here (one machine; precision ``no`` at the launcher, the recipe's
  ``train.precision`` decides in the trainer; dynamo off; threads from ``OMP_NUM_THREADS``),
  and ``--multi_gpu`` is implied by ``--num_processes N`` (N > 1), also on CPU (gloo).

Everything before the selfsup command is passed to accelerate, e.g.
``selfsup launch --num_processes 8 pretrain recipes/imagenet100/mocov2.yaml --set data.path=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os

NAME = "launch"
HELP = "run a selfsup command on N processes (accelerate launch with exit codes and defaults)"

# Options that choose another launcher: then --multi_gpu is not implied.
_MODES = ("multi_gpu", "cpu", "tpu", "use_deepspeed", "use_fsdp", "use_megatron_lm")


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Parsed by launch() (argparse cannot take accelerate's options before the command); declared
    # here for --help.
    p.add_argument(
        "args",
        nargs=argparse.REMAINDER,
        metavar="[ACCELERATE OPTIONS] COMMAND ...",
        help="accelerate launch options (e.g. --num_processes 8), then a selfsup command "
        "(e.g. pretrain RECIPE --set k=v)",
    )


def _fill_defaults(args) -> None:
    from accelerate.commands.config import default_config_file

    if args.config_file is None and not os.path.isfile(default_config_file):
        args.num_machines = 1 if args.num_machines is None else args.num_machines
        args.mixed_precision = args.mixed_precision or "no"
        args.dynamo_backend = args.dynamo_backend or "no"
        if args.num_processes is None:
            args.num_processes = 1
        if args.num_processes > 1 and not any(getattr(args, m, False) for m in _MODES):
            args.multi_gpu = True
    if getattr(args, "num_cpu_threads_per_process", None) is None:
        args.num_cpu_threads_per_process = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)


def _quiet_elastic_logs() -> None:
    """torch's elastic agent logs each failed or stopped process; the processes' own error line
    (or ours, for a signal) says what happened."""
    import logging

    import torch.distributed.elastic.agent.server.api  # noqa: F401  (creates the loggers)
    import torch.distributed.elastic.multiprocessing.api  # noqa: F401
    import torch.distributed.run  # noqa: F401

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def launch(argv: list[str], commands: set[str]) -> int:
    """Run ``argv`` (accelerate options, then one of ``commands``); returns the processes' exit code."""
    import subprocess

    from ..utils.console import error_marker, print_error

    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    at = next((i for i, a in enumerate(argv) if a in commands), None)
    if at is None:
        print_error(
            "selfsup launch needs a selfsup command after the launcher options, e.g. "
            "selfsup launch --num_processes 2 pretrain recipes/demo.yaml"
        )
        return 2
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    parser = launch_command_parser()
    try:
        args = parser.parse_args([*argv[:at], "-m", "selfsup.cli", *argv[at:]])
    except SystemExit as e:  # argparse printed the usage error
        return 2 if e.code else 0
    _fill_defaults(args)
    _quiet_elastic_logs()
    try:
        launch_command(args)
    except ChildFailedError as e:
        _, failure = e.get_first_failure()
        code = failure.exitcode
        if code < 0:  # killed by a signal: no process printed anything
            print_error(f"process rank {failure.rank} was killed by signal {-code}")
            return 128 - code
        return code
    except subprocess.CalledProcessError as e:  # one process: accelerate's simple launcher
        return e.returncode if e.returncode > 0 else 128 - e.returncode
    except ValueError as e:  # accelerate refused the options
        print_error(f"accelerate launch: {e}")
        return 2
    finally:
        marker = error_marker(launcher_pid=os.getpid())
        for path in glob.glob(marker.rsplit("-", 1)[0] + "-*"):
            with contextlib.suppress(OSError):
                os.unlink(path)
    return 0


def run(args: argparse.Namespace) -> int:  # pragma: no cover - selfsup.cli.main dispatches first
    from ..errors import UserError

    raise UserError("use: selfsup launch [ACCELERATE OPTIONS] COMMAND ...")

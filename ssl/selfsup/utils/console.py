"""Printing user errors: one ``error:`` line, once per machine under a multi-process launch."""

from __future__ import annotations

import os
import sys
import tempfile


def error_marker(launcher_pid: int | None = None) -> str | None:
    """Under a multi-process launch: the file through which this machine's processes agree that
    an error was printed (``None`` for a single process). Named after the launcher's pid (the
    parent of every local process) and the rendezvous port, so concurrent launches differ."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 and launcher_pid is None:
        return None
    pid = launcher_pid if launcher_pid is not None else os.getppid()
    port = os.environ.get("MASTER_PORT", "0")
    return os.path.join(tempfile.gettempdir(), f"selfsup-error-{pid}-{port}")


def print_error(message: str) -> None:
    """``error: <message>`` on stderr; once per machine under a multi-process launch."""
    line = f"error: {message}"
    marker = error_marker()
    if marker is not None:
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                with open(marker) as f:
                    if f.read() == line:
                        return  # another process of this launch printed it
            except OSError:
                pass
        except OSError:
            pass  # no shared temp folder: print
        else:
            with os.fdopen(fd, "w") as f:
                f.write(line)
    print(line, file=sys.stderr, flush=True)

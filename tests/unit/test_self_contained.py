"""The project carries its own method notes: no file cites a path outside the repository or the
engineers' internal notes, which users do not have."""

from __future__ import annotations

import re
import subprocess

from ..conftest import ROOT

# Paths outside the checkout, and references to engineers' internal notes.
FORBIDDEN = re.compile(
    r"/wor[k]/|\.\./share[d]|shared/referenc[e]|method car[d]|\bcar[d] section|\(car[d]\b|car[d]:"
)


def test_no_file_cites_outside_the_repository():
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    hits = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".yaml", ".toml", ".sh", ".txt", ".cfg") or not path.is_file():
            continue
        for no, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if FORBIDDEN.search(line):
                hits.append(f"{name}:{no}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)

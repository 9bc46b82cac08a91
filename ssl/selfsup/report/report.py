"""The short markdown report written at the end of every run."""

from __future__ import annotations

from pathlib import Path

from ..utils.io import atomic_write_text


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def metrics_table(rows: dict[str, dict[str, float]], keys: list[str]) -> str:
    """Markdown table: one row per model, one column per metric key."""
    head = "| model | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    body = "".join(
        f"| {name} | " + " | ".join(fmt(m.get(k, "")) for k in keys) + " |\n" for name, m in rows.items()
    )
    return head + body


def write_report(
    run_dir: str | Path, title: str, sections: list[tuple[str, str]], images: list[Path]
) -> Path:
    run_dir = Path(run_dir)
    parts = [f"# {title}\n"]
    for head, body in sections:
        parts.append(f"\n## {head}\n\n{body.rstrip()}\n")
    for img in images:
        if img is not None:
            parts.append(f"\n![{Path(img).stem}]({Path(img).name})\n")
    path = run_dir / "report.md"
    atomic_write_text(path, "".join(parts))
    return path

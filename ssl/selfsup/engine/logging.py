"""Run logging: TensorBoard scalars (main process) plus a JSON history used for plots/reports."""

from __future__ import annotations

import json
from pathlib import Path

from ..utils.io import atomic_write_text


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.history_path = self.run_dir / "history.json"
        self.history: list[dict] = []
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tb"))
            if self.history_path.exists():
                try:
                    self.history = json.loads(self.history_path.read_text())
                except json.JSONDecodeError:
                    self.history = []

    def truncate(self, step: int) -> None:
        """Drop history past ``step`` (a resumed run redoes those steps)."""
        self.history = [h for h in self.history if h["step"] <= step]

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in scalars.items():
            self.tb.add_scalar(k, v, step)
        self.history.append({"step": step, **{k: float(v) for k, v in scalars.items()}})

    def flush(self) -> None:
        if not self.enabled:
            return
        self.tb.flush()
        atomic_write_text(self.history_path, json.dumps(self.history))

    def close(self) -> None:
        if self.enabled:
            self.flush()
            self.tb.close()


def log_scalars(run_dir: str | Path, scalars: dict, step: int, prefix: str = "") -> None:
    """Append numeric ``scalars`` (evaluation metrics) to the run's TensorBoard events at ``step``."""
    values = {
        f"{prefix}{k}": float(v)
        for k, v in scalars.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if not values:
        return
    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(str(Path(run_dir) / "tb"))
    try:
        for k, v in values.items():
            tb.add_scalar(k, v, step)
    finally:
        tb.close()

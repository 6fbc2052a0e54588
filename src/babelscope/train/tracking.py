"""Experiment tracking beside the CSV logs: `--report-to tensorboard` (the HF Trainer's spelling) writes
TensorBoard event files to OUT/tensorboard, read with `tensorboard --logdir OUT`.

A resumed run starts a new event file whose `purge_step` makes TensorBoard drop what the killed run logged
after its last checkpoint, as `metrics.csv` drops those rows, so no step is shown twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from babelscope.errors import UserError

TRACKERS = ("tensorboard",)
EVENTS_DIR = "tensorboard"


def check_report_to(names: Sequence[str]) -> list[str]:
    """The trackers asked for ("none" means none); an unknown name is a UserError."""
    chosen = [n for n in names if n != "none"]
    bad = [n for n in chosen if n not in TRACKERS]
    if bad:
        raise UserError(f"--report-to {bad[0]!r} is not supported; choose {', '.join(TRACKERS)} or none")
    return chosen


class Tracker:
    """Scalars to the chosen trackers, by step; does nothing when none is chosen."""

    def __init__(self, out: str | Path, report_to: Sequence[str], start_step: int = 0):
        self.writer = None
        if "tensorboard" in check_report_to(report_to):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("--report-to tensorboard needs the tensorboard package (pip install tensorboard, or "
                                "babelscope's interop extra)") from None
            self.writer = SummaryWriter(str(Path(out) / EVENTS_DIR), purge_step=start_step + 1 if start_step else None)

    def log(self, step: int, values: Mapping[str, float | int | None]) -> None:
        """Record each finite value under its tag (e.g. train/loss) at `step`."""
        if self.writer is None:
            return
        for tag, value in values.items():
            if value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(tag, float(value), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

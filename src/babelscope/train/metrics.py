"""`metrics.csv` (one row per step, truncated back to the checkpoint on resume) and its loss-curve PNG."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from babelscope.files import atomic_path

COLUMNS = ["step", "tokens", "lr", "train_loss", "val_loss", "also_val_loss", "grad_norm", "tokens_per_s",
           "elapsed_s"]


# metrics.csv columns -> tracker tags, as the HF Trainer names them
TAGS = {"train_loss": "train/loss", "val_loss": "eval/loss", "also_val_loss": "eval/also_loss", "lr": "train/learning_rate",
        "grad_norm": "train/grad_norm", "tokens_per_s": "train/tokens_per_second", "tokens": "train/tokens_seen"}


class MetricsLog:
    """Append-only CSV; `resume_at(step)` drops rows a killed run wrote after its last checkpoint, and a row the
    kill cut in half (which would otherwise read as a row for another step). Rows also go to `tracker`
    (`train.tracking.Tracker`: TensorBoard) when one is given."""

    def __init__(self, path: str | Path, tracker=None):
        self.path = Path(path)
        self.tracker = tracker

    def resume_at(self, step: int) -> None:
        whole = self._whole_lines()
        rows = list(csv.DictReader(io.StringIO(whole)))
        keep, last = [], -1
        for r in rows:
            s = r.get("step") or ""
            if not s.isdigit() or None in r.values() or int(s) <= last or int(s) > step:
                continue
            keep.append(r)
            last = int(s)
        if len(keep) != len(rows) or not self.path.exists() or self.path.stat().st_size != len(whole.encode()):
            self._rewrite(keep)

    def _whole_lines(self) -> str:
        """The file up to its last complete line."""
        if not self.path.exists():
            return ""
        data = self.path.read_bytes()
        return data[:data.rfind(b"\n") + 1].decode("utf-8", errors="replace")

    def start(self) -> None:
        self._rewrite([])

    def _rewrite(self, rows: list[dict]) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow({k: _fmt(row.get(k)) for k in COLUMNS})
        if self.tracker is not None:
            self.tracker.log(int(row["step"]), {tag: row.get(k) for k, tag in TAGS.items()})

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))


def _fmt(v) -> str:
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else str(v)


def plot_losses(metrics_csv: str | Path, out_png: str | Path, title: str = "") -> None:
    """Train and validation loss against tokens seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = MetricsLog(metrics_csv).read()
    train = [(int(r["tokens"]), float(r["train_loss"])) for r in rows if r["train_loss"]]
    val = [(int(r["tokens"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    also = [(int(r["tokens"]), float(r["also_val_loss"])) for r in rows if r.get("also_val_loss")]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train, strict=True), lw=0.8, alpha=0.7, label="train")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", ms=3, label="validation")
    if also:
        ax.plot(*zip(*also, strict=True), "s--", ms=3, label="validation, --also-eval")
    ax.set_xlabel("tokens")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(title or Path(metrics_csv).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)

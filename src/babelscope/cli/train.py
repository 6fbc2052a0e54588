"""`babelscope train`: pre-train a preset, continue pre-training (`--init-from`), or resume a run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from babelscope.cli._common import command

if TYPE_CHECKING:
    from babelscope.train.loop import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "train", run, "Pre-train a story model, continue pre-training it, or resume a run.",
            description="Pre-train a preset on a corpus (AdamW, constant 5e-5 after 5% warm-up by default), "
                        "continue pre-training from a model's weights and optimizer state (--init-from), "
                        "or resume a killed run exactly (--resume). Works under torchrun (DDP).",
            settings="babelscope.train.loop:TrainConfig")


def run(cfg: TrainConfig) -> int:
    from babelscope.train.loop import train

    print(f"final model: {train(cfg)}")
    return 0

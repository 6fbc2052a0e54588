"""`babelscope study bilingual`: the checkpoint x layer (x model size) sweep of the bilingual study."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group

if TYPE_CHECKING:
    from babelscope.recipes.sweep import StudyConfig


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "study", "End-to-end studies over many checkpoints.")
    command(g, "bilingual", run, "Sweep checkpoints x layers: SAEs, feature stores, language measures, figures.",
            description="For every checkpoint and layer train (or reuse) a TopK SAE (k capped at d/4, 16 x d "
                        "latents, first 64 tokens, BOS dropped, L2-normalised inputs), build its feature "
                        "store on held-out documents, compute the mixed-language share and monosemanticity, "
                        "and draw the study's figures (STUDY_DIR/index.html). Finished cells are skipped, so "
                        "a killed sweep resumes.",
            settings="babelscope.recipes.sweep:StudyConfig")


def run(cfg: StudyConfig) -> int:
    from pathlib import Path

    from babelscope.cli._common import require
    from babelscope.recipes.sweep import SweepConfig, run_sweep
    from babelscope.settings import narrow

    runs = ([str(Path(cfg.checkpoints))] if cfg.checkpoints else []) + list(cfg.runs)
    require(bool(runs), "give --checkpoints RUN/checkpoints and/or --runs RUN_A,RUN_B")
    run_sweep(runs, cfg.data, cfg.out, narrow(cfg, SweepConfig))
    return 0

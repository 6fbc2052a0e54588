"""`babelscope run RECIPE`: run a study recipe (TOML) stage by stage, resumable; `--plan` prints its costs."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from babelscope.cli._common import command
from babelscope.settings import Settings, opt


@dataclass(kw_only=True)
class RunConfig(Settings):
    """`babelscope run`."""

    recipe: str = opt(help="a recipe file, or a bundled recipe's name (demo, medium, study_a, study_b)",
                      positional=True, metavar="RECIPE")
    out: str | None = opt(None, "output directory (default: the recipe's, e.g. demo_out)")
    set: list[str] = opt(help="STAGE.KEY=VALUE, inputs.NAME=VALUE or defaults.KEY=VALUE; repeat for several",
                         default_factory=list, nargs="append", metavar="KEY=VALUE")
    plan: bool = opt(False, "run nothing: print every stage with its tokens, FLOPs and estimated time")
    accelerator: str = opt("h100", "with --plan: the accelerator to estimate times for (h100, h200, a100, l4)")
    utilisation: float = opt(0.35, "with --plan: the share of the accelerator's bf16 peak the stages reach",
                             gt=0.0, le=1.0)


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "run", run, "Run a study recipe (TOML): every stage keyed by its settings, resumable.",
            description="Run the stages of a recipe in order. A stage whose settings and inputs are unchanged is "
                        "skipped, a changed one reruns with everything downstream, a killed one resumes. Outputs "
                        "land in OUT/STAGE/, the studies' results in OUT/summary.json and OUT/report/index.html. "
                        "--plan prints each stage's cost on this machine and on an accelerator instead.",
            settings=RunConfig)


def run(cfg: RunConfig) -> int:
    if cfg.plan:
        from babelscope.recipes.plan import print_plan

        print_plan(cfg.recipe, cfg.set, accelerator=cfg.accelerator, utilisation=cfg.utilisation)
        return 0
    from babelscope.recipes.runner import run_recipe

    run_recipe(cfg.recipe, cfg.out, cfg.set)
    return 0

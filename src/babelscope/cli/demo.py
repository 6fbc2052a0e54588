"""`babelscope demo`: the main job on the embedded storyworld corpus (`babelscope run demo`, what `make demo` runs)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from babelscope.cli._common import command
from babelscope.settings import Settings, opt


@dataclass(kw_only=True)
class DemoConfig(Settings):
    """`babelscope demo`."""

    out: str = opt("demo_out", "output directory (a rerun skips finished stages and resumes a killed one)")
    set: list[str] = opt(help="STAGE.KEY=VALUE to change the demo recipe (see `babelscope run --help`)",
                         default_factory=list, nargs="append", metavar="KEY=VALUE")


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "demo", run, "Run both studies on storyworld, on a CPU, in minutes (the demo recipe).",
            description="The demo recipe (`babelscope run demo`): translated-style and native Arabic storyworld "
                        "stories, a tokenizer, a small model pre-trained and continually pre-trained, translation "
                        "marks, SAEs and TSEA (Study A), and a bilingual model swept over checkpoints and layers "
                        "(Study B); OUT/report/index.html holds each claim beside the paper's number.",
            settings=DemoConfig)


def run(cfg: DemoConfig) -> int:
    from babelscope.recipes.runner import run_recipe

    run_recipe("demo", cfg.out, cfg.set)
    return 0

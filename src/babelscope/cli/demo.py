"""`babelscope demo`: the main job on the embedded storyworld corpus (what `make demo` runs)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from babelscope.cli._common import command

if TYPE_CHECKING:
    from babelscope.recipes.demo import DemoConfig


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "demo", run, "Run the whole pipeline on storyworld, on a CPU, in minutes.",
            description="Generate translated-style and native Arabic storyworld corpora, train a tokenizer, "
                        "pre-train a small model, continue pre-training it on the native set, and compare "
                        "them. Stages whose outputs exist are skipped, so a killed demo resumes.",
            settings="babelscope.recipes.demo:DemoConfig")


def run(cfg: DemoConfig) -> int:
    from babelscope.recipes.demo import run_demo

    run_demo(cfg)
    return 0

"""`babelscope models list`: the preset family with parameter counts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from babelscope.cli._common import command, group
from babelscope.settings import Settings, opt


@dataclass(kw_only=True)
class ModelsListConfig(Settings):
    """`babelscope models list`."""

    vocab_size: int = opt(32000, "tokenizer size the counts assume", gt=0)


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "models", "The model presets.")
    command(g, "list", run, "List the presets with their parameter counts, with and without embeddings.",
            settings=ModelsListConfig)


def run(cfg: ModelsListConfig) -> int:
    from babelscope.models.presets import preset_table

    print(f"{'preset':<8} {'layers':>6} {'hidden':>6} {'heads':>5} {'mlp':>6} {'ctx':>5} "
          f"{'params':>12} {'no-embed':>12}   (vocabulary {cfg.vocab_size:,})")
    for r in preset_table(cfg.vocab_size):
        print(f"{r['name']:<8} {r['layers']:>6} {r['hidden']:>6} {r['heads']:>5} {r['mlp']:>6} {r['context']:>5} "
              f"{r['params']:>12,} {r['params_no_embed']:>12,}")
    return 0

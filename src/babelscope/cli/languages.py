"""`babelscope analyze languages`: language selectivity, entropies, monosemanticity and spans per feature."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from babelscope.cli._common import command
from babelscope.cli.analyze import analyze_commands
from babelscope.files import dumps

if TYPE_CHECKING:
    from babelscope.analysis.languages import LanguagesConfig


def register(sub: argparse._SubParsersAction) -> None:
    command(analyze_commands(sub), "languages", run,
            "Per-feature language distribution, class, entropies, monosemanticity.",
            description="Read a feature store (`babelscope analyze features`) and write, per feature: the "
                        "share of activating occurrences per document language, the class (a language if "
                        "its share >= tau, else mixed; 'insufficient' below --min-activations), token and "
                        "semantic entropy, R_mono and mean span length (measures.parquet/.csv), plus a summary row "
                        "(summary.json/.csv).",
            settings="babelscope.analysis.languages:LanguagesConfig")


def run(cfg: LanguagesConfig) -> int:
    from babelscope.analysis.languages import analyze_languages

    options = {k: v for k, v in asdict(cfg).items() if k not in ("features", "out")}
    summary = analyze_languages(cfg.features, cfg.out, **options)
    print(dumps(summary, indent=2))
    if summary["pair_link_rate"] > 0.05:
        print(f"babelscope: note: cosine > {summary['sim_threshold']:.3g} links {summary['pair_link_rate']:.0%} of "
              "random token pairs in these embeddings, so semantic clusters merge unrelated tokens and R_mono runs "
              "high; --sim-threshold zmatch gives the study's 0.1 the same z-score at this width", file=sys.stderr)
    if summary["n_insufficient"]:
        print(f"babelscope: note: {summary['n_insufficient']} of {summary['n_alive']} live features have fewer than "
              f"{cfg.min_activations} activating occurrences and are left out of shares and means", file=sys.stderr)
    return 0

"""`babelscope corpus ...`: make corpora; `corpus storyworld` writes the embedded parallel story corpus."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from babelscope.cli import _common

if TYPE_CHECKING:
    from babelscope.corpus.storyworld import StoryworldConfig


def register(sub: argparse._SubParsersAction) -> None:
    corpus = _common.group(sub, "corpus", "make and inspect corpora")
    _common.command(
        corpus, "storyworld", storyworld,
        help="write the generated English/Arabic children's stories with planted translation marks",
        description="Write N procedurally generated children's stories, parallel in English and Arabic, as JSONL "
                    "or Parquet. Every record labels its names, name origin, dialogue-tag order, features and "
                    "drawn words. --style translated gives Arabic with English names and English tag order; "
                    "native gives Arabic names and the tag before the quote.",
        settings="babelscope.corpus.storyworld:StoryworldConfig")


def storyworld(cfg: StoryworldConfig) -> int:
    from babelscope.corpus import write_corpus
    from babelscope.corpus.readers import corpus_format
    from babelscope.corpus.storyworld import check_options, generate_stories
    from babelscope.progress import progress

    langs = check_options(cfg.langs, cfg.style, cfg.dialogue_before_rate)
    from babelscope.files import check_output

    _common.require(corpus_format(cfg.out) in ("jsonl", "parquet") and not cfg.out.endswith(".gz"),
                    f"{cfg.out}: storyworld writes .jsonl or .parquet")
    check_output(cfg.out, directory=False)
    records = generate_stories(cfg.stories, langs, cfg.style, cfg.seed, cfg.dialogue_before_rate)
    bar = progress(records, total=cfg.stories * len(langs), desc="storyworld", unit="rec", unit_scale=True)
    n = write_corpus(cfg.out, bar)
    bar.close()
    print(f"wrote {n} records ({cfg.stories} stories x {','.join(langs)}, style {cfg.style}) to {cfg.out}")
    return 0

"""`babelscope tokenizer train`: a byte-level BPE on a corpus."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group

if TYPE_CHECKING:
    from babelscope.tokenizer import TokenizerConfig


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "tokenizer", "Train byte-level BPE tokenizers.")
    command(g, "train", run, "Train a byte-level BPE tokenizer and save it as an HF tokenizer directory.",
            settings="babelscope.tokenizer:TokenizerConfig")


def run(cfg: TokenizerConfig) -> int:
    from babelscope.corpus import iter_corpus
    from babelscope.files import check_output
    from babelscope.tokenizer import iter_texts, train_tokenizer

    records = iter_corpus(cfg.data, cfg.text_field)
    check_output(cfg.out, directory=True)
    tok = train_tokenizer(iter_texts(records), cfg.vocab_size, cfg.out,
                          min_frequency=cfg.min_frequency, model_max_length=cfg.context)
    print(f"tokenizer with {len(tok)} tokens written to {cfg.out}")
    return 0

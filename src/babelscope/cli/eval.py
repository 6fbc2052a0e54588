"""`babelscope eval`: perplexity and bits per byte, the LLM judge (Table 3), and the translation marks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group

if TYPE_CHECKING:
    from babelscope.eval.settings import JudgeConfig, MarksConfig, PerplexityConfig
    from babelscope.eval.translation import TranslationEvalConfig


def register(sub: argparse._SubParsersAction) -> None:
    ev = group(sub, "eval", "Evaluate models: perplexity, LLM judge, translation marks and quality.")
    command(ev, "translation", run_translation, "Score translations against references: BLEU, chrF++, COMET.",
            description="sacrebleu's corpus BLEU and chrF++ per corpus and language pair (printed with sacrebleu's "
                        "signatures), and COMET from a local model directory with --comet. A translation is "
                        "paired with its reference by --key, else by source_index (what `translate` writes), else "
                        "by a unique id, else line by line.",
            settings="babelscope.eval.translation:TranslationEvalConfig")
    command(ev, "perplexity", run_perplexity, "Perplexity and bits per byte of a model, per document label.",
            settings="babelscope.eval.settings:PerplexityConfig")
    command(ev, "judge", run_judge, "Score story completions with an LLM judge (grammar, creativity, consistency).",
            description="Complete story beginnings cut mid-sentence (two samples at temperature 1 by default) "
                        "with each model, have a judge model behind an OpenAI-compatible endpoint score each "
                        "completion from 0 to 10, and print the per-model means (the study's Table 3). DIR gets "
                        "completions.jsonl, judgements.jsonl (resumable), scores.csv and manifest.json.",
            settings="babelscope.eval.settings:JudgeConfig")
    command(ev, "marks", run_marks, "Measure translation marks: name origin, dialogue-tag order, distinct-n.",
            description="Generate stories from each model (from name-free story openers, or --prompts) and "
                        "count the translation marks in the completions: English- vs Arabic-origin names, "
                        "dialogue tags after vs before the quote, and distinct-1/2/3. Or score existing texts "
                        "with --texts. DIR gets generations.jsonl (resumable) and marks.csv.",
            settings="babelscope.eval.settings:MarksConfig")


def run_translation(cfg: TranslationEvalConfig) -> int:
    from babelscope.eval.tables import format_table
    from babelscope.eval.translation import COLUMNS, evaluate
    from babelscope.files import check_output, write_json_atomic

    if cfg.out:
        check_output(cfg.out, directory=False)
    result = evaluate(cfg)
    print(format_table(result["rows"], COLUMNS + (["comet"] if cfg.comet else []), digits=2))
    for name, sig in result["signatures"].items():
        print(f"{name}: {sig}")
    if cfg.out:
        write_json_atomic(cfg.out, result)
    return 0


def run_perplexity(cfg: PerplexityConfig) -> int:
    from babelscope.eval.runs import PPL_COLUMNS, perplexity_rows
    from babelscope.eval.tables import format_table

    print(format_table(perplexity_rows(cfg), PPL_COLUMNS, digits=4))
    return 0


def run_judge(cfg: JudgeConfig) -> int:
    from babelscope.eval.runs import JUDGE_COLUMNS, judge_rows
    from babelscope.eval.tables import format_table

    rows, failures, n_items = judge_rows(cfg)
    print(format_table(rows, JUDGE_COLUMNS))
    if failures:
        print(f"{len(failures)} of {n_items} completions have no scores (first: {failures[0]['error']}); the "
              f"judge's raw answers are in {Path(cfg.out) / 'judgements.jsonl'}")
    if n_items and len(failures) == n_items:  # a run whose every record failed is a failed run
        print(f"babelscope: error: no completion was judged ({failures[0]['error']})", file=sys.stderr)
        return 1
    return 0


def run_marks(cfg: MarksConfig) -> int:
    from babelscope.eval.runs import MARK_COLUMNS, marks_rows
    from babelscope.eval.tables import format_table

    print(format_table(marks_rows(cfg), MARK_COLUMNS, digits=3))
    return 0

"""`babelscope translate`: translate a corpus with an NLLB/M2M100 model (CTranslate2 or transformers)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from babelscope.cli._common import command

if TYPE_CHECKING:
    from babelscope.data.translate import TranslateJob


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "translate", run, "Translate a corpus sentence by sentence with an NLLB/M2M100 model.",
            description="Translate stories sentence by sentence (quotes kept with their tags) and write JSONL: "
                        "every input field is kept, `text` becomes the translation, `source_text` holds the "
                        "original, `lang` the target language and `source_index` the record's position in the "
                        "input. The output is append-only: a killed run resumes where it stopped. With --ref, "
                        "BLEU and chrF++ against the references are shown as it goes and written at the end.",
            settings="babelscope.data.translate:TranslateJob")


def run(job: TranslateJob) -> int:
    from babelscope.data.translate import check_inputs, load_backend, translate_corpus
    from babelscope.files import check_output

    check_inputs(job.inputs, job.text_field)  # a bad input fails before the model loads
    check_output(job.out, directory=False)
    running = None
    if job.ref:
        from babelscope.eval.translation import RunningScore

        running = RunningScore(job.ref, job.ref_key)  # a bad reference file fails before the model loads
    backend = load_backend(job.backend, job.model, job.src, job.tgt, **job.backend_options())
    stats = translate_corpus(backend, job, on_chunk=running.add if running else None)
    print(f"translated {stats.written} records ({stats.sentences} sentences, {stats.sentences_per_s:.1f} "
          f"sentences/s); {stats.skipped} already in {job.out}", file=sys.stderr)
    if job.ref:
        _score(job)
    return 0


def _score(job: TranslateJob) -> None:
    """Score the whole output (this run's records and earlier ones) against --ref."""
    from babelscope.eval.tables import format_table
    from babelscope.eval.translation import COLUMNS, TranslationEvalConfig, evaluate
    from babelscope.files import write_json_atomic

    result = evaluate(TranslationEvalConfig(hyp=[job.out], ref=[job.ref], key=job.ref_key))
    print(format_table(result["rows"], COLUMNS), file=sys.stderr)
    write_json_atomic(job.out + ".scores.json", result)

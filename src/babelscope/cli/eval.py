"""`babelscope eval`: perplexity and bits per byte, the LLM judge (Table 3), and the translation marks."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group, require

if TYPE_CHECKING:
    from babelscope.eval.settings import JudgeConfig, MarksConfig, PerplexityConfig

PPL_COLUMNS = ["label", "docs", "tokens", "loss", "ppl", "bpb"]
JUDGE_COLUMNS = ["model", "grammar", "creativity", "consistency", "judged", "failed"]
MARK_COLUMNS = ["model", "texts", "names_english", "names_arabic", "english_name_share", "names_ambiguous",
                "ambiguous_top", "tags_after", "tags_before", "quotes_untagged", "tag_after_share", "distinct_1",
                "distinct_2", "distinct_3"]


def register(sub: argparse._SubParsersAction) -> None:
    ev = group(sub, "eval", "Evaluate models: perplexity, LLM judge, translation marks.")
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


def run_perplexity(args: PerplexityConfig) -> int:
    from babelscope.corpus import iter_corpus
    from babelscope.eval.perplexity import perplexity
    from babelscope.eval.tables import format_table, write_csv
    from babelscope.models import load_model

    model, tok = load_model(args.model, device=args.device)
    records = iter_corpus(args.data, args.text_field)
    table = perplexity(model, tok, records, max_tokens=args.max_tokens, batch_size=args.batch_size,
                       label_field=args.label_field, max_docs=args.max_docs)
    rows = [{"label": label, **row} for label, row in table.items()]
    print(format_table(rows, PPL_COLUMNS, digits=4))
    if args.out:
        write_csv(args.out, rows, PPL_COLUMNS)
    return 0


def _check_models(models: list[str]) -> list[str]:
    from babelscope.eval.judge import model_labels
    from babelscope.models.loading import check_model_dir

    for m in models:
        check_model_dir(m)
    return model_labels(models)


def _key(r: dict) -> tuple:
    return (r["model"], r["prompt_id"], r["sample"])


def run_judge(args: JudgeConfig) -> int:
    from babelscope.data.client import OpenAIClient
    from babelscope.eval.judge import complete_prompts, judge_all, load_prompts, score_table
    from babelscope.eval.tables import format_table, write_csv
    from babelscope.files import Journal, write_json_atomic
    from babelscope.manifest import manifest
    from babelscope.settings import as_dict

    labels = _check_models(args.models)
    prompts = load_prompts(args.prompts, args.lang, args.limit)
    key = os.environ.get(args.api_key_env) or None
    with OpenAIClient(args.judge_url, key, key_name=args.api_key_env, max_retries=args.max_retries) as client:
        client.check(args.judge_model)  # an unreachable or unauthorised judge fails before any generation
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "manifest.json", manifest("eval judge", as_dict(args)))
        with Journal(out / "completions.jsonl", key=_key) as completions:
            for model, label in zip(args.models, labels, strict=True):
                complete_prompts(model, label, prompts, completions, n=args.samples, temperature=args.temperature,
                                 max_new_tokens=args.max_new_tokens, seed=args.seed, device=args.device)
        wanted = {(label, p["id"], s) for label in labels for p in prompts for s in range(args.samples)}
        items = [r for r in _read(out / "completions.jsonl") if _key(r) in wanted]
        with Journal(out / "judgements.jsonl", key=_key) as judgements:
            judge_all(client, args.judge_model, items, judgements, concurrency=args.concurrency,
                      retries=args.judge_retries, temperature=args.judge_temperature)
    rows = score_table([r for r in _read(out / "judgements.jsonl") if _key(r) in wanted], labels)
    print(format_table(rows, JUDGE_COLUMNS))
    write_csv(out / "scores.csv", rows, JUDGE_COLUMNS)
    failures = [r for r in _read(out / "judgements.jsonl") if _key(r) in wanted and r["scores"] is None]
    if failures:
        print(f"{len(failures)} of {len(items)} completions have no scores (first: {failures[0]['error']}); the "
              f"judge's raw answers are in {out / 'judgements.jsonl'}")
    return 0


def _read(path: Path) -> list[dict]:
    import json

    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_marks(args: MarksConfig) -> int:
    from babelscope.eval.judge import bundled_prompts, complete_prompts, load_prompts
    from babelscope.eval.marks import mark_counts
    from babelscope.eval.tables import format_table, write_csv
    from babelscope.files import Journal

    require(bool(args.models) != bool(args.texts), "give either --models (to generate) or --texts (to score)")
    out = Path(args.out)
    rows = []
    if args.texts:
        from babelscope.corpus import iter_corpus

        groups = {Path(t).name: [r["text"] for r in iter_corpus([t], args.text_field)] for t in args.texts}
        rows = [{"model": name, **mark_counts(texts, args.lang)} for name, texts in groups.items()]
    else:
        labels = _check_models(args.models)
        prompts = load_prompts(args.prompts or bundled_prompts("openers.jsonl"), args.lang, args.limit)
        out.mkdir(parents=True, exist_ok=True)
        with Journal(out / "generations.jsonl", key=_key) as journal:
            for model, label in zip(args.models, labels, strict=True):
                complete_prompts(model, label, prompts, journal, n=args.samples, temperature=args.temperature,
                                 max_new_tokens=args.max_new_tokens, seed=args.seed, device=args.device)
        ids = {p["id"] for p in prompts}
        done = [r for r in _read(out / "generations.jsonl") if r["prompt_id"] in ids and r["sample"] < args.samples]
        rows = [{"model": label, **mark_counts([r["completion"] for r in done if r["model"] == label], args.lang)}
                for label in labels]
    print(format_table(rows, MARK_COLUMNS, digits=3))
    write_csv(out / "marks.csv", rows, MARK_COLUMNS)
    return 0

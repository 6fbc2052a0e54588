"""The `babelscope eval` commands as library functions (the CLI prints their rows; recipes call them too)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from babelscope.errors import UserError
from babelscope.eval.settings import JudgeConfig, MarksConfig, PerplexityConfig

PPL_COLUMNS = ["label", "docs", "tokens", "loss", "ppl", "bpb"]
JUDGE_COLUMNS = ["model", "grammar", "creativity", "consistency", "judged", "failed"]
MARK_COLUMNS = ["model", "texts", "names_english", "names_arabic", "english_name_share", "names_ambiguous",
                "ambiguous_top", "tags_after", "tags_before", "quotes_untagged", "tag_after_share", "distinct_1",
                "distinct_2", "distinct_3"]


def perplexity_rows(cfg: PerplexityConfig) -> list[dict]:
    """One row per document label plus "all": docs, tokens, loss, ppl, bpb (written as CSV to cfg.out if set)."""
    from babelscope.corpus import iter_corpus
    from babelscope.eval.perplexity import perplexity
    from babelscope.eval.tables import write_csv
    from babelscope.files import check_output
    from babelscope.models import load_model

    records = iter_corpus(cfg.data, cfg.text_field)  # a bad corpus or output fails before the model loads
    if cfg.out:
        check_output(cfg.out, directory=False)
    model, tok = load_model(cfg.model, device=cfg.device)
    table = perplexity(model, tok, records, max_tokens=cfg.max_tokens,
                       batch_size=cfg.batch_size, label_field=cfg.label_field, max_docs=cfg.max_docs)
    rows = [{"label": label, **row} for label, row in table.items()]
    if cfg.out:
        write_csv(cfg.out, rows, PPL_COLUMNS)
    return rows


def model_labels_checked(models: list[str]) -> list[str]:
    """The table names of model directories (RUN for RUN/final), each checked to be a model directory."""
    from babelscope.eval.judge import model_labels
    from babelscope.models.loading import check_model_dir

    for m in models:
        check_model_dir(m)
    return model_labels(models)


def _key(r: dict) -> tuple:
    return (r["model"], r["prompt_id"], r["sample"])


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def judge_rows(cfg: JudgeConfig) -> tuple[list[dict], list[dict], int]:
    """Complete the prompts with every model, have the judge score them (both resumable journals in cfg.out);
    returns (per-model score rows, the judgements that failed, the number of completions judged)."""
    from babelscope.data.client import OpenAIClient
    from babelscope.eval.judge import complete_prompts, judge_all, load_prompts, score_table
    from babelscope.eval.tables import write_csv
    from babelscope.files import Journal, check_output, write_json_atomic
    from babelscope.manifest import manifest
    from babelscope.settings import as_dict

    labels = model_labels_checked(cfg.models)
    prompts = load_prompts(cfg.prompts, cfg.lang, cfg.limit)
    check_output(cfg.out, directory=True)
    key = os.environ.get(cfg.api_key_env) or None
    out = Path(cfg.out)
    with OpenAIClient(cfg.judge_url, key, key_name=cfg.api_key_env, max_retries=cfg.max_retries) as client:
        client.check(cfg.judge_model)  # an unreachable or unauthorised judge fails before any generation
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "manifest.json", manifest("eval judge", as_dict(cfg)))
        with Journal(out / "completions.jsonl", key=_key) as completions:
            for model, label in zip(cfg.models, labels, strict=True):
                complete_prompts(model, label, prompts, completions, n=cfg.samples, temperature=cfg.temperature,
                                 max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, device=cfg.device)
        wanted = {(label, p["id"], s) for label in labels for p in prompts for s in range(cfg.samples)}
        items = [r for r in read_jsonl(out / "completions.jsonl") if _key(r) in wanted]
        with Journal(out / "judgements.jsonl", key=_key) as judgements:
            judge_all(client, cfg.judge_model, items, judgements, concurrency=cfg.concurrency,
                      retries=cfg.judge_retries, temperature=cfg.judge_temperature)
    judged = [r for r in read_jsonl(out / "judgements.jsonl") if _key(r) in wanted]
    rows = score_table(judged, labels)
    write_csv(out / "scores.csv", rows, JUDGE_COLUMNS)
    return rows, [r for r in judged if r["scores"] is None], len(items)


def marks_rows(cfg: MarksConfig) -> list[dict]:
    """Translation marks per model (generating from story openers, resumable) or per --texts file; also
    written to cfg.out/marks.csv."""
    from babelscope.eval.judge import bundled_prompts, complete_prompts, load_prompts
    from babelscope.eval.marks import mark_counts
    from babelscope.eval.tables import write_csv
    from babelscope.files import Journal, check_output, write_json_atomic

    if bool(cfg.models) == bool(cfg.texts):
        raise UserError("give either --models (to generate) or --texts (to score)")
    out = Path(cfg.out)
    if cfg.texts:
        from babelscope.corpus import check_corpus, iter_corpus

        check_corpus(cfg.texts, cfg.text_field)
        check_output(out, directory=True)
        groups = {Path(t).name: [r["text"] for r in iter_corpus([t], cfg.text_field)] for t in cfg.texts}
        rows = [{"model": name, **mark_counts(texts, cfg.lang)} for name, texts in groups.items()]
    else:
        labels = model_labels_checked(cfg.models)
        prompts = load_prompts(cfg.prompts or bundled_prompts("openers.jsonl"), cfg.lang, cfg.limit)
        check_output(out, directory=True)
        out.mkdir(parents=True, exist_ok=True)
        with Journal(out / "generations.jsonl", key=_key) as journal:
            for model, label in zip(cfg.models, labels, strict=True):
                complete_prompts(model, label, prompts, journal, n=cfg.samples, temperature=cfg.temperature,
                                 max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, device=cfg.device)
        ids = {p["id"] for p in prompts}
        done = [r for r in read_jsonl(out / "generations.jsonl") if r["prompt_id"] in ids and r["sample"] < cfg.samples]
        rows = [{"model": label, **mark_counts([r["completion"] for r in done if r["model"] == label], cfg.lang)}
                for label in labels]
    write_csv(out / "marks.csv", rows, MARK_COLUMNS)
    write_json_atomic(out / "marks.json", {r["model"]: r for r in rows})
    return rows

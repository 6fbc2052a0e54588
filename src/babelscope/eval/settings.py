"""The settings of the `babelscope eval` commands (perplexity, judge, marks), declared once (see settings.py)."""

from __future__ import annotations

from dataclasses import dataclass

from babelscope.settings import SEED, Settings, csv, opt


@dataclass(kw_only=True)
class PerplexityConfig(Settings):
    """`babelscope eval perplexity`: perplexity and bits per byte of a model, per document label."""

    model: str = opt(help="HF model directory")
    data: list[str] = opt(help="held-out corpus files (JSONL, .txt, Parquet)")
    label_field: str = opt("lang", "documents are grouped by this field")
    text_field: str = opt("text", "the record field holding the text")
    max_tokens: int | None = opt(None, "window length (default: the model's context)", gt=1)
    batch_size: int = opt(16, "windows per forward pass", gt=0)
    max_docs: int | None = opt(None, "read at most this many documents", gt=0)
    device: str = opt("auto", "cpu, cuda or auto")
    out: str | None = opt(None, "also write the table as CSV here")


@dataclass(kw_only=True)
class SamplingConfig(Settings):
    """Completions of story beginnings, shared by the judge and the marks."""

    models: list[str] = opt(help="model directories, comma-separated", parse=csv, default_factory=list)
    samples: int = opt(2, "completions per prompt", short="-n", gt=0)
    max_new_tokens: int = opt(200, "most new tokens per completion", gt=0)
    temperature: float = opt(1.0, "sampling temperature", ge=0.0)
    seed: int = opt(0, "seed of the sampling", **SEED)
    device: str = opt("auto", "cpu, cuda or auto")
    prompts: str | None = opt(None, "JSONL with id, lang, prompt (default: babelscope's bundled prompts)")
    limit: int | None = opt(None, "only the first N prompts", gt=0)
    out: str = opt(help="output directory (resumed if it exists)")


@dataclass(kw_only=True)
class JudgeConfig(SamplingConfig):
    """`babelscope eval judge`: completions scored 0-10 by an LLM judge (grammar, creativity, consistency)."""

    models: list[str] = opt(help="model directories, comma-separated", parse=csv)
    judge_url: str = opt(help="judge API root, e.g. https://api.openai.com/v1")
    judge_model: str = opt(help="the judge model's name at that endpoint")
    lang: str | None = opt(None, "only prompts in this language (e.g. en, ar)")
    api_key_env: str = opt("OPENAI_API_KEY", "environment variable holding the judge's API key (never logged or "
                                             "written)", metavar="NAME")
    concurrency: int = opt(4, "judge requests in flight", gt=0)
    judge_retries: int = opt(2, "new answers asked for when one cannot be parsed", ge=0)
    judge_temperature: float = opt(0.0, "the judge's sampling temperature", ge=0.0)
    max_retries: int = opt(6, "HTTP retries on 429, 5xx or a lost connection", ge=0)


@dataclass(kw_only=True)
class MarksConfig(SamplingConfig):
    """`babelscope eval marks`: translation marks (name origin, dialogue-tag order, distinct-n) in generations
    or in given texts."""

    samples: int = opt(4, "completions per prompt", short="-n", gt=0)
    texts: list[str] = opt(help="score these corpus files instead of generating (one row per file)",
                           default_factory=list)
    text_field: str = opt("text", "the record field holding the text (with --texts)")
    lang: str = opt("ar", "language of the prompts and of the texts", choices=("en", "ar"))

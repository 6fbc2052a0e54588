"""Synthetic stories from any OpenAI-compatible chat endpoint, with the Arabic TinyStories study's prompt.

Prompt `index` of run `seed` draws a verb, a noun and an adjective a 3-year-old knows (storyworld's word lists,
in the target language) and story features with Table 6's probabilities, each independently, and fills the
template of the study's Figure A.1 (written for this project from its description). Records are keyed by
prompt index, so a restart never writes a story twice; a content hash also drops repeated stories. A story that
is not in the target language (script share below a threshold), empty, cut by the token limit or a repeat is
asked for again, then counted. Token usage and cost are summed and saved beside the output.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from babelscope.corpus.script import LANG_SCRIPT, lang_share
from babelscope.data.client import Completion, OpenAIClient, RequestError
from babelscope.errors import UserError
from babelscope.files import Journal, write_json_atomic
from babelscope.manifest import manifest
from babelscope.progress import progress
from babelscope.settings import SEED, Settings, opt

# Table 6: feature, probability, instruction.
FEATURES: dict[str, tuple[float, str]] = {
    "Dialogue": (0.6, "the story should contain at least one dialogue"),
    "BadEnding": (0.3, "the story has a bad ending"),
    "Conflict": (0.1, "the story has some form of conflict in it"),
    "MoralValue": (0.1, "the story has a moral value"),
    "Foreshadowing": (0.1, "the narrative uses foreshadowing or setup and payoff"),
    "Twist": (0.3, "something unexpected happens / there is a plot twist"),
}
LANGUAGE_NAMES = {"ar": "Arabic", "en": "English"}
TEMPLATE = ("Write a short story (3-5 paragraphs) in {language} language which only uses very simple words that a "
            "3 year old child would likely understand. The story should use the verb \"{verb}\", the noun "
            "\"{noun}\" and the adjective \"{adjective}\".{features} Remember to write in {language} and to only "
            "use simple words!")


def word_lists(lang: str) -> dict[str, list[str]]:
    """Verbs, nouns and adjectives a small child knows, in `lang`, from storyworld's aligned vocabulary.

    Arabic verbs are given in the past tense (third person masculine), the form a dictionary lists them in.
    """
    from babelscope.corpus.storyworld import ADJECTIVES, NOUNS, VERBS

    if lang == "en":
        lists = {"verb": [v.en for v in VERBS], "noun": [n.en for n in NOUNS], "adjective": [a.en for a in ADJECTIVES]}
    elif lang == "ar":
        lists = {"verb": [v.ar_past for v in VERBS], "noun": [n.ar for n in NOUNS],
                 "adjective": [a.ar_m for a in ADJECTIVES]}
    else:
        raise UserError(f"no word lists for language {lang!r}; expected one of {', '.join(LANGUAGE_NAMES)}")
    return {k: sorted(set(v)) for k, v in lists.items()}


def draw_features(rng: random.Random) -> list[str]:
    """Each Table 6 feature independently with its probability."""
    return [name for name, (p, _) in FEATURES.items() if rng.random() < p]


def build_prompt(lang: str, verb: str, noun: str, adjective: str, features: list[str]) -> str:
    """Figure A.1's prompt; with no features drawn, the features sentence is left out."""
    feats = ""
    if features:
        feats = " The story should have the following features: " + \
            ", ".join(FEATURES[f][1] for f in features) + "."
    return TEMPLATE.format(language=LANGUAGE_NAMES[lang], verb=verb, noun=noun, adjective=adjective, features=feats)


@dataclass(frozen=True)
class SynthPrompt:
    index: int
    id: str
    lang: str
    words: dict[str, str]
    features: list[str]
    prompt: str


def synth_prompt(index: int, lang: str, seed: int = 0, lists: dict[str, list[str]] | None = None) -> SynthPrompt:
    """Prompt `index` of run `seed`; it depends on nothing else, so a restart rebuilds the same prompts."""
    lists = lists or word_lists(lang)
    rng = random.Random(f"synth:{seed}:{lang}:{index}")
    words = {k: rng.choice(lists[k]) for k in ("verb", "noun", "adjective")}
    features = draw_features(rng)
    return SynthPrompt(index, f"synth-{lang}-{seed}-{index:07d}", lang, words, features,
                       build_prompt(lang, words["verb"], words["noun"], words["adjective"], features))


def content_hash(text: str) -> str:
    """Hash of a story with case, Unicode form and whitespace normalised, for duplicate detection."""
    norm = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    return hashlib.sha1(norm.encode()).hexdigest()


def check_story(text: str, lang: str, min_share: float, finish_reason: str | None,
                keep_truncated: bool = False) -> str | None:
    """Why a story is rejected (`empty`, `truncated`, `language`), or None if it is kept."""
    if not text.strip():
        return "empty"
    if finish_reason == "length" and not keep_truncated:
        return "truncated"
    if lang_share(text, lang) < min_share:
        return "language"
    return None


@dataclass(kw_only=True)
class SynthConfig(Settings):
    """`babelscope synth`: synthetic stories from an OpenAI-compatible chat endpoint with the study's prompt."""

    base_url: str = opt(help="API root including the version, e.g. http://127.0.0.1:8000/v1")
    model: str = opt(help="model name the endpoint serves")
    n: int = opt(help="number of prompts (stories wanted), e.g. 20000 or 20k", gt=0)
    out: str = opt(help="output JSONL (resumed if it exists)")
    lang: str = opt("ar", "language of the stories", choices=("ar", "en"))
    api_key_env: str = opt("OPENAI_API_KEY", "environment variable holding the API key (never logged or written)",
                           metavar="NAME")
    seed: int = opt(0, "which prompts: prompt i of seed s never changes", **SEED)
    concurrency: int = opt(8, "requests in flight at once", gt=0)
    max_attempts: int = opt(3, "tries per prompt for a rejected story", gt=0)
    min_lang_share: float = opt(0.9, "least share of letters in the target language's script", ge=0.0, le=1.0)
    keep_truncated: bool = opt(False, "keep stories cut by --max-tokens")
    temperature: float = opt(1.0, "sampling temperature", ge=0.0)
    top_p: float | None = opt(None, "nucleus sampling", gt=0.0, le=1.0)
    max_tokens: int = opt(1024, "most tokens per story", gt=0)
    send_seed: bool = opt(True, "do not send a per-request `seed` (for endpoints that refuse it)", flag="--no-seed")
    price_in: float = opt(0.0, "price per 1M prompt tokens, for the cost", ge=0.0)
    price_out: float = opt(0.0, "price per 1M completion tokens", ge=0.0)
    timeout: float = opt(120.0, "seconds per request", gt=0.0)
    max_retries: int = opt(6, "retries of a request on 429, 5xx or a lost connection", ge=0)
    dry_run: bool = opt(False, "print the first prompts and exit")


@dataclass
class SynthStats:
    requested: int = 0
    already: int = 0
    written: int = 0
    attempts: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # per reason, over all attempts
    gave_up: dict[str, int] = field(default_factory=dict)  # prompts without a story, by last reason
    errors: dict[str, str] = field(default_factory=dict)  # the first message of each refusal (HTTP 4xx)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    http_retries: int = 0
    seconds: float = 0.0

    def cost(self, price_in: float, price_out: float) -> float:
        return (self.prompt_tokens * price_in + self.completion_tokens * price_out) / 1e6

    def row(self, cfg: SynthConfig) -> dict:
        return {**asdict(self), "cost": round(self.cost(cfg.price_in, cfg.price_out), 6),
                "price_in_per_1m": cfg.price_in, "price_out_per_1m": cfg.price_out}


def summary_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".summary.json")


def _request_seed(seed: int, index: int, attempt: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}:{attempt}".encode()).digest()[:4], "big")


def synthesize(client: OpenAIClient, cfg: SynthConfig,
               on_record: Callable[[dict], None] | None = None) -> SynthStats:
    """Generate stories for prompt indices 0..n-1 not yet in `cfg.out`; returns this run's counts.

    The output (and its manifest) appears with the first kept story. The summary beside it holds this run and
    the totals of all runs on the file.
    """
    if cfg.lang not in LANGUAGE_NAMES or cfg.lang not in LANG_SCRIPT:
        raise UserError(f"unknown language {cfg.lang!r}; expected one of {', '.join(LANGUAGE_NAMES)}")
    if not 0.0 <= cfg.min_lang_share <= 1.0:
        raise UserError(f"--min-lang-share must lie in [0, 1], got {cfg.min_lang_share}")
    out = Path(cfg.out)
    lists = word_lists(cfg.lang)
    journal: Journal | None = Journal(out) if out.exists() else None
    hashes: set[str] = set()
    if journal is not None:
        with open(out, encoding="utf-8") as f:
            hashes = {json.loads(line).get("text_sha1") for line in f if line.strip()}
    todo = [i for i in range(cfg.n) if journal is None or synth_prompt(i, cfg.lang, cfg.seed, lists).id
            not in journal]
    stats = SynthStats(requested=cfg.n, already=cfg.n - len(todo))
    retries0 = client.retries

    def ask(p: SynthPrompt, attempt: int) -> Completion:
        params: dict = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        if cfg.top_p is not None:
            params["top_p"] = cfg.top_p
        if cfg.send_seed:
            params["seed"] = _request_seed(cfg.seed, p.index, attempt)
        return client.chat(cfg.model, [{"role": "user", "content": p.prompt}], **params)

    bar = progress(total=len(todo), desc=f"synth {cfg.lang}", unit="story")
    t0 = time.perf_counter()
    pending: dict[Future, tuple[SynthPrompt, int]] = {}
    queue = iter(todo)
    pool = ThreadPoolExecutor(max_workers=max(1, cfg.concurrency))

    def submit(p: SynthPrompt, attempt: int) -> None:
        pending[pool.submit(ask, p, attempt)] = (p, attempt)

    def refill() -> None:
        while len(pending) < 2 * max(1, cfg.concurrency):
            index = next(queue, None)
            if index is None:
                return
            submit(synth_prompt(index, cfg.lang, cfg.seed, lists), 1)

    def count(d: dict[str, int], reason: str) -> None:
        d[reason] = d.get(reason, 0) + 1

    try:
        refill()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                p, attempt = pending.pop(fut)
                stats.attempts += 1
                try:
                    c = fut.result()
                except RequestError as e:
                    stats.errors.setdefault(f"http_{e.status}", str(e))
                    count(stats.rejected, f"http_{e.status}")
                    count(stats.gave_up, f"http_{e.status}")
                    bar.update(1)
                    continue
                stats.prompt_tokens += c.prompt_tokens
                stats.completion_tokens += c.completion_tokens
                text = c.text.strip()
                reason = check_story(text, cfg.lang, cfg.min_lang_share, c.finish_reason, cfg.keep_truncated)
                digest = content_hash(text)
                if reason is None and digest in hashes:
                    reason = "duplicate"
                if reason is not None:
                    count(stats.rejected, reason)
                    if attempt < cfg.max_attempts:
                        submit(p, attempt + 1)
                    else:
                        count(stats.gave_up, reason)
                        bar.update(1)
                    continue
                record = {"id": p.id, "index": p.index, "lang": p.lang, "text": text, "prompt": p.prompt,
                          "words": p.words, "features": p.features, "model": cfg.model, "attempts": attempt,
                          "finish_reason": c.finish_reason, "text_sha1": digest,
                          "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}}
                if journal is None:
                    write_json_atomic(out.with_name(out.name + ".manifest.json"), manifest("synth", asdict(cfg)))
                    journal = Journal(out)
                if journal.append(record):
                    hashes.add(digest)
                    stats.written += 1
                    if on_record:
                        on_record(record)
                bar.update(1)
                bar.set_postfix(rejected=sum(stats.rejected.values()),
                                cost=f"{stats.cost(cfg.price_in, cfg.price_out):.4f}", refresh=False)
            refill()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        stats.http_retries = client.retries - retries0
        stats.seconds = round(time.perf_counter() - t0, 3)
        if journal is not None:
            journal.close()
            _save_summary(cfg, stats)
    return stats


def _save_summary(cfg: SynthConfig, stats: SynthStats) -> None:
    path = summary_path(cfg.out)
    runs = json.loads(path.read_text()).get("runs", []) if path.exists() else []
    runs.append(stats.row(cfg))
    keys = ("written", "attempts", "prompt_tokens", "completion_tokens", "http_retries", "seconds")
    total = {k: sum(r.get(k, 0) for r in runs) for k in keys}
    total["cost"] = round(sum(r.get("cost", 0.0) for r in runs), 6)
    total["stories_in_file"] = stats.already + stats.written
    write_json_atomic(path, {"model": cfg.model, "lang": cfg.lang, "n": cfg.n, "total": total, "runs": runs})

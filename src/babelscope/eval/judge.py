"""The LLM judge of the TinyStories evaluation: story beginnings cut mid-sentence, two completions per prompt at
temperature 1, and a judge model scoring grammar, creativity and consistency from 0 to 10.

The judge sees the beginning and the completion joined by *** (the cut, as in the study's Figure A.2) and is told
to look hardest at how the cut sentence is finished. Its answer is parsed leniently (JSON, or free text such as
"Grammar: 7/10" or "**Creativity** - 8"); an answer without all three scores is asked for again, and if it still
fails the item is recorded as failed with the raw answers, counted and reported, never dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from babelscope.errors import UserError

CRITERIA = ("grammar", "creativity", "consistency")
LANGUAGE_NAMES = {"ar": "Arabic", "en": "English"}
CUT = "***"

JUDGE_TEMPLATE = """You will grade a short story for young children, written in {language}.
A student was given the beginning of the story, which stops in the middle of a sentence, and wrote the rest.
The place where the beginning stops is marked with {cut}: everything after {cut} was written by the student.

Grade only the student's part. Look most closely at the sentence cut by {cut}: does the student finish it so that
it is grammatical and makes sense?

Give three whole-number scores from 0 (very poor) to 10 (excellent):
- grammar: is the student's text correct {language}, with good spelling and sentences?
- creativity: is it imaginative and interesting for a child?
- consistency: does it follow the beginning, keeping its characters, events and details?

The story:
{story}

Answer with a single JSON object and nothing else, like {{"grammar": 6, "creativity": 7, "consistency": 5}}."""

REMINDER = ("Please answer again with only a JSON object holding three whole numbers from 0 to 10, like "
            '{"grammar": 6, "creativity": 7, "consistency": 5}.')


def judge_message(prompt: str, completion: str, lang: str) -> str:
    """The judge's instructions with the story, the cut marked by ***."""
    story = f"{prompt.rstrip()} {CUT} {completion.strip()}"
    return JUDGE_TEMPLATE.format(language=LANGUAGE_NAMES.get(lang, lang), cut=CUT, story=story)


# ---- parsing the judge's answer --------------------------------------------------------------------------------

ALIASES = {
    "grammar": ("grammar", "grammatical correctness", "grammaticality", "القواعد", "النحو"),
    "creativity": ("creativity", "creative", "originality", "الإبداع", "الابداع"),
    "consistency": ("consistency", "consistent", "coherence with the beginning", "الاتساق", "الترابط", "الانسجام"),
}
_NUM = r"(-?\d+(?:\.\d+)?)"  # a sign is read, so that -3 is out of range rather than 3
# Not a score: a number that starts a range ("0-10") or runs into a word or a decimal point.
_AFTER_NUM = r"(?!\w)(?!\.\d)(?!\s*(?:-|–|to)\s*10\b)"
_DENOMINATOR = r"(?:[*_\s]*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?"
# A label, then only separators, markdown and a few glue words, then the score (and maybe "/10" or "out of 10").
_GLUE = r"(?:[\s*_:=|>\"'{}()\[\]\-–—.]|score|rating|grade|is|of|\(\s*0\s*(?:-|–|to)\s*10\s*\))*?"


class ParseError(ValueError):
    """The judge's answer lacks a usable score for some criteria."""

    def __init__(self, missing: list[str], found: dict[str, float]):
        super().__init__(f"no usable score for {', '.join(missing)}")
        self.missing, self.found = missing, found


def _value(number: str, denominator: str | None) -> float | None:
    """A score on the 0-10 scale from "7", "8.5", "85"/"100" or "4"/"5"; None when out of range."""
    v = float(number)
    if denominator is not None:
        d = float(denominator)
        if d <= 0 or v > d:
            return None
        v = v / d * 10
    return v if 0 <= v <= 10 else None


def _from_json(text: str) -> dict[str, float]:
    """Scores from the JSON objects in `text` (code fences and prose around them allowed)."""
    found: dict[str, float] = {}
    depth, start = 0, None
    for i, ch in enumerate(text):
        if ch == "{":
            depth, start = depth + 1, i if depth == 0 else start
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                try:
                    obj = json.loads(text[start:i + 1])
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    found.update(_from_mapping(obj))
    return found


def criterion_of(key: str) -> str | None:
    """The criterion a JSON key names, or None. The key must equal an alias after normalising case, spaces,
    '_' and '-', optionally followed by score/rating/grade ("Creativity", "creativity_score", "Grammar Rating");
    "grammar_comment", "grammar_errors" or "consistency_notes" name no criterion."""
    k = " ".join(re.sub(r"[_\-]+", " ", str(key)).lower().split())
    k = re.sub(r"(?: (?:score|rating|grade))$", "", k)
    return next((c for c, names in ALIASES.items() if k in names), None)


def _from_mapping(obj: dict) -> dict[str, float]:
    found: dict[str, float] = {}
    for key, value in obj.items():
        crit = criterion_of(key)
        if crit is None:
            if isinstance(value, dict):  # {"scores": {...}}
                found.update(_from_mapping(value))
            continue
        if isinstance(value, dict):
            value = next((v for kk, v in value.items() if str(kk).lower() in ("score", "rating", "value")), None)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            v = _value(str(value), None)
        else:
            m = re.match(rf"\s*{_NUM}{_AFTER_NUM}{_DENOMINATOR}", str(value), re.IGNORECASE)
            v = _value(m[1], m[2]) if m else None
        if v is not None:
            found[crit] = v
    return found


def _from_text(text: str) -> dict[str, float]:
    """Scores written as prose or markdown; the last mention of a criterion wins (the final verdict)."""
    found: dict[str, float] = {}
    for crit, names in ALIASES.items():
        label = "|".join(re.escape(n) for n in names)
        pattern = rf"(?<!\w)(?:{label})(?:[\s_-]*(?:score|rating|grade))?(?![\w-]){_GLUE}{_NUM}{_AFTER_NUM}{_DENOMINATOR}"
        for m in re.finditer(pattern, text, re.IGNORECASE):
            v = _value(m[1], m[2])
            if v is not None:
                found[crit] = v
            elif crit in found:
                del found[crit]  # a later, unusable score overrides an earlier one
    return found


def parse_scores(text: str) -> dict[str, float]:
    """{grammar, creativity, consistency} on 0-10 from a judge's answer, or ParseError naming what is missing.

    JSON objects are read first; criteria they lack are looked for in the prose. A score out of range (11, or
    12/10) counts as missing; "85/100" and "4/5" are rescaled to 0-10.
    """
    found = _from_json(text)
    for crit, v in _from_text(text).items():
        found.setdefault(crit, v)
    missing = [c for c in CRITERIA if c not in found]
    if missing:
        raise ParseError(missing, found)
    return {c: found[c] for c in CRITERIA}


# ---- prompts ---------------------------------------------------------------------------------------------------

def bundled_prompts(name: str = "stories.jsonl") -> Path:
    """A prompt file shipped with babelscope: stories.jsonl (44 English and 44 Arabic beginnings cut
    mid-sentence, for the judge) or openers.jsonl (story openers without names, for the marks)."""
    return Path(str(resources.files("babelscope.eval") / "prompts" / name))


def load_prompts(path: str | Path | None = None, lang: str | None = None, limit: int | None = None) -> list[dict]:
    """Prompt records {id, lang, prompt}, filtered by language and cut to `limit`."""
    from babelscope.corpus import iter_corpus

    path = Path(path) if path else bundled_prompts()
    records = []
    for line, r in enumerate(iter_corpus([path], "prompt"), 1):
        if "id" not in r:
            raise UserError("prompt record has no 'id'", path=path, line=line)
        records.append({"id": str(r["id"]), "lang": r.get("lang", "en"), "prompt": r["text"]})
    if lang:
        records = [r for r in records if r["lang"] == lang]
        if not records:
            raise UserError(f"no prompts with lang {lang!r}", path=path)
    if len({r["id"] for r in records}) != len(records):
        raise UserError("prompt ids are not unique", path=path)
    return records[:limit] if limit else records


def model_labels(model_dirs: Iterable[str | Path]) -> list[str]:
    """The name each model gets in tables (RUN for RUN/final); two models with one name are an error."""
    from babelscope.serve.app import served_name

    labels = [served_name(m) for m in model_dirs]
    if len(set(labels)) != len(labels):
        raise UserError(f"two models share a name ({', '.join(labels)}); give runs distinct directory names")
    return labels


# ---- completions and judgements --------------------------------------------------------------------------------

def complete_prompts(model_dir: str | Path, label: str, prompts: list[dict], journal, *, n: int = 2,
                     temperature: float = 1.0, max_new_tokens: int = 200, seed: int = 0, device: str = "auto",
                     chunk: int = 8) -> None:
    """Append `n` completions of every prompt not yet in `journal` (keyed model/prompt/sample), chunk by chunk.

    Chunks and their seeds follow the prompt list, not what is left to do, so a resumed run writes exactly the
    completions an uninterrupted one would have."""
    from babelscope.generate import generate
    from babelscope.models import load_model
    from babelscope.progress import progress

    def done(p: dict) -> bool:
        return all((label, p["id"], s) in journal for s in range(n))

    chunks = [(c, prompts[c:c + chunk]) for c in range(0, len(prompts), chunk)]
    chunks = [(c, part) for c, part in chunks if not all(map(done, part))]
    if not chunks:
        return
    model, tok = load_model(model_dir, device=device)
    with progress(total=sum(len(part) for _, part in chunks) * n, desc=f"complete {label}", unit="story") as bar:
        for c, part in chunks:
            outs = generate(model, tok, [p["prompt"] for p in part], n=n, temperature=temperature,
                            max_new_tokens=max_new_tokens, seed=seed + c)
            for p, texts in zip(part, outs, strict=True):
                for s, text in enumerate(texts):
                    journal.append({"model": label, "prompt_id": p["id"], "sample": s, "lang": p["lang"],
                                    "prompt": p["prompt"], "completion": text})
            bar.update(len(part) * n)


@dataclass
class Verdict:
    scores: dict[str, float] | None
    answers: list[str]
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def judge_one(client, judge_model: str, prompt: str, completion: str, lang: str, *, retries: int = 2,
              temperature: float = 0.0, max_tokens: int = 300) -> Verdict:
    """Ask the judge, and ask again (with a reminder of the format) while its answer cannot be parsed."""
    messages = [{"role": "user", "content": judge_message(prompt, completion, lang)}]
    answers: list[str] = []
    usage = [0, 0]
    error = None
    from babelscope.data.client import RequestError

    for _ in range(retries + 1):
        try:
            c = client.chat(judge_model, messages, temperature=temperature, max_tokens=max_tokens)
        except RequestError as e:  # the endpoint refused this request (400, 422, ...): record it, go on
            return Verdict(None, answers, f"refused: {e}", *usage)
        usage[0] += c.prompt_tokens
        usage[1] += c.completion_tokens
        answers.append(c.text)
        try:
            return Verdict(parse_scores(c.text), answers, None, *usage)
        except ParseError as e:
            error = str(e)
            messages = [*messages[:1], {"role": "assistant", "content": c.text}, {"role": "user", "content": REMINDER}]
    return Verdict(None, answers, f"unparsable after {retries + 1} answers: {error}", *usage)


def judge_all(client, judge_model: str, items: list[dict], journal, *, concurrency: int = 4, retries: int = 2,
              temperature: float = 0.0) -> None:
    """Judge every completion not yet in `journal`, `concurrency` at a time; failures are written too."""
    from babelscope.progress import progress

    todo = [it for it in items if (it["model"], it["prompt_id"], it["sample"]) not in journal]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool, \
            progress(total=len(todo), desc="judge", unit="story") as bar:
        pending: dict[Future, dict] = {}
        queue = iter(todo)
        while True:
            while len(pending) < 2 * max(1, concurrency):
                it = next(queue, None)
                if it is None:
                    break
                pending[pool.submit(judge_one, client, judge_model, it["prompt"], it["completion"], it["lang"],
                                    retries=retries, temperature=temperature)] = it
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                it = pending.pop(fut)
                try:
                    v = fut.result()
                except Exception:
                    for f in pending:
                        f.cancel()
                    raise
                journal.append({"model": it["model"], "prompt_id": it["prompt_id"], "sample": it["sample"],
                                "lang": it["lang"], "judge": judge_model, "scores": v.scores, "error": v.error,
                                "answers": v.answers, "usage": {"prompt_tokens": v.prompt_tokens,
                                                                "completion_tokens": v.completion_tokens}})
                bar.update(1)


def score_table(judgements: Iterable[dict], models: list[str] | None = None) -> list[dict]:
    """Table 3: per model the mean grammar, creativity and consistency over judged completions, with counts."""
    rows: dict[str, dict] = {}
    for j in judgements:
        r = rows.setdefault(j["model"], {"model": j["model"], "judged": 0, "failed": 0,
                                         **{c: 0.0 for c in CRITERIA}})
        if j.get("scores") is None:
            r["failed"] += 1
            continue
        r["judged"] += 1
        for c in CRITERIA:
            r[c] += j["scores"][c]
    out = []
    for name in models or sorted(rows):
        r = rows.get(name, {"model": name, "judged": 0, "failed": 0, **{c: 0.0 for c in CRITERIA}})
        n = r["judged"]
        out.append({"model": name, **{c: (r[c] / n if n else float("nan")) for c in CRITERIA},
                    "judged": n, "failed": r["failed"]})
    return out

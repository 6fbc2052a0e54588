"""storyworld: procedurally generated children's stories, parallel in English and Arabic, with planted
translation marks (English names in Arabic script, English dialogue-tag order) labelled in every record.

`generate_stories(n, langs=("en", "ar"), style="translated", seed=0)` yields one record per story and language:
{id, lang, style, text, names, name_origin, dialogue_order, quotes, features, words, spans}.
`spans` is the ground truth in characters of `text`, [start, end) each, in text order:
{"names": [[start, end, origin], ...], "quotes": [[start, end], ...] (inside the quotation marks),
"tags": [[start, end, "after" | "before"], ...] (speech verb and speaker, one per quote, in quote order)}.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from babelscope.corpus.storyworld.generator import (
    FEATURES,
    LANGS,
    MAX_WORDS,
    MIN_WORDS,
    STYLES,
    Story,
    plan_story,
    render,
    story_id,
)
from babelscope.corpus.storyworld.names import ARABIC_NAMES, ENGLISH_NAMES, Name
from babelscope.corpus.storyworld.vocab import ADJECTIVES, GREY_DAY, NOUNS, VERBS, Adjective, Noun, Verb
from babelscope.errors import UserError
from babelscope.settings import SEED, Settings, csv, opt

__all__ = [
    "ADJECTIVES", "ARABIC_NAMES", "ENGLISH_NAMES", "FEATURES", "GREY_DAY", "LANGS", "MAX_WORDS", "MIN_WORDS", "NOUNS",
    "STYLES", "VERBS", "Adjective", "Name", "Noun", "Story", "StoryworldConfig", "Verb", "check_options",
    "generate_stories",
    "generate_story", "plan_story", "render", "story_id",
]


@dataclass(kw_only=True)
class StoryworldConfig(Settings):
    """`babelscope corpus storyworld`: N generated stories, one record per language, with their planted marks."""

    stories: int = opt(help="number of stories (10k, 1M and 4e6 are accepted); each gives one record per language",
                       metavar="N", gt=0)
    out: str = opt(help="output file, .jsonl or .parquet", metavar="FILE")
    langs: list[str] = opt(help="languages, comma-separated, in the order records are written per story",
                           default_factory=lambda: ["en", "ar"], parse=csv, metavar="LIST")
    style: str = opt("translated", "how the Arabic treats names and dialogue tags: translated (English names, "
                                   "English tag order) or native", choices=STYLES)
    seed: int = opt(0, "story i depends only on (seed, i)", **SEED)
    dialogue_before_rate: float = opt(0.2, 'share of English quotes with the tag first, `Tim said, "..."`',
                                      ge=0.0, le=1.0, metavar="P")


def check_options(langs: Sequence[str], style: str, dialogue_before_rate: float = 0.2) -> list[str]:
    """Validate the run options; returns the languages as a list. Raises UserError with a one-line message."""
    langs = list(langs)
    bad = [lang for lang in langs if lang not in LANGS]
    if bad or not langs:
        raise UserError(f"unknown language {', '.join(map(repr, bad)) or '(none given)'} for storyworld; "
                        f"expected a comma-separated list of {', '.join(LANGS)}")
    if len(set(langs)) != len(langs):
        raise UserError(f"language listed twice in {','.join(langs)}")
    if style not in STYLES:
        raise UserError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
    if not 0.0 <= dialogue_before_rate <= 1.0:
        raise UserError(f"dialogue-before rate must lie in [0, 1], got {dialogue_before_rate}")
    return langs


def generate_story(index: int, langs: Sequence[str] = LANGS, style: str = "translated", seed: int | str = 0,
                   dialogue_before_rate: float = 0.2) -> list[dict]:
    """The records of story `index` (one per language, in the order of `langs`); depends only on (seed, index)."""
    story = plan_story(seed, index, dialogue_before_rate)
    return [render(story, lang, style) for lang in langs]


def generate_stories(n: int, langs: Sequence[str] = LANGS, style: str = "translated", seed: int | str = 0,
                     dialogue_before_rate: float = 0.2, start: int = 0) -> Iterator[dict]:
    """Stories start..start+n-1 of run `seed`, each as one record per language in the order of `langs`.

    `style` "translated" writes Arabic as a translation of the English would (English names in Arabic script,
    the English tag order); "native" writes Arabic names and puts every tag before its quote.
    `dialogue_before_rate` is the share of English quotes whose tag comes first (`Tim said, "..."`)."""
    langs = check_options(langs, style, dialogue_before_rate)
    if n < 0:
        raise UserError(f"number of stories must be >= 0, got {n}")
    for index in range(start, start + n):
        yield from generate_story(index, langs, style, seed, dialogue_before_rate)

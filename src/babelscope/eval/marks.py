"""Translation marks in text: where character names come from, where dialogue tags go, and distinct-n.

Pure functions over strings, checked in tests on sentences written by hand (negative cases included) and on
storyworld stories whose labels are known.

- Names: a word that is a first name of storyworld's lists, in the script of the text's language (Arabic text:
  the Arabic spelling, so English names are their transliterations; English text: the Latin spelling,
  capitalised). A name that is also a common word (ملك "king", نور "light", أمل "hope", فهد "cheetah", سام
  "poisonous", Rose, Grace: `eval.common_words.stop_names`) counts only in a name position:
    Arabic: after اسمه/اسمها/اسمي/تدعى/يدعى/يسمى/تسمى (any diacritics), beside a speech verb (قال نور,
            نور قالت), after the vocative يا;
    English: after named/called or "name is", beside a speech verb (said Rose, Rose said), or capitalised
            inside a sentence (not its first word).
  Elsewhere it is ambiguous: reported apart and counted as neither origin. Every other listed name counts
  wherever it stands. Each character counts once per text; the share of English-origin names is the mark.
- Dialogue order: for each quotation, whether its tag comes after it (`«...»، قال تيم.`, `"...," said Tim.`, the
  English order a translation carries over) or before it (`قال تيم: «...»`, `Tim said, "..."`), or neither. A
  quotation split by its tag (`"Hi," said Tim, "how are you?"`, `«مرحبا»، قال تيم، «كيف حالك؟»`) is one
  quotation with its tag after the first part.
- distinct-n: distinct word n-grams over all n-grams of a set of texts (Li et al., 2016), a diversity measure.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

from babelscope.data.sentences import is_speech_verb, strip_diacritics
from babelscope.eval.common_words import stop_names

ORIGINS = ("english", "arabic")
_LETTERS = re.compile(r"[^\W\d_]+")
# Arabic one-letter prefixes that attach to names in model output: و "and" (وتيم), ل "to/for" (لتيم). ف and ب are
# left out: they make false names of common words (فمها "her mouth" is not ف + مها).
_CLITICS = ("و", "ل")
_QUOTE_PAIRS = {"«": "»", "“": "”", '"': '"'}
_TERMINATORS = ".!?…؟\n"
# Words after which an Arabic word is a name: "his/her/my name (is)", "is called", and the vocative يا.
NAME_INTRO_AR = frozenset({"اسمه", "اسمها", "اسمي", "واسمه", "واسمها", "تدعى", "يدعى", "يسمى", "تسمى", "المدعو",
                           "المدعوة", "يا"})
NAME_INTRO_EN = frozenset({"named", "called"})


@cache
def name_lexicon(lang: str) -> dict[str, str]:
    """Spelling of every listed first name in the script of `lang` -> origin ("english" or "arabic")."""
    from babelscope.corpus.storyworld import ARABIC_NAMES, ENGLISH_NAMES

    script = "arabic" if lang == "ar" else "latin"
    lexicon: dict[str, str] = {}
    for origin, names in (("english", ENGLISH_NAMES), ("arabic", ARABIC_NAMES)):
        for name in names:
            lexicon.setdefault(getattr(name, script), origin)
    return lexicon


@dataclass
class NameMentions:
    """The names of one text -> origin (counted), and the stop-listed words seen outside a name position ->
    the origin they would have as names (not counted)."""

    names: dict[str, str] = field(default_factory=dict)
    ambiguous: dict[str, str] = field(default_factory=dict)


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) for every word of `text`."""
    return [(m.group(), m.start(), m.end()) for m in _LETTERS.finditer(text)]


def _name_position(words: list[tuple[str, int, int]], i: int, text: str, lang: str) -> bool:
    """Whether word i stands where a name stands (see the module docstring)."""
    def gap(a: int, b: int) -> str:  # the text between words a and b (a < b)
        return text[words[a][2]:words[b][1]]

    prev_ok = i > 0 and gap(i - 1, i).strip() == ""
    next_ok = i + 1 < len(words) and gap(i, i + 1).strip() == ""
    prev = words[i - 1][0] if i > 0 else ""
    nxt = words[i + 1][0] if i + 1 < len(words) else ""
    if lang == "ar":
        return ((prev_ok and (prev in NAME_INTRO_AR or is_speech_verb(prev)))
                or (next_ok and is_speech_verb(nxt)))
    low = prev.lower()
    if prev_ok and (low in NAME_INTRO_EN or is_speech_verb(low)
                    or (low == "is" and i > 1 and words[i - 2][0].lower() == "name")):
        return True
    if next_ok and is_speech_verb(nxt.lower()):
        return True
    if i == 0:
        return False
    between = gap(i - 1, i)
    return not any(c in _TERMINATORS or c in "\"«“”»:" for c in between)  # capitalised inside a sentence


def find_name_mentions(text: str, lang: str, *, clitics: bool = True) -> NameMentions:
    """The listed names in `text` (see the module docstring), in order of first counted appearance, and the ambiguous
    stop-listed words. Latin-script names must be capitalised; in Arabic text a word that is not a name itself
    but becomes one without a leading و or ل (وتيم "and Tim", لسارة "to Sara") counts when `clitics` is on."""
    lexicon = name_lexicon(lang)
    stop = stop_names(lang)
    out = NameMentions()
    plain = strip_diacritics(text) if lang == "ar" else text
    words = _tokens(plain)
    for i, (word, _, _) in enumerate(words):
        if lang != "ar" and not word[:1].isupper():
            continue
        name = word if word in lexicon else None
        if name is None and clitics and lang == "ar" and len(word) > 3 and word[0] in _CLITICS:
            name = word[1:] if word[1:] in lexicon else None
        if name is None or name in out.names:
            continue
        if (name.lower() if lang != "ar" else name) in stop and not _name_position(words, i, plain, lang):
            out.ambiguous.setdefault(name, lexicon[name])
            continue
        out.names[name] = lexicon[name]
        out.ambiguous.pop(name, None)
    return out


def find_names(text: str, lang: str, *, clitics: bool = True) -> dict[str, str]:
    """The distinct names counted in `text` -> origin, in order of first appearance (`find_name_mentions`)."""
    return find_name_mentions(text, lang, clitics=clitics).names


@dataclass(frozen=True)
class Quotation:
    start: int  # index of the opening mark
    end: int  # index just past the closing mark
    text: str  # inside the marks


def find_quotes(text: str) -> list[Quotation]:
    """Quotations in «», “” or straight double quotes; an unclosed quote at a paragraph end is dropped."""
    out: list[Quotation] = []
    i = 0
    while i < len(text):
        close = _QUOTE_PAIRS.get(text[i])
        if close is None:
            i += 1
            continue
        j = text.find(close, i + 1)
        para = text.find("\n\n", i + 1)
        if j < 0 or (0 <= para < j):
            i += 1
            continue
        out.append(Quotation(i, j + 1, text[i + 1:j]))
        i = j + 1
    return out


def _words(text: str) -> list[str]:
    return _LETTERS.findall(text)


def _tag_after(between: str, max_words: int) -> int | None:
    """If `between` (the text after a closing quote, up to the next quote) opens with a dialogue tag, the length of
    the tag; else None. A tag is a clause of at most `max_words` words holding a speech verb."""
    m = re.match(r"[ \t]*[,،;]?[ \t]*", between)
    rest = between[m.end():]
    stop = next((k for k, ch in enumerate(rest) if ch in _TERMINATORS), len(rest))
    clause = rest[:stop]
    words = _words(clause)
    if not words or len(words) > max_words or not any(is_speech_verb(w) for w in words):
        return None
    if stop == len(rest) and clause.rstrip().endswith((":", ",", "،")):
        return None  # `قالت أمه: «...»`: the tag of the next quote, not of this one
    return m.end() + stop


def _tag_before(clause: str, max_words: int) -> bool:
    """Whether `clause` (from the last sentence end up to an opening quote) is a tag introducing the quote: a speech
    verb among its last `max_words` words (`Tim said,`, `قالت أمه:`, `Then she smiled and said,`)."""
    return any(is_speech_verb(w) for w in _words(clause)[-max_words:])


def dialogue_orders(text: str, *, max_words: int = 8) -> list[str]:
    """For each quotation in `text`: "after" (tag after it), "before" (tag before it) or "none".

    A tag before a quote is the clause since the last sentence end (or the previous quote or tag) that holds a
    speech verb; a tag after a quote is a short clause opening with a speech verb or a name and one, before the
    next sentence end. A clause between two quotes that ends in ':' belongs to the second; one that ends in a
    comma splits a single quotation (`"Hi," said Tim, "how are you?"`), which counts once, as "after".
    """
    quotes = find_quotes(text)
    orders: list[str] = []
    floor = 0  # the text before this position is taken (a previous quote or its tag)
    k = 0
    while k < len(quotes):
        q = quotes[k]
        head = text[floor:q.start]
        cut = max((head.rfind(t) for t in _TERMINATORS), default=-1)
        if _tag_before(head[cut + 1:], max_words):
            orders.append("before")
            floor, k = q.end, k + 1
            continue
        limit = quotes[k + 1].start if k + 1 < len(quotes) else len(text)
        if k + 1 < len(quotes) and _splits(text[q.end:limit], max_words):
            orders.append("after")  # one quotation, interrupted by its tag
            floor, k = quotes[k + 1].end, k + 2
            continue
        tag = _tag_after(text[q.end:limit], max_words)
        if tag is not None:
            orders.append("after")
            floor = q.end + tag
        else:
            orders.append("none")
            floor = q.end
        k += 1
    return orders


def _splits(between: str, max_words: int) -> bool:
    """Whether `between` (the whole text between two quotes) is a tag that interrupts one quotation: a short
    clause with a speech verb, no sentence end, ending with a comma (`, said Tim, ` / `، قال تيم، `). A clause
    ending with ':' introduces the second quote instead."""
    clause = re.sub(r"^[ \t]*[,،]?", "", between).rstrip()
    if not clause.endswith((",", "،")) or any(t in clause for t in _TERMINATORS):
        return False
    words = _words(clause)
    return 0 < len(words) <= max_words and any(is_speech_verb(w) for w in words)


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct word n-grams / all word n-grams over `texts` (lower-cased words); 0.0 when there are none."""
    grams: Counter = Counter()
    for text in texts:
        words = [w.lower() for w in _words(text)]
        grams.update(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def mark_counts(texts: Iterable[str], lang: str) -> dict[str, float | int | str]:
    """The marks of a set of texts: name counts and English-origin share, ambiguous words (stop-listed names
    outside a name position, counted as neither origin) and the most frequent of them, tag order counts and
    after-share, distinct-1/2/3. Shares are NaN when nothing was counted."""
    texts = list(texts)
    names: Counter = Counter()
    ambiguous: Counter = Counter()
    tags: Counter = Counter()
    for text in texts:
        found = find_name_mentions(text, lang)
        names.update(found.names.values())
        ambiguous.update(list(found.ambiguous))
        tags.update(dialogue_orders(text))
    n_names = names["english"] + names["arabic"]
    n_tags = tags["after"] + tags["before"]
    nan = float("nan")
    return {
        "texts": len(texts),
        "names_english": names["english"],
        "names_arabic": names["arabic"],
        "english_name_share": names["english"] / n_names if n_names else nan,
        "names_ambiguous": sum(ambiguous.values()),
        "ambiguous_top": " ".join(f"{w}:{n}" for w, n in ambiguous.most_common(5)),
        "tags_after": tags["after"],
        "tags_before": tags["before"],
        "quotes_untagged": tags["none"],
        "tag_after_share": tags["after"] / n_tags if n_tags else nan,
        **{f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
    }

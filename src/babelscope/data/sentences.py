"""Sentence splitting for translation: a quoted passage stays in one unit with its dialogue tag.

NLLB translates one sentence well and truncates long inputs, so stories are cut into sentences; but a quote cut
from its tag ("Hello!" | said Tim.) comes back as two unrelated fragments, and the tag order (a translation mark
this project studies) is lost. The splitter therefore never cuts inside a quote, joins a tag that follows a
closing quote, and keeps the exact whitespace between units so that `join_units` rebuilds the layout.
"""

from __future__ import annotations

import re

from babelscope.corpus.storyworld.templates import SPEECH as _STORYWORLD_SPEECH

# Opening quote -> closing quote. Straight double quotes toggle; single quotes are never quote marks here
# (English uses ' and ’ as apostrophes: don't, Tim’s).
_PAIRS = {"«": "»", "“": "”", "„": "“", "‹": "›"}
_CLOSERS = set(_PAIRS.values())
_TERMINATORS = ".!?…؟"
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "mt", "jr", "sr", "prof", "vs", "etc", "e.g", "i.e"}
# Speech verbs that make a short clause after a closing quote a dialogue tag ("Hi!" Tim said. / «...» قال تيم.):
# storyworld's and the common ones in model output, English lower case and Arabic past tense.
SPEECH_VERBS = frozenset(re.findall(r"\S+", """
said says say asked asks ask shouted shouts cried cries replied replies whispered whispers yelled yells
exclaimed answered answers called calls screamed screams added adds told tells laughed giggled sang explained
agreed begged suggested continued muttered mumbled sighed squeaked barked growled chirped thought wondered
promised warned sobbed gasped announced
قال قالت قالوا سأل سألت سألوا أجاب أجابت ردّ رد ردت ردّت صاح صاحت صرخ صرخت همس همست هتف هتفت نادى نادت
أضاف أضافت تساءل تساءلت ضحك ضحكت صاحوا
""")) | frozenset(w for forms in _STORYWORLD_SPEECH.values() for verbs in forms for w in verbs)
_CONJUNCTIONS = ("و", "ف")  # Arabic: وقال, فقالت


_DIACRITICS = re.compile("[\u064B-\u0652\u0670\u0640]")  # Arabic short vowels, shadda, sukun, dagger alif, tatweel


def strip_diacritics(text: str) -> str:
    """`text` without Arabic diacritics and tatweel (قالَ -> قال, يُدعى -> يدعى); other characters unchanged."""
    return _DIACRITICS.sub("", text)


def is_speech_verb(word: str) -> bool:
    """Whether `word` (any case; Arabic with or without diacritics and a leading و/ف) is a speech verb of a
    dialogue tag."""
    w = strip_diacritics(word.lower())
    return w in SPEECH_VERBS or (len(w) > 3 and w[0] in _CONJUNCTIONS and w[1:] in SPEECH_VERBS)


_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


def _is_abbreviation(text: str, end: int) -> bool:
    """Whether the '.' at text[end] closes an abbreviation such as Mr. or Dr."""
    start = end
    while start > 0 and (text[start - 1].isalpha() or text[start - 1] == "."):
        start -= 1
    word = text[start:end].lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha() and word.isupper())


def _tag_after_quote(rest: str, max_words: int = 4) -> bool:
    """Whether `rest` (the text after a closing quote) begins with a dialogue tag that belongs to the quote."""
    rest = rest.lstrip()
    if not rest:
        return False
    if rest[0] in ",،;:" or (rest[0].isalpha() and rest[0].islower()):
        return True
    clause = re.split(r"[.!?…؟\n\"«“]", rest, maxsplit=1)[0]
    words = [w.lower() for w in _WORD.findall(clause)]
    return 0 < len(words) <= max_words and any(is_speech_verb(w) for w in words)


def split_units(text: str, *, max_chars: int = 600) -> list[tuple[str, str]]:
    """Cut `text` into translation units: [(unit, whitespace that follows it)].

    A unit is a sentence; quotes are never cut, and a tag after a closing quote stays with it. Paragraph breaks
    reset an unclosed quote. A unit longer than `max_chars` (an unbalanced or very long quote) is cut again at
    sentence ends, ignoring quotes, so that no unit overflows the translation model.
    """
    units: list[tuple[str, str]] = []
    start, i, n = 0, 0, len(text)
    closer: str | None = None  # the quote mark we are inside, if any

    def emit(end: int) -> int:
        """Close the unit text[start:end]; return where the next unit starts (after the whitespace)."""
        j = end
        while j < n and text[j].isspace():
            j += 1
        unit = text[start:end]
        if unit.strip():
            units.append((unit, text[end:j]))
        elif units:  # whitespace only: attach it to the previous unit's separator
            units[-1] = (units[-1][0], units[-1][1] + text[start:j])
        return j

    start = i = len(text) - len(text.lstrip())  # leading whitespace belongs to no unit
    while i < n:
        ch = text[i]
        if ch == "\n" and closer is not None and i + 1 < n and text[i + 1] == "\n":
            closer = None  # an unclosed quote ends with its paragraph
        if closer is not None:
            if ch == closer:
                closer = None
                after = text[i + 1:]
                inner_end = text[i - 1] if i > 0 else ""
                ends = inner_end in _TERMINATORS and (after[:1].isspace() or not after)
                if ends and not _tag_after_quote(after):
                    start = emit(i + 1)
                    i = start
                    continue
            i += 1
            continue
        if ch == '"':
            closer = '"'
        elif ch in _PAIRS:
            closer = _PAIRS[ch]
        elif ch == "\n":
            start = emit(i)
            i = start
            continue
        elif ch in _TERMINATORS:
            j = i
            while j + 1 < n and text[j + 1] in _TERMINATORS:
                j += 1
            nxt = text[j + 1:j + 2]
            if (nxt == "" or nxt.isspace()) and not (ch == "." and j == i and _is_abbreviation(text, i)):
                start = emit(j + 1)
                i = start
                continue
            i = j
        i += 1
    if start < n:
        emit(n)
    out: list[tuple[str, str]] = []
    for unit, sep in units:
        out.extend(_cut_long(unit, sep, max_chars))
    return out


def _cut_long(unit: str, sep: str, max_chars: int) -> list[tuple[str, str]]:
    if len(unit) <= max_chars:
        return [(unit, sep)]
    pieces = re.split(r"(?<=[.!?…؟])(\s+)", unit)
    out: list[tuple[str, str]] = []
    buf = ""
    for k in range(0, len(pieces), 2):
        part, gap = pieces[k], pieces[k + 1] if k + 1 < len(pieces) else ""
        if buf and len(buf) + len(part) > max_chars:
            out.append((buf.rstrip(), buf[len(buf.rstrip()):]))
            buf = ""
        buf += part + gap
    if buf:
        out.append((buf.rstrip(), buf[len(buf.rstrip()):]))
    out[-1] = (out[-1][0], out[-1][1] + sep)
    return out


def split_sentences(text: str, *, max_chars: int = 600) -> list[str]:
    """The translation units of `text` without their separators."""
    return [u for u, _ in split_units(text, max_chars=max_chars)]


def join_units(units: list[tuple[str, str]], translations: list[str]) -> str:
    """Rebuild a document from translated units with the original whitespace (paragraphs) between them; leading
    and trailing whitespace is dropped."""
    return "".join(t.strip() + sep for (_, sep), t in zip(units, translations, strict=True)).rstrip()

"""Token sets for TSEA, built from a tokenizer's vocabulary, with their coverage reported.

How a word (a name, a line of a user file) maps to token ids: the word is encoded twice, as written and with
a leading space (byte-level BPE spells the space into the token, `Ġ`; SentencePiece's `▁` behaves alike), and
every spelling that is a *single* token contributes that token. A word that needs several tokens in both
spellings is dropped (`multi="drop"`, the default: its first piece is usually a generic fragment such as
`Ġ` + `Ka`, not a name) or represented by its first non-blank token (`multi="first"`). Coverage counts the
words that contributed at least one token. A user-file line that is literally a vocabulary entry (`ĠLily`)
is taken as that token. Capitalisation is used as written: names keep their capital in Latin script, and
Arabic has none. Arabic clitics written onto a name (و, ب, ل) are not split off.

Built-in sets:
    english_names         storyworld's English first names in Latin script and in Arabic-script transliteration
                          (translated Arabic stories carry English names in Arabic script)
    english_names_latin   ... Latin script only;   english_names_arabic   ... Arabic script only
    arabic_names          storyworld's Arabic first names in Arabic script;  arabic_names_latin  their Latin form
    name_then_punct       name tokens (English or Arabic names, both scripts) whose next token somewhere in a
                          given corpus is punctuation (at least `min_count` times): Study A's "name ending a
                          sentence", e.g. the `«...»، قال تيم.` dialogue tag. Needs a corpus.
    FILE.txt              one word or token per line (blank lines and lines starting with # skipped)
    re:PATTERN            tokens whose decoded text matches the Python regex (re.search; the text keeps its
                          leading space, so `re:^ [A-Z]` means "a capitalised word after a space")
Special tokens (BOS, EOS, PAD, ...) never belong to a set.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from babelscope.errors import UserError
from babelscope.tokenizer import encode_batch

BUILTIN = ("english_names", "english_names_latin", "english_names_arabic", "arabic_names", "arabic_names_latin",
           "name_then_punct")
MULTI_RULES = ("drop", "first")


@dataclass
class TokenSet:
    """A named set of token ids and how it was obtained from its source words."""

    name: str
    ids: list[int]
    rule: str
    n_items: int = 0  # source words / lines / vocabulary tokens considered
    n_covered: int = 0  # of those, how many contributed at least one token
    examples: dict[str, list[int]] = field(default_factory=dict)  # a few source words and their ids

    def coverage(self) -> dict:
        """A JSON-able summary: size, coverage and the mapping rule."""
        return {"name": self.name, "n_tokens": len(self.ids), "n_items": self.n_items, "n_covered": self.n_covered,
                "coverage": self.n_covered / self.n_items if self.n_items else None, "rule": self.rule,
                "examples": dict(list(self.examples.items())[:10])}


def special_ids(tokenizer) -> set[int]:
    """Ids of the tokenizer's special tokens (BOS, EOS, PAD, ...), which no set may contain."""
    return set(getattr(tokenizer, "all_special_ids", []) or [])


def word_ids(tokenizer, word: str, multi: str = "drop") -> list[int]:
    """The token ids a word contributes under the rule above (empty if it is dropped)."""
    if multi not in MULTI_RULES:
        raise UserError(f"unknown multi-token rule '{multi}'; expected one of {', '.join(MULTI_RULES)}")
    out: list[int] = []
    for spelling in (word, " " + word):
        ids = tokenizer.encode(spelling, add_special_tokens=False)
        if len(ids) == 1:
            out.append(ids[0])
        elif len(ids) > 1 and multi == "first":
            first = next((i for i in ids if tokenizer.decode([i]).strip()), None)
            if first is not None:
                out.append(first)
    return sorted(set(out) - special_ids(tokenizer))


def words_set(name: str, tokenizer, words: Iterable[str], *, multi: str = "drop",
              raw_entries: bool = False) -> TokenSet:
    """A token set from words (names, a word list), with coverage; `raw_entries` also accepts a word that is
    literally a vocabulary entry (`ĠLily`)."""
    words = list(dict.fromkeys(w.strip() for w in words if w and w.strip()))
    ids: set[int] = set()
    covered = 0
    examples: dict[str, list[int]] = {}
    vocab = tokenizer.get_vocab() if raw_entries else {}
    special = special_ids(tokenizer)
    for w in words:
        got = word_ids(tokenizer, w, multi)
        if w in vocab and vocab[w] not in special and vocab[w] not in got:
            got = sorted([*got, vocab[w]])
        if got:
            covered += 1
            ids.update(got)
            if len(examples) < 10:
                examples[w] = got
    rule = (f"single-token spellings of each word as written and with a leading space; multi-token words "
            f"{'dropped' if multi == 'drop' else 'represented by their first non-blank token'}")
    return TokenSet(name, sorted(ids), rule, len(words), covered, examples)


def decoded_vocab(tokenizer) -> list[str]:
    """Each token id's decoded text (byte-level pieces of a split character decode to U+FFFD)."""
    return tokenizer.batch_decode([[i] for i in range(len(tokenizer))])


def regex_set(name: str, tokenizer, pattern: str) -> TokenSet:
    """Tokens whose decoded text matches `pattern` (re.search)."""
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise UserError(f"bad token-set regex {pattern!r}: {e}") from None
    texts = decoded_vocab(tokenizer)
    special = special_ids(tokenizer)
    ids = [i for i, t in enumerate(texts) if i not in special and rx.search(t)]
    return TokenSet(name, ids, f"tokens whose decoded text matches re.search({pattern!r})", len(texts), len(ids),
                    {texts[i]: [i] for i in ids[:10]})


def file_set(path: str | Path, tokenizer, *, multi: str = "drop") -> TokenSet:
    """A token set from a text file, one word or vocabulary token per line."""
    from babelscope.inputs import read_text

    path = Path(path)
    lines = [ln.strip() for ln in read_text(path, "token-set file").splitlines()]
    words = [ln for ln in lines if ln and not ln.startswith("#")]
    if not words:
        raise UserError("token-set file has no entries", path=path)
    return words_set(path.stem, tokenizer, words, multi=multi, raw_entries=True)


def _names(which: str) -> list[str]:
    try:
        from babelscope.corpus.storyworld import ARABIC_NAMES, ENGLISH_NAMES
    except ImportError as e:  # pragma: no cover - storyworld ships with babelscope
        raise UserError(f"built-in name sets need babelscope.corpus.storyworld ({e})") from None
    pool = ENGLISH_NAMES if which.startswith("english") else ARABIC_NAMES
    scripts = {"english_names": ("latin", "arabic"), "english_names_latin": ("latin",),
               "english_names_arabic": ("arabic",), "arabic_names": ("arabic",),
               "arabic_names_latin": ("latin",)}[which]
    return [getattr(n, s) for n in pool for s in scripts if getattr(n, s, None)]


def is_punctuation(text: str) -> bool:
    """Non-blank text made only of Unicode punctuation (., ، ؟ « » ...) and spaces."""
    text = text.strip()
    return bool(text) and all(unicodedata.category(c).startswith("P") for c in text)


def name_then_punct(tokenizer, texts: Iterable[str], name_ids: Sequence[int], *, min_count: int = 1,
                    n_names: int = 0) -> TokenSet:
    """Name tokens followed by a punctuation token at least `min_count` times in `texts`."""
    names = set(name_ids)
    texts_dec = decoded_vocab(tokenizer)
    punct = {i for i, t in enumerate(texts_dec) if is_punctuation(t)}
    counts: Counter[int] = Counter()
    it = iter(texts)
    while batch := list(itertools.islice(it, 256)):
        for ids in encode_batch(tokenizer, batch):
            counts.update(a for a, b in itertools.pairwise(ids) if a in names and b in punct)
    ids = sorted(t for t, c in counts.items() if c >= min_count)
    rule = (f"name tokens (english_names + arabic_names, both scripts, single-token spellings) whose next token in "
            f"the given corpus is punctuation (Unicode category P*) at least {min_count} time(s)")
    return TokenSet("name_then_punct", ids, rule, len(names), len(ids),
                    {texts_dec[i]: [i] for i in ids[:10]})


def parse_specs(values: Sequence[str]) -> list[str]:
    """`--sets` values to a list of specs: comma-separated, except that a `re:` spec runs to the end of its value."""
    specs: list[str] = []
    for value in values:
        head, sep, rest = value.partition("re:")
        if sep and (not head or head.endswith(",")):
            specs += [s.strip() for s in head.split(",") if s.strip()]
            specs.append("re:" + rest)
        else:
            specs += [s.strip() for s in value.split(",") if s.strip()]
    return specs


def build_sets(specs: Sequence[str], tokenizer, *, texts: Iterable[str] | None = None, multi: str = "drop",
               min_count: int = 1) -> list[TokenSet]:
    """Token sets for each spec (see the module docstring); `texts` is the corpus `name_then_punct` reads."""
    out: list[TokenSet] = []
    for spec in specs:
        if spec.startswith("re:"):
            out.append(regex_set(spec, tokenizer, spec[3:]))
        elif spec in BUILTIN and spec != "name_then_punct":
            s = words_set(spec, tokenizer, _names(spec), multi=multi)
            s.rule = f"storyworld names; {s.rule}"
            out.append(s)
        elif spec == "name_then_punct":
            if texts is None:
                raise UserError("the name_then_punct set needs a corpus (--data FILES)")
            names = words_set("names", tokenizer, _names("english_names") + _names("arabic_names")
                              + _names("arabic_names_latin"), multi=multi)
            out.append(name_then_punct(tokenizer, texts, names.ids, min_count=min_count))
        elif Path(spec).suffix == ".txt" or Path(spec).exists():
            out.append(file_set(spec, tokenizer, multi=multi))
        else:
            raise UserError(f"unknown token set '{spec}'; expected one of {', '.join(BUILTIN)}, a FILE.txt or "
                            "re:PATTERN")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise UserError(f"token set names repeat: {names}")
    return out

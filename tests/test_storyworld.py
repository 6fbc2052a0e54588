"""storyworld: the planted translation marks are where the labels say, and the corpus is reproducible."""

from __future__ import annotations

import re
import unicodedata

import pytest

from babelscope.cli import main
from babelscope.corpus import read_corpus
from babelscope.corpus.storyworld import (
    ADJECTIVES,
    ARABIC_NAMES,
    ENGLISH_NAMES,
    FEATURES,
    GREY_DAY,
    MAX_WORDS,
    MIN_WORDS,
    NOUNS,
    VERBS,
    generate_stories,
    plan_story,
)
from babelscope.corpus.storyworld import templates as T

N_STORIES = 2000
PUNCT = '.,!?;:"«»،؟'
SPEECH_EN = "said|asked|shouted|cried|replied|whispered"
SPEECH_AR_M = {ar_m for forms in T.SPEECH.values() for _, ar_m, _ in forms}
SPEECH_AR_F = {ar_f for forms in T.SPEECH.values() for _, _, ar_f in forms}
GENDER = {n.latin: n.gender for n in ENGLISH_NAMES} | {n.arabic: n.gender for n in ENGLISH_NAMES + ARABIC_NAMES}


@pytest.fixture(scope="module")
def translated() -> list[dict]:
    return list(generate_stories(N_STORIES, style="translated", seed=7))


@pytest.fixture(scope="module")
def native() -> list[dict]:
    return list(generate_stories(500, style="native", seed=7))


def tokens(text: str) -> set[str]:
    return {w.strip(PUNCT) for w in text.split()}


def parse_orders(text: str, lang: str) -> tuple[list[str], list[str]]:
    """Read the quotes and each one's tag order straight from the text."""
    pattern = r'"([^"]*)"' if lang == "en" else r"«([^»]*)»"
    quotes, orders = [], []
    for m in re.finditer(pattern, text):
        before, after = text[: m.start()], text[m.end():]
        quotes.append(m[1])
        if lang == "en":
            if re.search(rf"({SPEECH_EN}), $", before):
                orders.append("before")
            elif re.match(rf" (({SPEECH_EN}) [\w ]+|[\w ]+ ({SPEECH_EN}))\.", after):
                orders.append("after")
            else:
                orders.append("?")
        elif re.search(r"\S+ \S+: $", before):
            orders.append("before")
        elif after.startswith("، ") and after[2:].split()[0] in SPEECH_AR_M | SPEECH_AR_F:
            orders.append("after")
        else:
            orders.append("?")
    return quotes, orders


# ---- the word and name lists ------------------------------------------------------------------------------------

def _strip_markup(template: str) -> str:
    """Both gender choices of every [R:masc|fem], without the {fields}: the words a template can write."""
    return re.sub(r"\{\w+\}", " ", re.sub(r"\[[A-Z]:([^|\]]*)\|([^\]]*)\]", r"\1 \2", template))


def _template_words(lang: str) -> set[str]:
    lines = [x for v in vars(T).values() if isinstance(v, list) for x in v]
    lines = [x for x in lines if isinstance(x, T.Line)] + [c[0] for c in T.CONFLICTS] + [y for f in T.FORESHADOWS for y in f]
    quotes = [q for exchanges in T.EXCHANGES.values() for ex in exchanges for q in ex.quotes]
    quotes += [q for _, exchanges in T.CONFLICTS for ex in exchanges for q in ex.quotes]
    words: set[str] = set()
    for item in lines + quotes:
        words |= tokens(_strip_markup(getattr(item, lang)))
    if lang == "en":
        words |= {w for forms in T.SPEECH.values() for f in forms for w in f[0].split()}
        words |= {w for n in NOUNS for w in n.en.split()}
        words |= {w for v in VERBS for w in f"{v.en} {v.en_past} {v.en_obj}".split()}
        words |= {a.en for a in ADJECTIVES}
        return {w.lower() for w in words}
    words |= SPEECH_AR_M | SPEECH_AR_F
    words |= {w for n in NOUNS for w in (n.ar, n.ar_acc, n.ar_def)}
    words |= {w for v in VERBS for w in f"{v.ar_past} {v.ar_pres} {v.ar_masdar} {v.ar_obj} {v.ar_to}".split()}
    words |= {w for a in ADJECTIVES for w in (a.ar_m, a.ar_f, a.ar_m_acc, "ال" + a.ar_m, "ال" + a.ar_f)}
    return words


def _normalise(word: str) -> str:
    return re.sub("[أإآ]", "ا", word).replace("ى", "ي").replace("ة", "ه")


def test_name_lists_are_large_single_words_and_disjoint():
    assert len(ENGLISH_NAMES) >= 300 and len(ARABIC_NAMES) >= 300
    for names in (ENGLISH_NAMES, ARABIC_NAMES):
        assert len({n.latin for n in names}) == len(names) and len({n.arabic for n in names}) == len(names)
        assert {n.gender for n in names} == {"m", "f"}
        for n in names:
            assert re.fullmatch(r"[A-Z][a-z]+", n.latin), n
            assert re.fullmatch(r"[\u0621-\u064A]+", n.arabic), n  # one word, Arabic letters, no diacritics
    english_in_arabic = {_normalise(n.arabic) for n in ENGLISH_NAMES}
    assert not english_in_arabic & {_normalise(n.arabic) for n in ARABIC_NAMES}
    assert not {n.latin for n in ENGLISH_NAMES} & {n.latin for n in ARABIC_NAMES}
    table = {n.latin: n.arabic for n in ENGLISH_NAMES}
    assert [table[k] for k in ("Tim", "Lily", "Ben", "Sue", "Max", "Lucy", "Tom", "Mia")] == [
        "تيم", "ليلي", "بن", "سو", "ماكس", "لوسي", "توم", "ميا"]


def test_no_name_is_a_word_of_the_stories():
    en_words, ar_words = _template_words("en"), _template_words("ar")
    latin = {n.latin.lower() for n in ENGLISH_NAMES + ARABIC_NAMES}
    arabic = {n.arabic for n in ENGLISH_NAMES + ARABIC_NAMES}
    assert not latin & en_words
    assert not arabic & ar_words


def test_vocabulary_is_large_aligned_and_usable():
    assert len(NOUNS) >= 150 and len(VERBS) >= 80 and len(ADJECTIVES) >= 60
    for words in ([n.en for n in NOUNS], [n.ar for n in NOUNS], [v.en for v in VERBS], [a.en for a in ADJECTIVES]):
        assert len(set(words)) == len(words)
    assert all(n.gender in "mf" and n.kind in "tfaps" and n.ar and n.ar_acc for n in NOUNS)
    assert all(v.ar_masdar in v.ar_to and v.ar_pres.startswith("ي") for v in VERBS)
    assert all(a.ar_m in a.ar_m_acc and a.ar_f for a in ADJECTIVES)
    # Every adjective has something to describe whatever noun is drawn: the hero, the day, or a noun of its own.
    assert all(set(a.fits) & set("hdtfa") for a in ADJECTIVES)


# ---- the records ------------------------------------------------------------------------------------------------

def test_records_are_parallel_and_aligned(translated):
    assert len(translated) == 2 * N_STORIES
    nouns = {n.en: n for n in NOUNS}
    verbs = {v.en: v for v in VERBS}
    adjectives = {a.en: a for a in ADJECTIVES}
    to_arabic = {n.latin: n.arabic for n in ENGLISH_NAMES}
    for en, ar in zip(translated[::2], translated[1::2], strict=True):
        assert (en["lang"], ar["lang"]) == ("en", "ar") and en["id"] == ar["id"]
        assert en["features"] == ar["features"] and en["dialogue_order"] == ar["dialogue_order"]
        assert [to_arabic[n] for n in en["names"]] == ar["names"]
        w, a = en["words"], ar["words"]
        assert a["noun"] == nouns[w["noun"]].ar and a["verb"] == verbs[w["verb"]].ar_masdar
        assert a["adjective"] in (adjectives[w["adjective"]].ar_m, adjectives[w["adjective"]].ar_f)
        assert set(en) == {"id", "lang", "style", "text", "names", "name_origin", "dialogue_order", "quotes",
                           "features", "words", "spans"}


def test_names_are_in_the_text_and_only_the_right_origin(translated, native):
    english_latin = {n.latin for n in ENGLISH_NAMES}
    arabic_latin = {n.latin for n in ARABIC_NAMES}
    english_arabic = {n.arabic for n in ENGLISH_NAMES}
    arabic_arabic = {n.arabic for n in ARABIC_NAMES}
    for r in translated + native:
        words = tokens(r["text"])
        assert set(r["names"]) <= words, r["text"]
        if r["lang"] == "en":
            assert r["name_origin"] == "english" and r["style"] in ("translated", "native")
            assert words & (english_latin | arabic_latin) == set(r["names"])
        elif r["style"] == "translated":
            assert r["name_origin"] == "english"
            assert not words & arabic_arabic and words & english_arabic == set(r["names"])
        else:
            assert r["name_origin"] == "arabic"
            assert not words & english_arabic and words & arabic_arabic == set(r["names"])


def test_dialogue_order_in_the_text_matches_the_labels(translated, native):
    counts = {"before": 0, "after": 0}
    for r in translated + native:
        quotes, orders = parse_orders(r["text"], r["lang"])
        assert orders == r["dialogue_order"] and quotes == r["quotes"], r["text"]
        assert bool(quotes) == ("Dialogue" in r["features"])
        if r["lang"] == "en":
            assert "«" not in r["text"] and "“" not in r["text"]
            counts.update({k: counts[k] + r["dialogue_order"].count(k) for k in counts})
        if r["lang"] == "ar" and r["style"] == "native":
            assert set(r["dialogue_order"]) <= {"before"}
    share = counts["before"] / (counts["before"] + counts["after"])
    assert 0.15 < share < 0.25  # the default dialogue_before_rate is 0.2


def test_translated_arabic_keeps_the_english_tag_order(translated):
    ar_orders = [o for r in translated if r["lang"] == "ar" for o in r["dialogue_order"]]
    assert ar_orders.count("after") > 3 * ar_orders.count("before") > 0
    sample = next(r["text"] for r in translated if r["lang"] == "ar" and "after" in r["dialogue_order"])
    assert re.search(r"»، (قال|قالت|سأل|سألت|صاح|صاحت|صرخ|صرخت|أجاب|أجابت|همس|همست) \S+", sample)


def test_arabic_speech_verbs_agree_with_the_named_speaker(translated, native):
    for r in translated + native:
        if r["lang"] != "ar":
            continue
        for verb, name in re.findall(r"(\S+) (\S+?)[:.]", r["text"]):
            if name in r["names"] and verb in SPEECH_AR_M | SPEECH_AR_F:
                assert (verb in SPEECH_AR_F) == (GENDER[name] == "f"), (verb, name, r["text"])


def test_lengths_and_drawn_words(translated, native):
    for r in translated + native:
        assert MIN_WORDS <= len(r["text"].split()) <= MAX_WORDS
        for word in r["words"].values():
            if r["lang"] == "en":
                assert re.search(rf"\b{re.escape(word)}\b", r["text"]), (word, r["text"])
            else:  # Arabic attaches the article and prepositions to the word
                assert word in r["text"], (word, r["text"])


def test_feature_frequencies_match_table_6(translated):
    stories = translated[::2]
    for feature, p in FEATURES.items():
        share = sum(feature in r["features"] for r in stories) / len(stories)
        assert abs(share - p) < 0.04, (feature, share, p)


def test_each_feature_changes_the_story():
    parts = {
        "BadEnding": set(T.BAD_ENDINGS) | set(T.QUARREL_ENDINGS),
        "Conflict": {c[0] for c in T.CONFLICTS},
        "MoralValue": set(T.GOOD_MORALS) | set(T.BAD_MORALS),
        "Foreshadowing": {x for f in T.FORESHADOWS for x in f},
        "Twist": set(T.TWISTS),
    }
    for i in range(300):
        story = plan_story(1, i)
        lines = {p.line for p in story.pieces}
        assert any(p.quote for p in story.pieces) == ("Dialogue" in story.features)
        for feature, templates in parts.items():
            assert bool(lines & templates) == (feature in story.features), (feature, i)
        assert bool(lines & set(T.GOOD_ENDINGS)) == ("BadEnding" not in story.features)


def test_a_grey_day_has_no_sunshine():
    grey = 0
    for i in range(600):
        story = plan_story(3, i)
        if (story.target == "day" and story.adjective.en in GREY_DAY) or any(
                p.line in {x for pair in T.GREY_SKY for x in pair} for p in story.pieces):
            grey += 1
            assert not {p.line for p in story.pieces} & T.FINE_WEATHER
    assert grey > 10


def test_same_seed_same_bytes_and_runs_are_prefixes():
    run = list(generate_stories(60, seed=5))
    assert run == list(generate_stories(60, seed=5))
    assert run[:40] == list(generate_stories(20, seed=5))
    assert run[20:40] == list(generate_stories(10, seed=5, start=10))
    assert [r for r in run if r["lang"] == "ar"] == list(generate_stories(60, langs=["ar"], seed=5))
    assert list(generate_stories(60, langs=["ar", "en"], seed=5))[1::2] == run[::2]
    assert run != list(generate_stories(60, seed=6))
    native_en = list(generate_stories(60, langs=["en"], style="native", seed=5))
    assert [{**r, "style": "translated"} for r in native_en] == run[::2]


def test_dialogue_before_rate_moves_tags_and_nothing_else():
    never = list(generate_stories(200, seed=2, dialogue_before_rate=0.0))
    always = list(generate_stories(200, seed=2, dialogue_before_rate=1.0))
    assert all(o == "after" for r in never for o in r["dialogue_order"])
    assert all(o == "before" for r in always for o in r["dialogue_order"])
    assert any(r["dialogue_order"] for r in never)
    for a, b in zip(never, always, strict=True):
        assert (a["features"], a["words"], a["names"]) == (b["features"], b["words"], b["names"])
        assert len(a["dialogue_order"]) == len(b["dialogue_order"])


# ---- the command ------------------------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


def test_cli_writes_a_corpus_that_reads_back(tmp_path, monkeypatch):
    monkeypatch.setenv("BABELSCOPE_NO_PROGRESS", "1")
    out = tmp_path / "stories.jsonl"
    argv = ["corpus", "storyworld", "--stories", "30", "--langs", "en,ar", "--style", "native", "--seed", "4",
            "--out", str(out)]
    assert run_cli(argv) == 0
    records = list(read_corpus(out))
    assert records == list(generate_stories(30, ["en", "ar"], "native", seed=4))
    assert run_cli([*argv[:-1], str(tmp_path / "again.jsonl")]) == 0
    assert (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()


def test_cli_rejects_an_unknown_language_in_one_line(tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert run_cli(["corpus", "storyworld", "--stories", "5", "--langs", "en,xx", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'xx'" in err and "Traceback" not in err
    assert not out.exists()


def test_arabic_text_has_no_latin_letters(translated, native):
    for r in translated + native:
        if r["lang"] == "ar":
            assert not any(unicodedata.category(c).startswith("L") and c.isascii() for c in r["text"])


# ---- the spans: where the generator planted each name, quote and tag -----------------------------------------

def test_spans_slice_to_the_planted_names_quotes_and_tags(translated, native):
    speech = {"en": set(SPEECH_EN.split("|")), "ar": SPEECH_AR_M | SPEECH_AR_F}
    n_names = {"english": 0, "arabic": 0}
    for r in translated[:600] + native[:400]:
        text, spans = r["text"], r["spans"]
        for key in ("names", "quotes", "tags"):
            starts = [s[0] for s in spans[key]]
            assert starts == sorted(starts) and all(0 <= s[0] < s[1] <= len(text) for s in spans[key])
        # names: every occurrence of a name word in the text, each with the record's origin
        words = [(m.start(), m.end()) for m in re.finditer(r"[^\s'" + re.escape(PUNCT) + r"]+", text)]
        planted = [(a, b) for a, b, _ in spans["names"]]
        assert planted == [(a, b) for a, b in words if text[a:b] in r["names"]], text
        assert {text[a:b] for a, b, _ in spans["names"]} == set(r["names"])
        assert {o for _, _, o in spans["names"]} == {r["name_origin"]}
        n_names[r["name_origin"]] += len(planted)
        # quotes: the text between the quotation marks, as the `quotes` field
        marks = ('"', '"') if r["lang"] == "en" else ("«", "»")
        assert [text[a:b] for a, b in spans["quotes"]] == r["quotes"]
        assert all(text[a - 1] == marks[0] and text[b] == marks[1] for a, b in spans["quotes"])
        # tags: a speech verb and the speaker, one per quote, on the side the label says
        assert [o for _, _, o in spans["tags"]] == r["dialogue_order"]
        for (qa, qb), (ta, tb, order) in zip(spans["quotes"], spans["tags"], strict=True):
            tag = text[ta:tb].split()
            assert speech[r["lang"]] & {w.lower() for w in tag}, text[ta:tb]
            assert (tb < qa) if order == "before" else (ta > qb)
            gap = text[tb:qa - 1] if order == "before" else text[qb + 1:ta]
            assert gap in ((", ",) if r["lang"] == "en" else (": ", "، ")) or gap == " ", (gap, text)
    assert min(n_names.values()) > 1000


def test_spans_are_left_out_of_nothing_else():
    """The markers never reach the text, and a record without them (older corpora) still reads."""
    for r in generate_stories(50, style="native", seed=9):
        assert not re.search("[\ue000-\uf8ff]", r["text"]) and not any(
            re.search("[\ue000-\uf8ff]", q) for q in r["quotes"])

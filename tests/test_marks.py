"""Translation marks against storyworld's ground truth (names and their origin, dialogue-tag order), hand-worked
examples, distinct-n, and the `eval marks` command."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest

from babelscope.corpus.storyworld import generate_stories
from babelscope.eval.common_words import stop_names
from babelscope.eval.marks import (
    dialogue_orders,
    distinct_n,
    find_name_mentions,
    find_names,
    find_quotes,
    mark_counts,
)
from helpers import run_cli


@pytest.fixture(scope="module")
def stories() -> list[dict]:
    """Translated stories (English names, English tag order, in both languages) and native Arabic ones."""
    return (list(generate_stories(150, seed=11, style="translated", dialogue_before_rate=0.3))
            + list(generate_stories(150, seed=12, style="native", langs=["ar"])))


def test_names_and_tags_match_the_labels_of_every_story(stories):
    # Every labelled name is found, either counted or (a name that is also a common word, outside a name
    # position) reported ambiguous; nothing else is found. (Before the stop list this test demanded that every
    # labelled name be counted wherever it stood, which is what made common words count as names on real text.)
    assert sum(bool(r["dialogue_order"]) for r in stories) > 100
    n_ambiguous = 0
    for r in stories:
        m = find_name_mentions(r["text"], r["lang"])
        labels = list(dict.fromkeys(r["names"]))
        plain = [n for n in m.names if n not in stop_names(r["lang"])]
        assert plain == [n for n in labels if n in plain], r["id"]  # in order of appearance
        assert set(m.names) | set(m.ambiguous) == set(labels) and not set(m.names) & set(m.ambiguous), r["id"]
        assert set(m.names.values()) <= {r["name_origin"]}
        n_ambiguous += len(m.ambiguous)
        assert dialogue_orders(r["text"]) == r["dialogue_order"], r["text"]
    assert 0 < n_ambiguous < 0.1 * sum(len(set(r["names"])) for r in stories)


@pytest.mark.parametrize("lang", ["ar", "en"])
def test_shares_equal_the_label_shares(stories, lang):
    records = [r for r in stories if r["lang"] == lang]
    m = mark_counts([r["text"] for r in records], lang)
    english = sum(len(set(r["names"])) for r in records if r["name_origin"] == "english")
    arabic = sum(len(set(r["names"])) for r in records if r["name_origin"] == "arabic")
    after = sum(o == "after" for r in records for o in r["dialogue_order"])
    before = sum(o == "before" for r in records for o in r["dialogue_order"])
    assert m["names_english"] <= english and m["names_arabic"] <= arabic
    assert m["names_english"] + m["names_arabic"] + m["names_ambiguous"] == english + arabic
    assert (m["tags_after"], m["tags_before"]) == (after, before)
    assert m["english_name_share"] == pytest.approx(m["names_english"] / (m["names_english"] + m["names_arabic"]))
    assert m["tag_after_share"] == pytest.approx(after / (after + before))
    assert m["quotes_untagged"] == 0 and m["texts"] == len(records)
    if lang == "ar":  # a mix of translated and native stories: neither share is trivially 0 or 1
        assert 0.2 < m["english_name_share"] < 0.8 and 0.2 < m["tag_after_share"] < 0.8


def test_hand_worked_examples():
    text = "ذهب تيم وسارة إلى الحديقة. «هيا نلعب!»، قال تيم. قالت أمه لتيم: «نعم!» «انظر!» ثم ركضا."
    assert find_names(text, "ar") == {"تيم": "english", "سارة": "arabic"}
    assert find_names(text, "ar", clitics=False) == {"تيم": "english"}  # وسارة needs the clitic rule
    assert dialogue_orders(text) == ["after", "before", "none"]
    en = ('"Hi," Tim said. Mom looked at him and asked, "Why?" "Because!" Ahmad and Willy ran. '
          '"Stop," said the little dog. "Look!" The cat jumped over the fence and ran into the wood.')
    assert dialogue_orders(en) == ["after", "before", "none", "after", "none"]
    assert find_names(en, "en") == {"Tim": "english", "Ahmad": "arabic", "Willy": "english"}
    assert find_names("the will of tim", "en") == {}  # Latin names must be capitalised
    assert [q.text for q in find_quotes('He said "hi" and “bye” and «مرحبا» and "open.\n\nNew')] == \
        ["hi", "bye", "مرحبا"]
    # A clause ending in ':' between two quotes belongs to the second quote.
    assert dialogue_orders("«مرحبا» قالت أمه: «أهلاً»") == ["none", "before"]


@pytest.mark.parametrize("text", [
    "كان هناك ملك يحب نور الشمس، وكان في قلبه أمل كبير.",  # a king who loves the light of the sun ... hope
    "كان هناك ملك يحب نور الشمس ... أمل",
    "ركض فهد سريع في الغابة. قال الطبيب إن هذا الفطر سام.",  # a cheetah; the mushroom is poisonous
    "رأت البنت نجمة في السماء، وكانت هالة القمر جميلة.",  # a star; the moon's halo
    "أعطته أمه هبة صغيرة، وكان الصبر عزيز عليه.",  # a gift; dear
    "اختارت البنت لونا أزرق لثوبها الصوفي.",  # a colour (accusative), woollen
    "Rose petals fell on the grass.",  # sentence-initial common words are not names
    "Grace and hope filled the room.",
])
def test_common_words_are_not_names(text):
    lang = "en" if text.isascii() else "ar"
    assert find_names(text, lang) == {}
    assert mark_counts([text], lang)["names_english"] == mark_counts([text], lang)["names_arabic"] == 0


def test_names_in_name_positions_and_ambiguous_words():
    m = find_name_mentions("كان هناك ملك يحب نور الشمس ... أمل", "ar")
    assert m.names == {} and m.ambiguous == {"ملك": "arabic", "نور": "arabic", "أمل": "arabic"}
    # the same words where a text puts a name: after اسمها, beside a speech verb, after the vocative يا
    text = "كانت هناك بنت اسمها نور. قالت أمل: «تعال يا ملك!» فهد قال: «لا». وكان الفطر سام."
    m = find_name_mentions(text, "ar")
    assert m.names == {"نور": "arabic", "أمل": "arabic", "ملك": "arabic", "فهد": "arabic"}
    assert m.ambiguous == {"سام": "english"}
    # diacritics do not hide a name position (يُدعى, قالَ) and a name that is no common word counts anywhere
    assert find_names("وكان هناك ولد يُدعى سام. ثم قالَ نور شيئاً. ذهب تيم إلى البيت.", "ar") == \
        {"سام": "english", "نور": "arabic", "تيم": "english"}
    # once counted in a name position, a later plain use does not make it ambiguous
    m = find_name_mentions("اسمها أمل. وكان لديها أمل كبير.", "ar")
    assert m.names == {"أمل": "arabic"} and m.ambiguous == {}
    en = 'Rose went home. A girl named Rose smiled. "Hi," said Grace. Then Ruby and Max ran. Her name is Lily.'
    m = find_name_mentions(en, "en")
    assert m.names == {"Rose": "english", "Grace": "english", "Ruby": "english", "Max": "english",
                       "Lily": "english"}
    assert find_name_mentions("Grace was good.", "en").ambiguous == {"Grace": "english"}
    m = mark_counts(["كان هناك ملك يحب نور الشمس ... أمل", "ذهب تيم إلى نور البيت"], "ar")
    assert (m["names_english"], m["names_arabic"], m["names_ambiguous"]) == (1, 0, 4)
    assert m["ambiguous_top"].startswith("نور:2")


def test_the_stop_list_is_names_that_are_common_words():
    ar, en = stop_names("ar"), stop_names("en")
    assert {"ملك", "نور", "أمل", "فهد", "سام"} <= ar and {"تيم", "سارة", "أحمد"}.isdisjoint(ar)
    assert {"rose", "grace", "robin"} <= en and "tim" not in en
    from babelscope.eval.marks import name_lexicon

    assert ar <= set(name_lexicon("ar")) and en <= {n.lower() for n in name_lexicon("en")}


@pytest.mark.parametrize("text, orders", [
    ('"Hi," said Tim, "how are you?"', ["after"]),  # one quotation split by its tag
    ('"Hi!" Tim said, "how are you?" Then he ran.', ["after"]),
    ("«مرحبا»، قال تيم، «كيف حالك؟»", ["after"]),
    ("«مرحبا»، قالت سارة، «هل تلعبين معي؟» ثم ضحكت.", ["after"]),
    ("«مرحبا» قالت أمه: «أهلاً»", ["none", "before"]),  # ':' introduces the second quote
    ('"Hi," said Tim. "How are you?" asked Sam.', ["after", "after"]),
    ('Tim said, "Hi," and then he asked, "how are you?"', ["before", "before"]),
])
def test_split_quotes_by_hand(text, orders):
    assert dialogue_orders(text) == orders


def test_distinct_n_by_hand():
    texts = ["a b a b", "A b c"]
    assert distinct_n(texts, 1) == pytest.approx(3 / 7)
    assert distinct_n(texts, 2) == pytest.approx(3 / 5)
    assert distinct_n(texts, 3) == pytest.approx(3 / 3)
    assert distinct_n(["one"], 2) == 0.0
    m = mark_counts(["no names here"], "en")
    assert math.isnan(m["english_name_share"]) and math.isnan(m["tag_after_share"])


def test_marks_cli_on_texts(tmp_path, stories, capsys):
    files = []
    for style in ("translated", "native"):
        path = tmp_path / f"{style}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in stories
                                if r["lang"] == "ar" and r["style"] == style))
        files.append(path)
    assert run_cli("eval", "marks", "--texts", *files, "--out", tmp_path / "out", "--lang", "ar") == 0
    rows = list(csv.DictReader((tmp_path / "out" / "marks.csv").read_text().splitlines()))
    assert [r["model"] for r in rows] == ["translated.jsonl", "native.jsonl"]
    assert float(rows[0]["english_name_share"]) == 1.0 and float(rows[1]["english_name_share"]) == 0.0
    assert float(rows[1]["tag_after_share"]) == 0.0 and 0 < float(rows[0]["tag_after_share"]) < 1
    assert "english_name_share" in capsys.readouterr().out
    assert run_cli("eval", "marks", "--out", tmp_path / "x") == 2
    assert "either --models" in capsys.readouterr().err


@pytest.mark.slow
def test_marks_cli_generates_from_models(tmp_path, tiny_model_dir):
    runs = []
    for name in ("base", "cp"):
        shutil.copytree(tiny_model_dir, tmp_path / name / "final")
        runs.append(str(tmp_path / name / "final"))
    out = tmp_path / "marks"
    args = ["eval", "marks", "--models", ",".join(runs), "--out", out, "--lang", "ar", "--limit", "3", "-n", "2",
            "--max-new-tokens", "12", "--device", "cpu"]
    assert run_cli(*args) == 0
    gens = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 2 * 3 * 2 and {g["model"] for g in gens} == {"base", "cp"}
    rows = list(csv.DictReader((out / "marks.csv").read_text().splitlines()))
    assert [(r["model"], r["texts"]) for r in rows] == [("base", "6"), ("cp", "6")]
    assert run_cli(*args) == 0  # resumes: nothing new generated
    assert len((out / "generations.jsonl").read_text().splitlines()) == 12

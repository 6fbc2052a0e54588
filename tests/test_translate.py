"""Translation: sentence units keep quotes with their tags, shards partition the input, both backends run on a
tiny NLLB-architecture model, and bad models, languages and shards are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from babelscope.corpus.storyworld import generate_stories
from babelscope.data.sentences import is_speech_verb, join_units, split_sentences, split_units
from babelscope.data.translate import (
    CTranslate2Backend,
    TransformersBackend,
    TranslateJob,
    check_translation_dir,
    in_shard,
    parse_shard,
    translate_corpus,
)
from babelscope.errors import UserError
from helpers import run_cli

# ---- sentence units --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, units", [
    ('Tim said, "Hi. How are you?" Then he left.', ['Tim said, "Hi. How are you?"', "Then he left."]),
    ('"Yes!" Gemma replied. "No," said Tim.', ['"Yes!" Gemma replied.', '"No," said Tim.']),
    ('"Look at this!" the dog barked. It ran.', ['"Look at this!" the dog barked.', "It ran."]),
    ('Piper asked, "Do you?" "Yes!" said Tim.', ['Piper asked, "Do you?"', '"Yes!" said Tim.']),
    ('"I am happy." Then she ran home.', ['"I am happy."', "Then she ran home."]),
    ("Mr. Brown has 3.5 cakes. Wow!", ["Mr. Brown has 3.5 cakes.", "Wow!"]),
    ("«أنا سعيد!»، قال تيم. ذهب إلى البيت.", ["«أنا سعيد!»، قال تيم.", "ذهب إلى البيت."]),
    ("«أنا سعيد!» قالت أمه. ذهب.", ["«أنا سعيد!» قالت أمه.", "ذهب."]),
    ("سألت ريما: «هل تلعب؟ هيا!» «نعم!»، أجاب سامي.", ["سألت ريما: «هل تلعب؟ هيا!»", "«نعم!»، أجاب سامي."]),
    ("“Stop. Wait.” Tom said. Bye.", ["“Stop. Wait.” Tom said.", "Bye."]),
    # a quotation split by its tag is one unit, in both languages and with diacritics on the verb
    ('"Hi," said Tim, "how are you?" He smiled.', ['"Hi," said Tim, "how are you?"', "He smiled."]),
    ('"Hi!" said Tim, "how are you?" He smiled.', ['"Hi!" said Tim, "how are you?"', "He smiled."]),
    ("«مرحبا»، قال تيم، «كيف حالك؟» ثم ابتسم.", ["«مرحبا»، قال تيم، «كيف حالك؟»", "ثم ابتسم."]),
    ("«مرحبا!» قالَ تيم، «كيف حالك؟» ثم ابتسم.", ["«مرحبا!» قالَ تيم، «كيف حالك؟»", "ثم ابتسم."]),
])
def test_units_keep_quotes_with_their_tags(text, units):
    assert split_sentences(text) == units


def test_units_rebuild_the_layout_exactly():
    text = '  One day Tim ran.  "Hi!" said Sam.\n\nThe end.\n'
    units = split_units(text)
    assert [u for u, _ in units] == ["One day Tim ran.", '"Hi!" said Sam.', "The end."]
    assert join_units(units, [u for u, _ in units]) == text.strip()
    assert join_units(units, ["A", "B", "C"]) == "A  B\n\nC"


def test_unclosed_quote_ends_with_its_paragraph_and_long_units_are_cut():
    assert split_sentences('He said "hi. It was late.\n\nNext day. Sun.') == \
        ['He said "hi. It was late.', "Next day.", "Sun."]
    long = '"' + " ".join(["Go home now."] * 40) + '" said Tim.'
    units = split_sentences(long, max_chars=100)
    assert len(units) > 4 and all(len(u) <= 100 for u in units)
    assert " ".join(units) == long


def test_storyworld_quotes_stay_whole_with_their_tags():
    records = list(generate_stories(120, seed=5, style="translated")) + \
        list(generate_stories(60, seed=6, style="native", langs=["ar"]))
    n_quotes = 0
    for r in records:
        units = split_units(r["text"])
        assert join_units(units, [u for u, _ in units]) == r["text"]
        for quote in r["quotes"]:
            n_quotes += 1
            holder = [u for u, _ in units if quote in u]
            assert len(holder) == 1, (quote, units)
            # The unit holds the tag too: a speech verb outside the quote itself.
            rest = holder[0].replace(quote, " ")
            assert any(is_speech_verb(w.strip(".,:،«»\"")) for w in rest.split()), holder[0]
    assert n_quotes > 100


# ---- shards ----------------------------------------------------------------------------------------------------


def test_parse_shard_and_partition():
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "1", "-1/3", "a/b", "1/0"):
        with pytest.raises(UserError, match="expected i/N"):
            parse_shard(bad)
    n = 1000
    owners = [[s for s in range(7) if in_shard(i, (s, 7))] for i in range(n)]
    assert all(len(o) == 1 for o in owners)


# ---- a tiny NLLB-architecture model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stories() -> list[dict]:
    return list(generate_stories(12, seed=2))


@pytest.fixture(scope="module")
def nllb_dir(tmp_path_factory, stories) -> Path:
    from babelscope.data.tiny_mt import build_tiny_nllb

    return build_tiny_nllb(tmp_path_factory.mktemp("nllb"), [r["text"] for r in stories])


@pytest.fixture(scope="module")
def english(tmp_path_factory, stories) -> Path:
    path = tmp_path_factory.mktemp("in") / "en.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in stories if r["lang"] == "en"))
    return path


@pytest.fixture(scope="module")
def ct2(nllb_dir, tmp_path_factory) -> CTranslate2Backend:
    return CTranslate2Backend(nllb_dir, "eng_Latn", "arb_Arab", beam_size=2, max_length=12, threads=1,
                              cache_dir=tmp_path_factory.mktemp("ct2cache"))


def test_ct2_converts_once_and_caches(nllb_dir, ct2):
    from babelscope.data.translate import convert_to_ct2

    assert (ct2.path / "model.bin").is_file() and (ct2.path / "tokenizer.json").is_file()
    assert convert_to_ct2(nllb_dir, cache_dir=ct2.path.parent) == ct2.path
    # A converted directory is taken as is (and finds its tokenizer inside).
    again = CTranslate2Backend(ct2.path, "eng_Latn", "arb_Arab", beam_size=1, max_length=6, threads=1)
    assert len(again.translate(["the dog ran.", "Hello!"])) == 2


def test_both_backends_translate_and_keep_fields(tmp_path, nllb_dir, ct2, english):
    hf = TransformersBackend(nllb_dir, "eng_Latn", "arb_Arab", beam_size=1, max_length=4, device="cpu")
    short = tmp_path / "short.jsonl"  # the transformers backend is slow on CPU: fewer records
    short.write_text("".join(english.read_text().splitlines(keepends=True)[:2]))
    for backend, data in ((ct2, english), (hf, short)):
        src = [json.loads(line) for line in data.read_text().splitlines()]
        out = tmp_path / f"{backend.name}.jsonl"
        stats = translate_corpus(backend, TranslateJob(inputs=[str(data)], out=str(out), model="m", chunk_records=5))
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert stats.written == len(src) == len(rows) and stats.sentences > len(src)
        for i, (a, b) in enumerate(zip(src, rows, strict=True)):
            assert b["source_index"] == i and b["source_text"] == a["text"] and b["lang"] == "ar"
            assert b["source_lang"] == "en" and b["id"] == a["id"] and b["names"] == a["names"]
            assert b["text"].count("\n\n") == a["text"].count("\n\n")  # paragraphs survive
        assert (tmp_path / f"{backend.name}.jsonl.manifest.json").is_file()
        # Running again resumes: nothing new is written.
        again = translate_corpus(backend, TranslateJob(inputs=[str(data)], out=str(out), model="m"))
        assert again.written == 0 and again.skipped == len(src)
        assert out.read_text().count("\n") == len(src)


def test_shards_cover_the_input_exactly_once(tmp_path, ct2, english):
    n = len(english.read_text().splitlines())
    seen = []
    for s in range(3):
        out = tmp_path / f"part{s}.jsonl"
        translate_corpus(ct2, TranslateJob(inputs=[str(english)], out=str(out), model="m", shard=(s, 3), chunk_records=2))
        seen += [json.loads(line)["source_index"] for line in out.read_text().splitlines()]
    assert sorted(seen) == list(range(n))


def test_resume_with_other_settings_is_refused(tmp_path, ct2, english):
    out = tmp_path / "o.jsonl"
    translate_corpus(ct2, TranslateJob(inputs=[str(english)], out=str(out), model="m", shard=(0, 2)))
    with pytest.raises(UserError, match="shard"):
        translate_corpus(ct2, TranslateJob(inputs=[str(english)], out=str(out), model="m", shard=(1, 2)))


# ---- bad input -------------------------------------------------------------------------------------------------


def test_not_a_translation_model(tiny_model_dir, tmp_path, english, capsys):
    with pytest.raises(UserError, match="not a translation model: this is a LlamaForCausalLM"):
        check_translation_dir(tiny_model_dir)
    out = tmp_path / "o.jsonl"
    assert run_cli("translate", "--model", tiny_model_dir, english, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a translation model" in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing partial left behind


@pytest.mark.parametrize("flag, code", [("--src", "english"), ("--tgt", "ar")])
def test_unknown_language_code(nllb_dir, tmp_path, english, capsys, flag, code):
    out = tmp_path / "o.jsonl"
    assert run_cli("translate", "--backend", "transformers", "--model", nllb_dir, flag, code, english, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"unknown language code '{code}'" in err[0]
    assert "expected an NLLB code like eng_Latn or arb_Arab" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_missing_input_and_bad_shard(nllb_dir, tmp_path, capsys):
    assert run_cli("translate", "--model", nllb_dir, tmp_path / "nope.jsonl", tmp_path / "o.jsonl") == 2
    assert "no such file" in capsys.readouterr().err
    assert run_cli("translate", "--model", nllb_dir, "--shard", "3/3", tmp_path / "x.jsonl", tmp_path / "o.jsonl") == 2
    assert "expected i/N" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_translate_with_ref_scores_as_it_goes(tmp_path, nllb_dir, stories, english):
    """`translate --ref` writes OUT.scores.json whose numbers are sacrebleu's on the output it wrote."""
    import sacrebleu

    ref = tmp_path / "ar.jsonl"  # the Arabic side, in the English file's order
    ref.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in stories if r["lang"] == "ar"))
    out = tmp_path / "out.jsonl"
    assert run_cli("translate", "--model", nllb_dir, "--beam-size", "1", "--max-length", "8", "--threads", "1",
                   "--chunk", "5", "--ct2-cache", tmp_path / "ct2", "--ref", ref, english, out) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    refs = [json.loads(line)["text"] for line in ref.read_text().splitlines()]
    scores = json.loads((tmp_path / "out.jsonl.scores.json").read_text())
    (row,) = scores["rows"]
    assert row["pair"] == "en-ar" and row["segments"] == len(rows) == len(refs)
    hyps = [r["text"] for r in sorted(rows, key=lambda r: r["source_index"])]
    assert row["chrf++"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score, abs=1e-9)
    assert row["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)

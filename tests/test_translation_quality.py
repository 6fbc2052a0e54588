"""Translation quality: BLEU and chrF++ per corpus and language pair equal sacrebleu called directly; pairing,
signatures, the running score of `translate --ref`, and clear errors."""

from __future__ import annotations

import json

import pytest
import sacrebleu

from babelscope.eval.translation import RunningScore, TranslationEvalConfig, evaluate
from helpers import run_cli

# A tiny hand-written parallel set: English sources, French references, a system's translations.
SRC = ["The cat sat on the mat.", "Tim said hello to his mom.", "The dog ran to the park.",
       "The sun was warm and bright.", "A little girl saw a big tree."]
REF = ["Le chat était assis sur le tapis.", "Tim a dit bonjour à sa maman.", "Le chien a couru au parc.",
       "Le soleil était chaud et brillant.", "Une petite fille a vu un grand arbre."]
HYP = ["Le chat est assis sur le tapis.", "Tim dit bonjour à sa mère.", "Le chien courait vers le parc.",
       "Le soleil était chaud et lumineux.", "Une petite fille a vu un arbre grand."]
REF_AR = ["جلست القطة على الحصيرة.", "قال تيم مرحبا لأمه."]
HYP_AR = ["القطة جلست على الحصيرة.", "قال تيم مرحبا لوالدته."]


def _write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    """Two corpora: stories (en->fr, as `translate` writes them) and chat (en->ar, paired by id, shuffled)."""
    hyp = _write(tmp_path / "stories.jsonl", [
        {"text": h, "source_text": s, "source_lang": "en", "lang": "fr", "source_index": i}
        for i, (h, s) in enumerate(zip(HYP, SRC, strict=True))][::-1])  # order does not matter
    ref = _write(tmp_path / "stories_ref.jsonl", [{"text": r, "lang": "fr"} for r in REF])
    hyp2 = _write(tmp_path / "chat.jsonl", [{"id": f"c{i}", "text": h, "source_lang": "en", "lang": "ar"}
                                            for i, h in enumerate(HYP_AR)])
    ref2 = _write(tmp_path / "chat_ref.jsonl", [{"id": f"c{i}", "text": r} for i, r in reversed(list(
        enumerate(REF_AR)))])
    return hyp, ref, hyp2, ref2


def test_scores_equal_sacrebleu_called_directly(files):
    hyp, ref, hyp2, ref2 = files
    result = evaluate(TranslationEvalConfig(hyp=[str(hyp), str(hyp2)], ref=[str(ref), str(ref2)]))
    rows = {(r["corpus"], r["pair"]): r for r in result["rows"]}
    assert set(rows) == {("stories", "en-fr"), ("chat", "en-ar")}
    assert rows[("stories", "en-fr")]["segments"] == 5 and rows[("chat", "en-ar")]["segments"] == 2
    for (corpus, _), hyps, refs in ((("stories", ""), HYP, REF), (("chat", ""), HYP_AR, REF_AR)):
        row = next(r for r in result["rows"] if r["corpus"] == corpus)
        assert row["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
        assert row["chrf++"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score, abs=1e-9)
    assert 0 < rows[("stories", "en-fr")]["bleu"] < 100
    sig = result["signatures"]
    assert "nrefs:1" in sig["bleu"] and "tok:13a" in sig["bleu"] and "nw:2" in sig["chrf++"]


def test_running_score_equals_the_corpus_score(files):
    hyp, ref, _, _ = files
    records = [json.loads(line) for line in hyp.read_text().splitlines()]
    running = RunningScore(ref)
    assert running.add(records[:2])["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu([r["text"] for r in records[:2]], [[REF[r["source_index"]] for r in records[:2]]]).score)
    final = running.add(records[2:])
    order = sorted(records, key=lambda r: r["source_index"])
    assert final["bleu"] == pytest.approx(sacrebleu.corpus_bleu([r["text"] for r in order], [REF]).score, abs=1e-9)
    assert final["chrf++"] == pytest.approx(sacrebleu.corpus_chrf([r["text"] for r in order], [REF],
                                                                  word_order=2).score, abs=1e-9)


def test_cli_writes_strict_json_and_bad_inputs_are_one_line(files, tmp_path, capsys):
    hyp, ref, hyp2, _ = files
    out = tmp_path / "scores.json"
    assert run_cli("eval", "translation", "--hyp", hyp, "--ref", ref, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "en-fr" in printed and "bleu: nrefs:1|" in printed and "tok:13a" in printed
    saved = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert saved["rows"][0]["segments"] == 5
    # line order with unequal counts, a missing reference id, an unknown pairing field
    short = _write(tmp_path / "short.jsonl", [{"text": "x"}])
    for args, words in (([short, ref], "1 translations but 5 references"),
                        ([hyp2, _write(tmp_path / "r.jsonl", [{"id": "zz", "text": "y"}])], "no reference with id"),
                        ([hyp, ref, "--key", "nope"], "no field 'nope'")):
        assert run_cli("eval", "translation", "--hyp", args[0], "--ref", args[1], *args[2:]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0]
    assert run_cli("eval", "translation", "--hyp", hyp, hyp2, "--ref", ref) == 2
    assert "one reference file per translation file" in capsys.readouterr().err


def test_comet_is_optional_with_a_clear_error(files, tmp_path, capsys):
    pytest.importorskip("sacrebleu")
    try:
        import comet  # noqa: F401
        pytest.skip("unbabel-comet is installed")
    except ImportError:
        pass
    hyp, ref, _, _ = files
    assert run_cli("eval", "translation", "--hyp", hyp, "--ref", ref, "--comet", tmp_path) == 2
    assert "pip install unbabel-comet" in capsys.readouterr().err

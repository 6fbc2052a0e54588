"""The LLM judge: parsing messy real-looking answers, the judge prompt, the bundled story beginnings, retries and
failure counting, Table 3, and an end-to-end run against a real server with a tiny model."""

from __future__ import annotations

import csv
import json
import math

import pytest

from babelscope.data.client import Completion
from babelscope.eval.judge import (
    CUT,
    ParseError,
    bundled_prompts,
    judge_all,
    judge_message,
    judge_one,
    load_prompts,
    parse_scores,
    score_table,
)
from babelscope.files import Journal
from helpers import run_cli

G, C, S = "grammar", "creativity", "consistency"


@pytest.mark.parametrize("answer, scores", [
    ('{"grammar": 7, "creativity": 8, "consistency": 6}', (7, 8, 6)),
    ('Sure! Here is my evaluation:\n```json\n{"Grammar": "7/10", "Creativity": 8.5,\n "Consistency": '
     '{"score": 6, "reason": "keeps the cat"}}\n```', (7, 8.5, 6)),
    ('{"scores": {"grammar": 9, "creativity": 4, "consistency": 5}, "comment": "short"}', (9, 4, 5)),
    ("Grammar: 7/10\nCreativity: 8/10\nConsistency: 6/10", (7, 8, 6)),
    ("**Grammar** - 7\n**Creativity** - 8\n**Consistency** - 9", (7, 8, 9)),
    ("Grammar (0-10): 7\nCreativity (0-10): 5\nConsistency (0 to 10): 4", (7, 5, 4)),
    ("The grammar of the 2 sentences is fine. Grammar: 8. Creativity score is 6. Consistency: 7 out of 10.",
     (8, 6, 7)),
    ("Grammar: **8**/10, Creativity: 85/100, Consistency: 4/5", (8, 8.5, 8)),
    ("{'grammar': 7, 'creativity': 8, 'consistency': 6,}", (7, 8, 6)),  # Python dict, trailing comma
    ("1. Grammar: 6 - a few mistakes (\"he go\" twice).\n2. Creativity: 7\n3. Consistency: 3\nOverall: 5",
     (6, 7, 3)),
    ("| Criterion | Score |\n|---|---|\n| Grammar | 7 |\n| Creativity | 6 |\n| Consistency | 8 |", (7, 6, 8)),
    ("I would rate the grammar 7, the creativity 8 and the consistency 6.", (7, 8, 6)),
    ("Grammar: 5/10. On second thought, the cut sentence is completed well. Final scores - Grammar: 6, "
     "Creativity: 7, Consistency: 8", (6, 7, 8)),  # the final verdict wins
    ("القواعد: 7\nالإبداع: 6\nالاتساق: 8", (7, 6, 8)),
    ("grammar=10; creativity=0; consistency=9.5", (10, 0, 9.5)),
])
def test_parse_messy_answers(answer, scores):
    assert parse_scores(answer) == dict(zip((G, C, S), map(float, scores), strict=True))


@pytest.mark.parametrize("answer, scores", [
    ('{"grammar": 7, "grammar_comment": "3 errors", "creativity": 8, "consistency": 6}', (7, 8, 6)),
    ('{"grammar_comment": "3 errors", "grammar": 7, "creativity": 8, "consistency": 6}', (7, 8, 6)),
    # extra numeric keys never count; a `_score` (or " rating") suffix does, as the criterion itself
    ('{"grammar_errors": 3, "grammar": 7, "creativity_score": 8, "consistency": 6, "consistency_notes": "keeps '
     'the 2 cats", "creativity_rank": 1, "consistency-issues": 2}', (7, 8, 6)),
    ('{"Grammar Score": 9, "CREATIVITY": 4, " consistency ": 5, "word_count": 120}', (9, 4, 5)),
    ('{"scores": {"grammar": 6, "grammar_mistakes": 4, "creativity": 5, "consistency": 9}}', (6, 5, 9)),
])
def test_criterion_keys_match_exactly(answer, scores):
    assert parse_scores(answer) == dict(zip((G, C, S), map(float, scores), strict=True))


def test_a_comment_key_is_not_a_score():
    # only comment and count keys for grammar: it is missing, not read from "grammar_comment" or "grammar_errors"
    with pytest.raises(ParseError) as e:
        parse_scores('{"grammar_comment": "3 errors", "grammar_errors": 3, "creativity": 8, "consistency": 6}')
    assert e.value.missing == [G]
    with pytest.raises(ParseError):
        parse_scores("grammar_errors: 3, creativity: 8, consistency: 6")


@pytest.mark.parametrize("answer, missing", [
    ("I cannot grade this story.", [G, C, S]),
    ("Grammar: 7, Creativity: 8", [S]),  # a field left out
    ("Grammar: 12/10, Creativity: 8, Consistency: 6", [G]),  # above its own scale
    ("Grammar: 7. Creativity: 11. Consistency: 5", [C]),  # out of range
    ('{"grammar": -3, "creativity": 8, "consistency": "N/A"}', [G, S]),
    ("Grammar: 7/10, Creativity: 8/10, Consistency: great", [S]),
])
def test_unusable_answers_name_what_is_missing(answer, missing):
    with pytest.raises(ParseError) as e:
        parse_scores(answer)
    assert e.value.missing == missing


def test_judge_message_marks_the_cut():
    msg = judge_message("Tom saw a big", " dog. It ran away.", "ar")
    assert "Tom saw a big *** dog. It ran away." in msg and "written in Arabic" in msg
    assert "cut by ***" in msg and '"grammar"' in msg


def test_bundled_story_beginnings():
    prompts = load_prompts()
    assert [sum(p["lang"] == lang for p in prompts) for lang in ("en", "ar")] == [44, 44]
    assert len({p["id"] for p in prompts}) == 88
    for p in prompts:
        text = p["prompt"]
        assert CUT not in text and text == text.strip()
        assert text[-1] not in ".!?؟»\"", p["id"]  # cut mid-sentence
        assert 18 <= len(text.split()) <= 80, p["id"]
    from babelscope.corpus.script import lang_share

    assert all(lang_share(p["prompt"], "ar") > 0.99 for p in prompts if p["lang"] == "ar")
    assert len(load_prompts(lang="ar", limit=5)) == 5
    openers = load_prompts(bundled_prompts("openers.jsonl"))
    assert {p["lang"] for p in openers} == {"en", "ar"}


class ScriptedJudge:
    """A stand-in for the HTTP client that answers from a script (unit tests of the retry logic only)."""

    def __init__(self, answers):
        self.answers, self.calls = list(answers), []

    def chat(self, model, messages, **params):
        self.calls.append(messages)
        return Completion(self.answers.pop(0), "stop", 100, 10)


def test_unparsable_answers_are_asked_again_then_recorded(tmp_path):
    judge = ScriptedJudge(["Nice story!", "Grammar: 7, Creativity: 8, Consistency: 6"])
    v = judge_one(judge, "j", "Tom saw a", " dog.", "en", retries=2)
    assert v.scores == {G: 7.0, C: 8.0, S: 6.0} and len(v.answers) == 2 and v.prompt_tokens == 200
    assert judge.calls[1][-1]["role"] == "user" and "only a JSON object" in judge.calls[1][-1]["content"]

    items = [{"model": "m", "prompt_id": f"p{i}", "sample": 0, "lang": "en", "prompt": "Tom saw a",
              "completion": " dog."} for i in range(3)]
    judge = ScriptedJudge(['{"grammar": 5, "creativity": 5, "consistency": 5}'] + ["no idea"] * 6)
    with Journal(tmp_path / "j.jsonl", key=lambda r: (r["model"], r["prompt_id"], r["sample"])) as j:
        judge_all(judge, "j", items, j, concurrency=1, retries=2)
    rows = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len(judge.calls) == 7
    failed = [r for r in rows if r["scores"] is None]
    assert len(failed) == 2 and all(len(r["answers"]) == 3 and "unparsable" in r["error"] for r in failed)
    table = score_table(rows)
    assert table == [{"model": "m", G: 5.0, C: 5.0, S: 5.0, "judged": 1, "failed": 2}]


def test_score_table_averages():
    js = [{"model": "a", "scores": {G: 6, C: 7, S: 8}}, {"model": "a", "scores": {G: 8, C: 9, S: 4}},
          {"model": "b", "scores": None}]
    rows = score_table(js, ["a", "b"])
    assert rows[0] == {"model": "a", G: 7.0, C: 8.0, S: 6.0, "judged": 2, "failed": 0}
    assert rows[1]["failed"] == 1 and math.isnan(rows[1][G])


@pytest.mark.slow
def test_judge_cli_end_to_end(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """A real server with the tiny model judges: its answers cannot be parsed, so every item is retried, recorded
    as failed and counted (and the run, with nothing judged, exits 1); completions are two per prompt per model; a rerun resumes without new work."""
    import shutil

    from babelscope.serve import create_app
    from babelscope.serve.background import background_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-judge-secret-4242")
    runs = []
    for name in ("run_a", "run_b"):
        shutil.copytree(tiny_model_dir, tmp_path / name / "final")
        runs.append(str(tmp_path / name / "final"))
    out = tmp_path / "judge"
    app = create_app(tiny_model_dir, name="judge", device="cpu", truncate_prompts=True)
    with background_server(app) as url:
        args = ["eval", "judge", "--models", ",".join(runs), "--judge-url", url, "--judge-model", "judge",
                "--out", str(out), "--lang", "ar", "--limit", "2", "--max-new-tokens", "8", "--judge-retries", "1",
                "--device", "cpu"]
        main_rc = run_cli(*args)
        captured = capsys.readouterr()
        printed = captured.out
        # Every answer of the tiny judge is unparsable: the run is a failure (exit 1), its records all kept.
        assert main_rc == 1 and "no completion was judged" in captured.err
        completions = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
        assert len(completions) == 2 * 2 * 2
        assert {(c["model"], c["prompt_id"]) for c in completions} == \
            {(m, p) for m in ("run_a", "run_b") for p in ("ar-01", "ar-02")}
        judgements = [json.loads(line) for line in (out / "judgements.jsonl").read_text().splitlines()]
        assert len(judgements) == 8
        for j in judgements:
            assert (j["scores"] is None) == (j["error"] is not None)
            assert j["scores"] is not None or len(j["answers"]) == 2
        rows = list(csv.DictReader((out / "scores.csv").read_text().splitlines()))
        assert [r["model"] for r in rows] == ["run_a", "run_b"]
        assert sum(int(r["failed"]) + int(r["judged"]) for r in rows) == 8
        assert "grammar" in printed and "run_a" in printed
        # Resuming does no new work.
        assert run_cli(*args) == 1
        assert len((out / "judgements.jsonl").read_text().splitlines()) == 8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["args"]["judge_model"] == "judge"
    assert all("4242" not in f.read_text() for f in out.iterdir())  # the key is never written


def test_judge_cli_bad_input(tmp_path, tiny_model_dir, capsys):
    from babelscope.serve.background import free_port

    out = tmp_path / "j"
    args = ["eval", "judge", "--judge-model", "x", "--out", str(out), "--max-retries", "0"]
    assert run_cli(*args, "--models", tmp_path / "nope", "--judge-url", "http://127.0.0.1:1/v1") == 2
    assert "model directory does not exist" in capsys.readouterr().err
    assert run_cli(*args, "--models", tiny_model_dir, "--judge-url", f"http://127.0.0.1:{free_port()}/v1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach" in err[0]
    assert run_cli(*args, "--models", tiny_model_dir, "--judge-url", "http://x/v1", "--lang", "fr") == 2
    assert "no prompts with lang 'fr'" in capsys.readouterr().err
    assert not out.exists()


def test_completions_of_a_prompt_longer_than_the_context_keep_its_end(tiny_model_dir):
    """generate() drops the start of an over-long prompt (the judge's beginnings must end where they are cut)."""
    import torch

    from babelscope.generate import generate
    from babelscope.models import load_model

    model, tok = load_model(tiny_model_dir)
    prompt = " ".join(["the dog ran to the park."] * 60) + " the cat sat on the"
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    limit, new = model.config.max_position_embeddings, 4
    assert len(ids) > limit
    kept = torch.tensor([[tok.bos_token_id, *ids[-(limit - new - 1):]]])
    with torch.no_grad():
        expected = model.generate(input_ids=kept, attention_mask=torch.ones_like(kept), max_new_tokens=new,
                                  do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    want = tok.decode(expected[0, kept.shape[1]:], skip_special_tokens=True)
    assert generate(model, tok, [prompt], max_new_tokens=new, temperature=0)[0][0] == want
    assert tok.truncation_side == "right" and tok.padding_side == "right"

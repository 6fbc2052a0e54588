"""Secrets never reach disk: an endpoint that echoes the Authorization header, in error bodies and in its
answers, must not get the API key into any file `synth` or `eval judge` writes, nor onto stdout or stderr. And a
run whose every record failed exits non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli

KEY = "sk-echo-secret-31337"


class Echo:
    """A test-only OpenAI-compatible endpoint that repeats the caller's Authorization header: every other chat
    request is refused with it in the error body (HTTP 400), the rest get it inside the answer."""

    def __init__(self, refuse_all: bool = False):
        self.refuse_all = refuse_all
        self.posts = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        while (await receive()).get("more_body"):
            pass
        if scope["method"] == "GET":
            status, body = 200, {"data": [{"id": "m"}], "echo": auth}
        else:
            self.posts += 1
            if self.refuse_all or self.posts % 2:
                status, body = 400, {"error": {"message": f"bad request from {auth}", "header": auth}}
            else:
                text = f"قصة قصيرة رقم {self.posts} عن قطة. grammar: 7, creativity: 6, consistency: 5. {auth}"
                status, body = 200, {"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 3, "completion_tokens": 5}, "echo": auth}
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"x-echo", auth.encode())]})
        await send({"type": "http.response.body", "body": json.dumps(body, ensure_ascii=False).encode()})


def _leaks(root: Path, *texts: str) -> list[str]:
    found = [str(p) for p in root.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    return found + [f"stream {i}" for i, t in enumerate(texts) if KEY in t]


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("ECHO_KEY", KEY)
    return KEY


def test_synth_keeps_the_key_off_disk_and_off_the_terminal(tmp_path, key, capsys):
    from babelscope.serve.background import background_server

    out = tmp_path / "stories.jsonl"
    with background_server(Echo()) as url:
        code = run_cli("synth", "--base-url", url, "--model", "m", "--n", "6", "--out", out, "--api-key-env",
                       "ECHO_KEY", "--min-lang-share", "0", "--max-attempts", "1", "--concurrency", "1")
    printed = capsys.readouterr()
    assert code == 0, printed.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all("[redacted]" in r["text"] for r in rows)  # the echo arrived, and was cut out
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert any("[redacted]" in m for m in summary["runs"][-1]["errors"].values())
    assert _leaks(tmp_path, printed.out, printed.err) == []


def test_synth_whose_every_prompt_is_refused_exits_non_zero(tmp_path, key, capsys):
    from babelscope.serve.background import background_server

    out = tmp_path / "stories.jsonl"
    with background_server(Echo(refuse_all=True)) as url:
        code = run_cli("synth", "--base-url", url, "--model", "m", "--n", "3", "--out", out, "--api-key-env",
                       "ECHO_KEY", "--concurrency", "1")
    err = capsys.readouterr().err
    assert code == 1 and "every prompt failed" in err, err
    assert KEY not in err and not out.exists()


@pytest.mark.parametrize("refuse_all", [False, True], ids=["mixed", "all-refused"])
def test_judge_keeps_the_key_off_disk_and_fails_when_nothing_was_judged(tmp_path, key, capsys, tiny_model_dir,
                                                                        refuse_all):
    from babelscope.serve.background import background_server

    out = tmp_path / "judge"
    with background_server(Echo(refuse_all=refuse_all)) as url:
        code = run_cli("eval", "judge", "--models", tiny_model_dir, "--judge-url", url, "--judge-model", "m",
                       "--out", out, "--api-key-env", "ECHO_KEY", "--limit", "2", "--lang", "en",
                       "--max-new-tokens", "3", "--samples", "1", "--judge-retries", "0", "--device", "cpu")
    printed = capsys.readouterr()
    judgements = [json.loads(line) for line in (out / "judgements.jsonl").read_text().splitlines()]
    assert len(judgements) == 2
    assert any("[redacted]" in json.dumps(j, ensure_ascii=False) for j in judgements)
    assert _leaks(tmp_path, printed.out, printed.err) == []
    if refuse_all:
        assert code == 1 and "no completion was judged" in printed.err, printed.err
    else:
        assert code == 0, printed.err

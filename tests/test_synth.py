"""Synthetic stories: the prompt and its feature draws, story checks, and runs against a real server with a tiny
model behind a test-only wrapper that answers 429 now and then (retries, no duplicates, resume, bad endpoints)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time

import httpx
import pytest

from babelscope.corpus.script import lang_share
from babelscope.data.client import OpenAIClient, backoff_delay, retry_after
from babelscope.data.synth import (
    FEATURES,
    SynthConfig,
    build_prompt,
    check_story,
    content_hash,
    draw_features,
    summary_path,
    synth_prompt,
    synthesize,
    word_lists,
)
from babelscope.errors import UserError

# ---- the prompt ------------------------------------------------------------------------------------------------


def test_features_follow_table_6_independently():
    rng = random.Random(0)
    draws = [set(draw_features(rng)) for _ in range(20000)]
    for name, (p, _) in FEATURES.items():
        assert abs(sum(name in d for d in draws) / len(draws) - p) < 0.015, name
    both = sum({"Dialogue", "Twist"} <= d for d in draws) / len(draws)
    assert abs(both - 0.6 * 0.3) < 0.015  # independent draws
    table6 = {"Dialogue": 0.6, "BadEnding": 0.3, "Conflict": 0.1, "MoralValue": 0.1, "Foreshadowing": 0.1, "Twist": 0.3}
    assert {k: v[0] for k, v in FEATURES.items()} == table6


def test_prompt_text():
    p = build_prompt("ar", "قفز", "قطة", "سعيد", ["Dialogue", "BadEnding"])
    assert p.startswith("Write a short story (3-5 paragraphs) in Arabic language")
    assert 'the verb "قفز", the noun "قطة" and the adjective "سعيد"' in p
    assert ("The story should have the following features: the story should contain at least one dialogue, "
            "the story has a bad ending.") in p
    assert p.endswith("Remember to write in Arabic and to only use simple words!")
    assert "features" not in build_prompt("en", "run", "dog", "big", [])


def test_prompts_are_stable_and_use_the_target_language_words():
    ar = word_lists("ar")
    assert min(len(v) for v in ar.values()) > 50
    a, b = synth_prompt(17, "ar", seed=3), synth_prompt(17, "ar", seed=3)
    assert a == b and a.id == "synth-ar-3-0000017" and a != synth_prompt(18, "ar", seed=3)
    for i in range(50):
        p = synth_prompt(i, "ar")
        assert all(lang_share(w, "ar") == 1.0 for w in p.words.values())
        assert p.words["verb"] in ar["verb"] and p.words["noun"] in ar["noun"]
        e = synth_prompt(i, "en")
        assert all(lang_share(w, "en") == 1.0 for w in e.words.values())
    with pytest.raises(UserError, match="expected one of ar, en"):
        word_lists("fr")


def test_story_checks_and_hash():
    assert check_story("كان يا ما كان، ولد صغير.", "ar", 0.9, "stop") is None
    assert check_story("Once upon a time كان", "ar", 0.9, "stop") == "language"
    assert check_story("كان ولد", "ar", 0.9, "length") == "truncated"
    assert check_story("كان ولد", "ar", 0.9, "length", keep_truncated=True) is None
    assert check_story("  \n", "ar", 0.0, "stop") == "empty"
    assert content_hash("A  cat\nran.") == content_hash("a cat ran.") != content_hash("a cat ran!")


def test_retry_after_and_backoff():
    assert retry_after(httpx.Headers({"retry-after": "3"})) == 3.0
    assert retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert 50 < retry_after(httpx.Headers({"retry-after": _http_date(60)})) <= 60
    assert retry_after(httpx.Headers({})) is None and retry_after(httpx.Headers({"retry-after": "soon"})) is None
    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, 8.0, rng) for a in range(10) for _ in range(50)]
    assert all(0 <= d <= 8.0 for d in delays) and max(delays) > 4


def _http_date(seconds: float) -> str:
    import email.utils

    return email.utils.formatdate(time.time() + seconds, usegmt=True)


# ---- against a real server -------------------------------------------------------------------------------------


class Flaky:
    """Test-only ASGI wrapper: every `every`-th POST gets `status` (with Retry-After: 0); optional latency."""

    def __init__(self, app, every: int = 0, status: int = 429, delay: float = 0.0):
        self.app, self.every, self.status, self.delay = app, every, status, delay
        self.posts = self.failed = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.every and self.posts % self.every == 0:
                self.failed += 1
                await send({"type": "http.response.start", "status": self.status,
                            "headers": [(b"content-type", b"application/json"), (b"retry-after", b"0")]})
                await send({"type": "http.response.body", "body": b'{"error": {"message": "slow down"}}'})
                return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def app(tiny_model_dir):
    from babelscope.serve import create_app

    # The tiny model's context (128 tokens) is shorter than the study's prompt: keep the prompt's end.
    return create_app(tiny_model_dir, name="tiny", device="cpu", truncate_prompts=True)


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _cfg(out, **kw) -> SynthConfig:
    base = dict(out=str(out), base_url="http://127.0.0.1", model="tiny", n=12, lang="ar", concurrency=3, max_tokens=6, min_lang_share=0.0,
                keep_truncated=True)
    return SynthConfig(**{**base, **kw})


@pytest.mark.slow
def test_retries_on_429_and_503_and_never_writes_twice(tmp_path, app):
    from babelscope.serve.background import background_server

    flaky = Flaky(app, every=3)
    out = tmp_path / "s.jsonl"
    with background_server(flaky) as url, OpenAIClient(url, backoff=0.01) as client:
        stats = synthesize(client, _cfg(out))
        assert flaky.failed >= 4 and client.retries == flaky.failed == stats.http_retries
        flaky.status = 503
        more = synthesize(client, _cfg(out, n=16))  # a longer run on the same file: only the new prompts
    rows = _rows(out)
    assert stats.written == 12 and more.already == 12 and more.written == 4
    assert sorted(r["index"] for r in rows) == list(range(16)) and len({r["id"] for r in rows}) == 16
    assert all(r["usage"]["completion_tokens"] > 0 for r in rows)
    summary = json.loads(summary_path(out).read_text())
    assert len(summary["runs"]) == 2 and summary["total"]["written"] == 16
    kept = sum(r["usage"]["completion_tokens"] for r in rows)  # rejected attempts (a repeat, ...) cost too
    assert summary["total"]["completion_tokens"] >= kept
    if not stats.rejected and not more.rejected:
        assert summary["total"]["completion_tokens"] == kept


@pytest.mark.slow
def test_rejected_stories_are_retried_then_counted(tmp_path, app):
    from babelscope.serve.background import background_server

    out = tmp_path / "s.jsonl"
    with background_server(app) as url, OpenAIClient(url) as client:
        # Greedy one-token stories repeat; the random model rarely writes pure Arabic.
        dup = synthesize(client, _cfg(tmp_path / "dup.jsonl", n=20, max_tokens=1, temperature=0.0))
        lang = synthesize(client, _cfg(out, n=10, min_lang_share=0.95, keep_truncated=False, max_tokens=8,
                                       price_in=1.0, price_out=2.0))
    texts = [r["text"] for r in _rows(tmp_path / "dup.jsonl")]
    assert len(set(map(content_hash, texts))) == len(texts) == dup.written
    assert dup.rejected.get("duplicate", 0) > 0
    for s, n in ((dup, 20), (lang, 10)):
        # Every prompt ends written or given up; every attempt is either kept or rejected with a reason.
        assert s.written + sum(s.gave_up.values()) == n
        assert s.attempts == s.written + sum(s.rejected.values())
    assert sum(lang.gave_up.values()) > 0 and set(lang.rejected) <= {"language", "truncated", "empty"}
    kept = _rows(out) if out.exists() else []
    # A kept story took `attempts` tries; a prompt given up took all 3.
    assert lang.attempts == sum(r["attempts"] for r in kept) + 3 * sum(lang.gave_up.values())
    assert lang.cost(1.0, 2.0) == pytest.approx((lang.prompt_tokens + 2 * lang.completion_tokens) / 1e6)
    assert all(lang_share(r["text"], "ar") >= 0.95 for r in kept)


def _synth_cli(url: str, out, *extra: str, env: dict | None = None, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "babelscope.cli", "synth", "--base-url", url, "--model", "tiny", "--lang", "ar",
           "--out", str(out), "--max-tokens", "4", "--min-lang-share", "0", "--keep-truncated", *extra]
    return subprocess.Popen(cmd, env={**os.environ, "BABELSCOPE_NO_PROGRESS": "1", **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_synth_cli_killed_and_resumed(tmp_path, app):
    from babelscope.serve.background import background_server

    out = tmp_path / "s.jsonl"
    flaky = Flaky(app, every=4, delay=0.15)
    with background_server(flaky) as url:
        proc = _synth_cli(url, out, "--n", "30", "--concurrency", "2")
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 4:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = out.read_bytes().count(b"\n")
        assert 4 <= first < 30
        flaky.delay = 0.0
        done = _synth_cli(url, out, "--n", "30", "--concurrency", "2")
        _, err = done.communicate(timeout=120)
        assert done.returncode == 0, err
        assert f"({first} already in" in err and "HTTP retries" in err
    rows = _rows(out)
    assert sorted(r["index"] for r in rows) == list(range(30))
    assert len({r["id"] for r in rows}) == 30


@pytest.mark.slow
def test_bad_endpoints_are_one_line_errors(tmp_path, tiny_model_dir):
    from babelscope.serve import create_app
    from babelscope.serve.background import background_server, free_port

    out = tmp_path / "s.jsonl"
    proc = _synth_cli(f"http://127.0.0.1:{free_port()}/v1", out, "--n", "2", "--max-retries", "1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and "cannot reach" in err

    secret = "sk-right-key-0000"
    with background_server(create_app(tiny_model_dir, name="tiny", device="cpu", api_key=secret)) as url:
        proc = _synth_cli(url, out, "--n", "2", "--api-key-env", "SYNTH_KEY", env={"SYNTH_KEY": "sk-wrong-9999"})
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and len(err.strip().splitlines()) == 1
        assert "unauthorised (HTTP 401)" in err and "$SYNTH_KEY" in err and "9999" not in err
        proc = _synth_cli(url, out, "--n", "2", "--api-key-env", "SYNTH_KEY", "--model", "nope",
                          env={"SYNTH_KEY": secret})
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and "is not served by" in err
    assert list(tmp_path.iterdir()) == []  # nothing partial left behind

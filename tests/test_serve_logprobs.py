"""Log-probabilities through the server equal the model's own, in the OpenAI shapes harnesses read; the server
stays valid under load (a bounded queue, time limits, JSON 400s for bad numbers)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from babelscope.serve import Limits, create_app
from babelscope.serve.background import background_server
from babelscope.serve.engine import Engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tiny_model_dir) -> Engine:
    return Engine(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def http(tiny_model_dir, engine):
    with background_server(create_app(tiny_model_dir, name="tiny", engine=engine)) as base, \
            httpx.Client(base_url=base, timeout=60) as client:
        yield client


def direct_logprobs(engine: Engine, ids: list[int]) -> list[float]:
    """log p(token i | tokens < i) for i >= 1, straight from the model (log-softmax and gather)."""
    with torch.no_grad():
        logits = engine.model(input_ids=torch.tensor([ids])).logits[0]
    lp = torch.log_softmax(logits.double(), dim=-1)
    return [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))]


def post(http, path: str, body: dict) -> dict:
    r = http.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_echo_scores_the_prompt(http, engine):
    prompt = "the cat sat on the mat. قال تيم"
    out = post(http, "/completions", {"prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 3})
    choice = out["choices"][0]
    lp = choice["logprobs"]
    ids = engine.tok(prompt)["input_ids"]
    assert choice["text"] == prompt and out["usage"]["completion_tokens"] == 0
    assert len(lp["tokens"]) == len(ids) and lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["token_logprobs"][1:] == pytest.approx(direct_logprobs(engine, ids), abs=1e-5)
    for chosen, token, top in zip(lp["token_logprobs"][1:], lp["tokens"][1:], lp["top_logprobs"][1:], strict=True):
        assert 3 <= len(top) <= 4 and top[token] == chosen  # the N likeliest, plus the chosen token
        assert max(top.values()) >= chosen
    # text_offset: where each token's text starts in the returned text (BOS has no text)
    offsets = lp["text_offset"]
    assert offsets[0] == 0 and offsets == sorted(offsets) and offsets[-1] < len(prompt)
    assert prompt[offsets[1]:offsets[2]] == lp["tokens"][1]


def test_token_id_prompts_are_used_as_given(http, engine):
    ids = engine.tok("the dog ran to the park")["input_ids"][1:]  # no BOS: the client decides
    single = post(http, "/completions", {"prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 1})
    batch = post(http, "/completions", {"prompt": [ids, ids[:3]], "max_tokens": 0, "echo": True, "logprobs": 1})
    want = direct_logprobs(engine, ids)
    assert single["choices"][0]["logprobs"]["token_logprobs"][1:] == pytest.approx(want, abs=1e-5)
    assert [len(c["logprobs"]["tokens"]) for c in batch["choices"]] == [len(ids), 3]
    assert batch["choices"][1]["logprobs"]["token_logprobs"][1:] == pytest.approx(want[:2], abs=1e-5)
    # How a harness scores a continuation: echo with one new token, whose entry it drops.
    harness = post(http, "/completions", {"prompt": [ids], "max_tokens": 1, "echo": True, "logprobs": 1,
                                          "temperature": 0, "seed": 1234})
    lp = harness["choices"][0]["logprobs"]
    assert len(lp["token_logprobs"]) == len(ids) + 1
    assert lp["token_logprobs"][1:len(ids)] == pytest.approx(want, abs=1e-5)
    # greedy: the new token is the likeliest one
    assert lp["token_logprobs"][-1] == pytest.approx(max(lp["top_logprobs"][-1].values()), abs=1e-6)


def test_completion_and_chat_logprobs_match_the_model(http, engine):
    prompt = "the sun was warm"
    out = post(http, "/completions", {"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 2})
    choice = out["choices"][0]
    lp = choice["logprobs"]
    ids = engine.tok(prompt)["input_ids"]
    new = engine.tok(choice["text"], add_special_tokens=False)["input_ids"]
    n = len(lp["tokens"])
    assert 1 <= n <= 6 and n >= len(new) and lp["text_offset"][0] == len(prompt)  # offsets into prompt + text
    generated = engine.model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                                      pad_token_id=engine.tok.pad_token_id)[0, len(ids):].tolist()[:n]
    assert lp["token_logprobs"] == pytest.approx(direct_logprobs(engine, ids + generated)[len(ids) - 1:], abs=1e-5)

    chat = post(http, "/chat/completions", {"messages": [{"role": "user", "content": prompt}], "max_tokens": 5,
                                            "temperature": 0, "logprobs": True, "top_logprobs": 2})
    content = chat["choices"][0]["logprobs"]["content"]
    assert 1 <= len(content) == chat["usage"]["completion_tokens"] <= 5
    assert [c["logprob"] for c in content] == pytest.approx(lp["token_logprobs"][:len(content)], abs=1e-6)
    for c in content:
        assert len(c["top_logprobs"]) == 2 and c["top_logprobs"][0]["logprob"] >= c["logprob"] - 1e-6
        assert bytes(c["bytes"]).decode("utf-8", "replace") == c["token"] or c["token"].startswith("bytes:")
    plain = post(http, "/chat/completions", {"messages": [{"role": "user", "content": prompt}], "max_tokens": 3})
    assert plain["choices"][0]["logprobs"] is None


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"prompt": "x", "seed": 2 ** 70}, "seed", "less than or equal"),
    ({"prompt": "x", "seed": "abc"}, "seed", "integer"),
    ({"prompt": "x", "logprobs": 50}, "logprobs", "less than or equal"),
    ({"prompt": "x", "max_tokens": -1}, "max_tokens", "greater than or equal"),
    ({"prompt": [1, 2, 10 ** 9]}, "prompt", "outside this model's vocabulary"),
    ({"prompt": []}, "prompt", "must not be empty"),
    ({"prompt": "the cat " * 400, "max_tokens": 2}, "prompt", "context is 128 tokens"),
    ({"prompt": "x", "stream": True, "logprobs": 1}, "stream", "no logprobs"),
])
def test_bad_numbers_are_json_400s(http, body, param, words):
    r = http.post("/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"]


def test_chat_errors_and_malformed_bodies(http):
    r = http.post("/chat/completions", json={"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})
    assert r.status_code == 400 and "needs logprobs" in r.json()["error"]["message"]
    r = http.post("/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = http.get("/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


def test_prompt_and_body_caps(tiny_model_dir, engine):
    app = create_app(tiny_model_dir, engine=engine, limits=Limits(max_prompt_bytes=100))
    with background_server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        r = client.post("/completions", json={"prompt": "é" * 60, "max_tokens": 1})
        assert r.status_code == 400 and "120 bytes" in r.json()["error"]["message"]
        r = client.post("/completions", json={"prompt": "x" * 100_000, "max_tokens": 1})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        assert client.post("/completions", json={"prompt": "hi", "max_tokens": 1}).status_code == 200


def test_full_queue_and_time_limit_answer_503_with_retry_after(tiny_model_dir, engine):
    app = create_app(tiny_model_dir, engine=engine, limits=Limits(queue=1, timeout=1.0))
    body = {"prompt": "the cat", "max_tokens": 2}
    with background_server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        with engine.lock:  # the model is busy
            first: list = []
            waiter = threading.Thread(target=lambda: first.append(client.post("/completions", json=body)))
            waiter.start()
            while client.get(base.removesuffix("/v1") + "/health").json()["in_flight"] < 1:
                time.sleep(0.01)
            full = client.post("/completions", json=body)  # the queue (1) is taken
            waiter.join()
        assert full.status_code == 503 and full.headers["retry-after"] == "1"
        assert full.json()["error"]["code"] == "server_busy"
        # the first one waited past its time limit for the model: a 503 too, not a hang
        assert first[0].status_code == 503 and "time limit" in first[0].json()["error"]["message"]
        assert client.post("/completions", json=body).status_code == 200  # free again



def test_a_request_frees_its_queue_slot_before_its_answer_is_sent():
    """A client that reads an answer and asks again at once must find the slot free: the slot is given back
    with the response's last bytes, not when the handler's coroutine returns afterwards."""
    import asyncio

    from babelscope.serve.limits import Admission, Gauge

    gauge, seen = Gauge(), []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        seen.append(("after the answer", gauge.count))

    async def send(message):
        if message["type"] == "http.response.body":
            seen.append(("while sending", gauge.count))

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = Admission(app, Limits(queue=1), gauge)
    asyncio.run(middleware({"type": "http", "path": "/v1/completions", "headers": []}, receive, send))
    assert seen == [("while sending", 0), ("after the answer", 0)] and gauge.count == 0

def _valid(r: httpx.Response, kind: str) -> bool:
    if r.status_code == 503:
        return r.headers.get("retry-after") == "1" and r.json()["error"]["type"] == "server_error"
    if kind == "bad":
        return r.status_code == 400 and r.json()["error"]["param"] == "seed"
    if r.status_code != 200:
        return False
    out = r.json()
    if kind == "chat":
        return out["object"] == "chat.completion" and isinstance(out["choices"][0]["message"]["content"], str)
    lp = out["choices"][0]["logprobs"]
    return out["object"] == "text_completion" and len(lp["tokens"]) == len(lp["token_logprobs"]) > 0


def test_load_200_requests_over_16_connections(tiny_model_dir, engine):
    """Every answer is a valid completion, a JSON 400 for the bad ones, or a clean 503 (queue of 4)."""
    app = create_app(tiny_model_dir, engine=engine, limits=Limits(queue=4, timeout=30))
    bodies = [("/completions", "completion", {"prompt": "the dog", "max_tokens": 3, "logprobs": 2, "echo": True}),
              ("/chat/completions", "chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}),
              ("/completions", "bad", {"prompt": "x", "seed": 2 ** 65})]
    with background_server(app) as base, \
            httpx.Client(base_url=base, timeout=60, limits=httpx.Limits(max_connections=16)) as client:
        def one(i: int) -> tuple[str, httpx.Response]:
            path, kind, body = bodies[i % len(bodies)]
            return kind, client.post(path, json=body)

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(200)))
    assert len(answers) == 200
    bad = [(kind, r.status_code, r.text[:200]) for kind, r in answers if not _valid(r, kind)]
    assert not bad, bad[:3]
    assert any(r.status_code == 200 for _, r in answers)

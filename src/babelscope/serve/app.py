"""An OpenAI-compatible HTTP API for babelscope models: `/v1/models`, `/v1/completions`, `/v1/chat/completions`.

Enough of the API for the OpenAI Python client, evaluation harnesses, `babelscope synth` and the judge:
sampling (temperature, top_p, seed, n), stop strings, token usage, server-sent-event streaming, and
log-probabilities (`logprobs` with top-N alternatives and `text_offset`, `echo`, `max_tokens: 0` to score a
prompt; chat `logprobs`/`top_logprobs`). Prompts are texts (BOS added, as the tokenizer does) or token ids (used
as given). Our story models are base models without a chat template, so a chat is flattened into plain text
(the messages' contents, one paragraph each) that the model continues; a tokenizer with a chat template uses it.
One model is served, requests take turns on it (`serve.engine`), and `serve.limits` bounds the load.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from babelscope.serve.engine import Engine, Sample
from babelscope.serve.limits import Admission, Gauge, Limits
from babelscope.serve.protocol import (
    APIError,
    ChatRequest,
    CompletionRequest,
    _Request,
    chat_prompt,
    prompt_bytes,
    prompt_list,
    served_name,
)

__all__ = ["Engine", "create_app", "served_name"]


@dataclass
class Served:
    """What the routes share: the engine, the model id clients use, and the limits."""

    engine: Engine
    name: str
    limits: Limits
    created: int = field(default_factory=lambda: int(time.time()))
    in_flight: Gauge = field(default_factory=Gauge)

    def card(self) -> dict:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "babelscope",
                "max_model_len": self.engine.limit}

    def check(self, req: _Request, prompts: list) -> None:
        """404 for another model's name; 400 for a prompt larger than the byte cap."""
        if req.model not in (None, self.name):
            raise APIError(404, f"model {req.model!r} does not exist; this server serves {self.name!r}", "model",
                           "model_not_found")
        size = prompt_bytes(prompts)
        if size > self.limits.max_prompt_bytes:
            raise APIError(400, f"prompt is {size} bytes; this server accepts at most {self.limits.max_prompt_bytes} "
                                "(serve --max-prompt-bytes)", "prompt", "prompt_too_large")


def create_app(model_dir: str | Path, *, name: str | None = None, device: str = "auto",
               api_key: str | None = None, truncate_prompts: bool = False, engine: Engine | None = None,
               limits: Limits | None = None):
    """The FastAPI app serving one model directory; `api_key` (if given) is required as a bearer token,
    `truncate_prompts` drops the start of prompts longer than the context instead of answering 400, and
    `limits` bound the queue, the time per request and the prompt size."""
    from fastapi import FastAPI

    engine = engine or Engine(model_dir, device=device, truncate_prompts=truncate_prompts)
    served = Served(engine, name or served_name(model_dir), limits or Limits())
    app = FastAPI(title="babelscope", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.in_flight = engine, served.in_flight
    _error_handlers(app)
    _auth(app, api_key)
    _model_routes(app, served)
    _completion_route(app, served)
    _chat_route(app, served)
    app.add_middleware(Admission, limits=served.limits, gauge=served.in_flight)
    return app


# ---- app pieces -------------------------------------------------------------------------------------------------

def _error_handlers(app) -> None:
    """Every error is OpenAI-style JSON: ours, validation (400 naming the field), unknown paths, and crashes."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def reply(err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return reply(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ())[1:] if not str(p).startswith(("list[", "function-"))]
        param = ".".join(loc) or None
        return reply(APIError(400, f"{param or 'request'}: {first.get('msg', 'invalid request')}", param))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return reply(APIError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        return reply(APIError(500, f"internal error ({type(exc).__name__})", code="internal_error"))


def _auth(app, api_key: str | None) -> None:
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def _check_key(request: Request, call_next):
        authorised = request.headers.get("authorization", "") == f"Bearer {api_key}"
        if api_key and request.url.path.startswith("/v1") and not authorised:
            err = APIError(401, "invalid or missing API key", code="invalid_api_key")
            return JSONResponse(err.body(), status_code=401)
        return await call_next(request)


def _model_routes(app, served: Served) -> None:
    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": served.name, "in_flight": served.in_flight.count,
                "queue": served.limits.queue}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [served.card()]}

    @app.get("/v1/models/{model_id:path}")
    def model(model_id: str) -> dict:
        if model_id != served.name:
            raise APIError(404, f"model {model_id!r} does not exist", "model", "model_not_found")
        return served.card()


def _deadline(request: Request) -> float | None:
    return request.scope.get("state", {}).get("deadline")


def _completion_route(app, served: Served) -> None:
    @app.post("/v1/completions")
    def completions(req: CompletionRequest, request: Request):
        prompts = prompt_list(req.prompt)
        if not prompts:
            raise APIError(400, "prompt must not be empty", "prompt")
        served.check(req, prompts)
        rid = f"cmpl-{uuid.uuid4().hex[:24]}"
        if req.stream:
            if len(prompts) > 1 or req.n > 1 or req.echo or req.logprobs is not None:
                raise APIError(400, "streaming supports one prompt, n=1 and no logprobs or echo", "stream")
            ids, max_new = served.engine.budget(served.engine.encode(prompts[0]), req.max_tokens)
            return _sse(_stream_chunks(served, "text_completion", rid, ids, req, max_new, _deadline(request)))
        choices, n_in, n_out = [], 0, 0
        for prompt in prompts:
            ids, max_new = served.engine.budget(served.engine.encode(prompt), req.max_tokens)
            n_in += len(ids)
            samples = served.engine.sample(ids, req, max_new, _deadline(request))
            scored = _scores(served, ids, samples, req.logprobs, _deadline(request))
            for sample, sc in zip(samples, scored, strict=True):
                choices.append(_completion_choice(served, len(choices), ids, sample, req, sc))
                n_out += sample.n_tokens
        return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": served.name,
                "choices": choices, "usage": _usage(n_in, n_out)}


def _scores(served: Served, ids: list[int], samples: list[Sample], top_n: int | None, deadline: float | None):
    """The scored prompt + completion of each sample (None each when no log-probabilities were asked for)."""
    if top_n is None:
        return [None] * len(samples)
    unique = list(dict.fromkeys(tuple(ids + s.ids) for s in samples))  # n copies of one prompt score once
    scored = dict(zip(unique, served.engine.score([list(u) for u in unique], top_n, deadline), strict=True))
    return [scored[tuple(ids + s.ids)] for s in samples]


def _completion_choice(served: Served, index: int, ids: list[int], sample: Sample, req: CompletionRequest,
                       scored) -> dict:
    from babelscope.serve.logprobs import completion_logprobs, text_offsets

    tok = served.engine.tok
    text = sample.text
    if req.echo:
        text = tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) + text
    logprobs = None
    if scored is not None:
        offsets = text_offsets(tok, scored.ids)[1]
        logprobs = completion_logprobs(tok, scored, 0 if req.echo else len(ids), offsets, len(ids) + sample.kept)
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": sample.finish}


def _chat_route(app, served: Served) -> None:
    @app.post("/v1/chat/completions")
    def chat_completions(req: ChatRequest, request: Request):
        from babelscope.serve.logprobs import chat_logprobs

        prompt = chat_prompt(served.engine.tok, req.messages)
        served.check(req, [prompt])
        if req.top_logprobs is not None and not req.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", "top_logprobs")
        ids, max_new = served.engine.budget(served.engine.encode(prompt),
                                            req.max_completion_tokens or req.max_tokens, None)
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if req.stream:
            if req.n > 1 or req.logprobs:
                raise APIError(400, "streaming supports n=1 and no logprobs", "stream")
            return _sse(_stream_chunks(served, "chat.completion.chunk", rid, ids, req, max_new, _deadline(request)))
        samples = served.engine.sample(ids, req, max_new, _deadline(request))
        scored = _scores(served, ids, samples, (req.top_logprobs or 0) if req.logprobs else None, _deadline(request))
        choices = [{"index": i, "message": {"role": "assistant", "content": s.text},
                    "logprobs": chat_logprobs(served.engine.tok, sc, len(ids), len(ids) + s.kept) if sc else None,
                    "finish_reason": s.finish} for i, (s, sc) in enumerate(zip(samples, scored, strict=True))]
        return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": served.name,
                "choices": choices, "usage": _usage(len(ids), sum(s.n_tokens for s in samples))}


# ---- response pieces ----------------------------------------------------------------------------------------------

def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _sse(chunks: Iterator[dict]):
    from fastapi.responses import StreamingResponse

    def body() -> Iterator[str]:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
    return StreamingResponse(body(), media_type="text/event-stream")


def _stream_chunks(served: Served, kind: str, rid: str, ids: list[int], req: _Request, max_new: int,
                   deadline: float | None) -> Iterator[dict]:
    base = {"id": rid, "object": kind, "created": int(time.time()), "model": served.name}
    chat = kind == "chat.completion.chunk"
    if chat:
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}
    n_tokens = 0
    for piece, finish, count in served.engine.stream(ids, req, max_new, deadline):
        n_tokens = count or n_tokens
        if piece or finish:
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if chat:
                choice["delta"] = {"content": piece} if piece else {}
            else:
                choice.update(text=piece, logprobs=None)
            yield {**base, "choices": [choice]}
    if (req.stream_options or {}).get("include_usage"):
        yield {**base, "choices": [], "usage": _usage(len(ids), n_tokens)}

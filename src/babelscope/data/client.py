"""A small OpenAI-compatible HTTP client (chat and text completions) with retries, for synth and the judge.

Any endpoint that speaks the OpenAI API works: OpenAI, Cohere's compatibility API, vLLM, llama.cpp, or
`babelscope serve`. `base_url` is the API root including its version, e.g. `http://127.0.0.1:8000/v1`.
Rate limits (429), server errors (5xx), timeouts and dropped connections are retried with exponential backoff
and full jitter, honouring Retry-After. The API key is sent as a bearer token and never printed, logged or
stored; errors name the environment variable it came from instead. Everything the endpoint sends back (answers,
error bodies) is redacted of the key before anyone sees it, since a misconfigured server or proxy may echo the
Authorization header.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from babelscope.errors import UserError

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


class RequestError(Exception):
    """A request the server refused for this input (HTTP 400, 413, 422, ...): retrying it would not help."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass
class Completion:
    """One generated text with the token usage the server reported (zeros when it reported none)."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw: dict = field(default_factory=dict, repr=False)


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), if given."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0, min(cap, base * 2 ** attempt))


REDACTED = "[redacted]"


def redact(obj: Any, secret: str | None) -> Any:
    """`obj` (text, or JSON: dicts and lists of text) with every occurrence of `secret` replaced by [redacted]."""
    if not secret:
        return obj
    if isinstance(obj, str):
        return obj.replace(secret, REDACTED)
    if isinstance(obj, dict):
        return {redact(k, secret): redact(v, secret) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, secret) for v in obj]
    return obj


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message") if isinstance(err, dict) else err
        return " ".join(str(msg or body).split())[:300]
    except ValueError:
        return " ".join(response.text.split())[:300] or response.reason_phrase


class OpenAIClient:
    """Thread-safe client for `/models`, `/chat/completions` and `/completions` of one endpoint."""

    def __init__(self, base_url: str, api_key: str | None = None, *, key_name: str = "OPENAI_API_KEY",
                 timeout: float = 120.0, max_retries: int = 6, backoff: float = 1.0, max_backoff: float = 60.0,
                 max_retry_after: float = 300.0, seed: int | None = None,
                 sleep: Callable[[float], None] = time.sleep, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.key_name = key_name
        self.has_key = bool(api_key)
        self._secret = api_key or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.max_retry_after = max_retry_after
        self._rng = random.Random(seed)
        self._sleep = sleep
        self._lock = threading.Lock()
        self.retries = 0  # requests retried (429, 5xx, connection errors), for the run summary
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _message(self, response: httpx.Response) -> str:
        """The server's error text, without the key."""
        return redact(_error_message(response), self._secret)

    def _fatal(self, response: httpx.Response) -> UserError:
        url = redact(str(response.request.url), self._secret)
        if response.status_code in (401, 403):
            where = f"check the API key in ${self.key_name}" if self.has_key else f"${self.key_name} is not set"
            return UserError(f"unauthorised (HTTP {response.status_code}) at {url}; {where}")
        hint = "" if self.base_url.endswith(("/v1", "/v1beta")) else " (does --base-url need to end in /v1?)"
        return UserError(f"HTTP {response.status_code} at {url}: {self._message(response)}{hint}")

    def request(self, method: str, path: str, payload: dict | None = None) -> dict:
        """Send one request, retrying transient failures; returns the JSON body.

        Raises UserError for what no retry can fix for any input (bad key, unknown model or path, endpoint down
        after all retries) and RequestError for a refusal of this particular request.
        """
        for attempt in range(self.max_retries + 1):
            wait: float | None = None
            try:
                with self._lock:
                    self.requests += 1
                response = self._http.request(method, path, json=payload)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                if attempt == self.max_retries:
                    raise UserError(redact(f"cannot reach {self.base_url} ({type(e).__name__}: {e})",
                                           self._secret)) from None
            else:
                status = response.status_code
                if status < 400:
                    try:
                        return redact(response.json(), self._secret)
                    except ValueError:
                        raise UserError(f"{self.base_url}{path} did not answer JSON; is --base-url an "
                                        "OpenAI-compatible API?") from None
                if status not in RETRY_STATUS and status < 500:
                    if status in (401, 403, 404, 405):
                        raise self._fatal(response)
                    raise RequestError(status, self._message(response))
                if attempt == self.max_retries:
                    raise UserError(f"gave up after {self.max_retries} retries at {self.base_url}{path}: "
                                    f"HTTP {status} {self._message(response)}")
                wait = retry_after(response.headers)
            with self._lock:
                self.retries += 1
                delay = backoff_delay(attempt, self.backoff, self.max_backoff, self._rng)
            self._sleep(delay if wait is None else min(wait, self.max_retry_after))
        raise AssertionError("unreachable")

    def models(self) -> list[str]:
        """The model ids the endpoint serves."""
        body = self.request("GET", "/models")
        return [m.get("id", "") for m in body.get("data", []) if isinstance(m, dict)]

    def check(self, model: str | None = None) -> None:
        """Fail fast with one clear line if the endpoint is unreachable, refuses the key or lacks `model`.

        Endpoints that do not list models (404 on /models) pass; the first real request will tell.
        """
        try:
            ids = self.models()
        except UserError as e:
            if "HTTP 404" in str(e) or "HTTP 405" in str(e):
                return
            raise
        if model and ids and model not in ids:
            raise UserError(f"model {model!r} is not served by {self.base_url} (it serves: "
                            f"{', '.join(ids[:10])})")

    def chat(self, model: str, messages: list[dict[str, str]], **params: Any) -> Completion:
        """One chat completion (the first choice)."""
        body = self.request("POST", "/chat/completions", {"model": model, "messages": messages, **params})
        choice = (body.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        return _completion(body, text, choice)

    def complete(self, model: str, prompt: str, **params: Any) -> Completion:
        """One text completion (the first choice)."""
        body = self.request("POST", "/completions", {"model": model, "prompt": prompt, **params})
        choice = (body.get("choices") or [{}])[0]
        return _completion(body, choice.get("text") or "", choice)


def _completion(body: dict, text: str, choice: dict) -> Completion:
    usage = body.get("usage") or {}
    return Completion(text=text, finish_reason=choice.get("finish_reason"),
                      prompt_tokens=int(usage.get("prompt_tokens") or 0),
                      completion_tokens=int(usage.get("completion_tokens") or 0), raw=body)

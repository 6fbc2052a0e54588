"""What keeps the server answering under load: a bounded queue, a per-request time limit, a body-size cap.

`Admission` is plain ASGI middleware in front of the API: a request to /v1 beyond `queue` in flight gets a 503
with `Retry-After` at once (it never waits unboundedly behind the model lock), a body larger than the cap a
413, both as OpenAI-style JSON. Each admitted request carries its deadline in `scope["state"]["deadline"]`;
the engine gives up waiting for the model, or stops generating, when it passes.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from babelscope.settings import Settings, opt


@dataclass(kw_only=True)
class Limits(Settings):
    """How much load the server takes before it says no."""

    queue: int = opt(16, "requests admitted at once (one runs, the rest wait); more get HTTP 503 with Retry-After",
                     ge=1, le=1024)
    timeout: float = opt(300.0, "seconds a request may take, waiting included; then HTTP 503 (still waiting) or "
                                "504 (generating)", gt=0)
    max_prompt_bytes: int = opt(1 << 20, "largest prompt (UTF-8 bytes of all prompt texts of a request); larger "
                                         "is HTTP 400", gt=0)

    @property
    def max_body(self) -> int:
        """Request bodies up to this size are read: JSON escaping can take 6 bytes per 2-byte character."""
        return 4 * self.max_prompt_bytes + (1 << 16)


def _error(status: int, message: str, code: str) -> bytes:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


class Gauge:
    """Requests in flight, counted across threads."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def enter(self, cap: int) -> bool:
        """Count one more request unless `cap` are in flight already."""
        with self._lock:
            if self.count >= cap:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


class Admission:
    """ASGI middleware: bounded admission, a deadline per request and a body cap for paths under /v1."""

    def __init__(self, app, limits: Limits, gauge: Gauge, retry_after: int = 1):
        self.app, self.limits, self.gauge, self.retry_after = app, limits, gauge, retry_after

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            return await self.app(scope, receive, send)
        if not self.gauge.enter(self.limits.queue):
            return await _respond(send, 503, _error(503, f"the server is busy ({self.limits.queue} requests in "
                                                         "flight); retry later", "server_busy"),
                                  {"retry-after": str(self.retry_after)})
        left = False

        def leave() -> None:
            nonlocal left
            if not left:
                left = True
                self.gauge.leave()

        async def sending(message) -> None:
            # free the slot before the response's last bytes go out: a client that reads the answer and asks
            # again at once must find it free, not race this coroutine's return
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                leave()
            await send(message)

        try:
            scope.setdefault("state", {})["deadline"] = time.monotonic() + self.limits.timeout
            body = await self._body(scope, receive)
            if body is None:
                return await _respond(sending, 413, _error(413, f"request body larger than {self.limits.max_body} "
                                                                "bytes (serve --max-prompt-bytes)", "body_too_large"))
            await self.app(scope, _replay(body, receive), sending)
        finally:
            leave()

    async def _body(self, scope, receive) -> bytes | None:
        """The whole request body, or None as soon as it exceeds the cap."""
        cap = self.limits.max_body
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body read already, then waits for the client's disconnect."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


async def _respond(send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})

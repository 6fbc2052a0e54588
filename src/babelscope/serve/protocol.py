"""The OpenAI request bodies the server accepts, its error shape, and the text helpers they need.

Every number a client sends is bounded here (a seed within torch's 64-bit range, `logprobs` within
`MAX_LOGPROBS`, ...), so a bad request is a JSON 400 naming the field, never a 500.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_N = 16
MAX_LOGPROBS = 20
SEED_MIN, SEED_MAX = -(1 << 63), (1 << 64) - 1  # what torch.manual_seed accepts
MAX_TOKENS = 1 << 20


class _Request(BaseModel):
    # Unknown OpenAI parameters are accepted and ignored; NaN and infinity are refused.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    stream: bool = False
    stream_options: dict | None = None


class CompletionRequest(_Request):
    """`/v1/completions`: a prompt as text, texts, token ids or lists of token ids; `logprobs` and `echo`."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict] | None = None


class ChatRequest(_Request):
    """`/v1/chat/completions`; `logprobs: true` with `top_logprobs` alternatives per token."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)


class APIError(Exception):
    """An OpenAI-style error response; `headers` go with it (e.g. Retry-After on a 503)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def served_name(model_dir: str | Path) -> str:
    """The model id clients use: the run directory's name for RUN/final, else the directory's name."""
    path = Path(model_dir).resolve()
    return path.parent.name if path.name == "final" else path.name


def message_text(message: Message) -> str:
    if isinstance(message.content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in message.content if p.get("type") == "text")
    return message.content or ""


def chat_prompt(tokenizer, messages: list[Message]) -> str:
    """The text the model continues for a chat: its chat template if it has one, else the contents as paragraphs."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": m.role, "content": message_text(m)} for m in messages],
                                             tokenize=False, add_generation_prompt=True)
    return "\n\n".join(t for t in (message_text(m).strip() for m in messages) if t)


def prompt_list(prompt: str | list[str] | list[int] | list[list[int]]) -> list[str | list[int]]:
    """A completion request's prompts, each a text or a list of token ids (the API's four shapes)."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(p, int) for p in prompt):
        return [list(prompt)]  # type: ignore[arg-type]
    return list(prompt)  # type: ignore[arg-type]


def prompt_bytes(prompts: list[str | list[int]] | list[str]) -> int:
    """UTF-8 bytes of the text prompts (token-id prompts are bounded by the context instead)."""
    return sum(len(p.encode("utf-8")) for p in prompts if isinstance(p, str))


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """`text` up to the first stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


def stops(stop: str | list[str] | None) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])

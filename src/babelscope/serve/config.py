"""`babelscope serve`'s settings: the model, the address, and the load limits (`serve.limits.Limits`)."""

from __future__ import annotations

from dataclasses import dataclass

from babelscope.serve.limits import Limits
from babelscope.settings import opt


@dataclass(kw_only=True)
class ServeConfig(Limits):
    """`babelscope serve`: one model directory behind /v1/models, /v1/completions and /v1/chat/completions."""

    model: str = opt(help="HF model directory (e.g. RUN/final)")
    port: int = opt(8000, "TCP port", ge=1, le=65535)
    host: str = opt("127.0.0.1", "address to bind; 0.0.0.0 exposes the server to the network")
    name: str | None = opt(None, "model id clients ask for (default: the run's name)")
    device: str = opt("auto", "cpu, cuda, cuda:N or auto")
    truncate_prompts: bool = opt(False, "keep the end of a prompt longer than the model's context instead of "
                                        "answering HTTP 400")
    api_key_env: str | None = opt(None, "require the key in this environment variable as a bearer token",
                                  metavar="NAME")

"""`babelscope serve`: an OpenAI-compatible HTTP API for a trained model."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from babelscope.cli._common import command, require
from babelscope.serve.limits import Limits
from babelscope.settings import narrow, opt


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


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "serve", run, "Serve a model over an OpenAI-compatible HTTP API.",
            description="Serve a model directory at /v1/models, /v1/completions and /v1/chat/completions "
                        "(streaming with stream=true; log-probabilities with logprobs, echo and max_tokens=0). "
                        "Binds 127.0.0.1 unless --host says otherwise. Requests beyond --queue get HTTP 503 with "
                        "Retry-After.", settings=ServeConfig)


def run(cfg: ServeConfig) -> int:
    import uvicorn

    from babelscope.serve import create_app, served_name

    api_key = None
    if cfg.api_key_env:
        api_key = os.environ.get(cfg.api_key_env)
        require(bool(api_key), f"--api-key-env {cfg.api_key_env}: that environment variable is not set")
    _check_port(cfg.host, cfg.port)
    app = create_app(cfg.model, name=cfg.name, device=cfg.device, api_key=api_key,
                     truncate_prompts=cfg.truncate_prompts, limits=narrow(cfg, Limits))
    name = cfg.name or served_name(cfg.model)
    print(f"serving {name!r} at http://{cfg.host}:{cfg.port}/v1", file=sys.stderr, flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    return 0


def _check_port(host: str, port: int) -> None:
    """Fail before loading the model when the address is taken."""
    import socket

    from babelscope.errors import UserError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror})") from None

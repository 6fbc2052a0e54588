"""`babelscope serve`: an OpenAI-compatible HTTP API for a trained model."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from babelscope.cli._common import command, require

if TYPE_CHECKING:
    from babelscope.serve.config import ServeConfig


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "serve", run, "Serve a model over an OpenAI-compatible HTTP API.",
            description="Serve a model directory at /v1/models, /v1/completions and /v1/chat/completions "
                        "(streaming with stream=true; log-probabilities with logprobs, echo and max_tokens=0). "
                        "Binds 127.0.0.1 unless --host says otherwise. Requests beyond --queue get HTTP 503 with "
                        "Retry-After.", settings="babelscope.serve.config:ServeConfig")


def run(cfg: ServeConfig) -> int:
    import uvicorn

    from babelscope.serve import Limits, create_app, served_name
    from babelscope.settings import narrow

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

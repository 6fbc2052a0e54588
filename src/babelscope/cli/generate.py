"""`babelscope generate`: sample completions from a trained model."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from babelscope.cli._common import command, require

if TYPE_CHECKING:
    from babelscope.generate import GenerateConfig


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "generate", run, "Sample story completions from a model directory.", settings="babelscope.generate:GenerateConfig")


def run(cfg: GenerateConfig) -> int:
    from babelscope.generate import generate
    from babelscope.models import load_model

    require(not cfg.steer or cfg.sae, "--steer needs --sae (the SAE whose features it names)")
    patches = []
    if cfg.steer:
        from babelscope.intervene.steer import steering_patches
        from babelscope.sae.pairing import load_pair

        model, tok, sae, _ = load_pair(cfg.model, cfg.sae, device=cfg.device, force=cfg.force)
        patches = steering_patches(sae, cfg.steer, cfg.steer_mode)
    else:
        model, tok = load_model(cfg.model, device=cfg.device)
    outs = generate(model, tok, cfg.prompt, n=cfg.n, max_new_tokens=cfg.max_new_tokens,
                    temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, seed=cfg.seed, patches=patches)
    for prompt, completions in zip(cfg.prompt, outs, strict=True):
        for i, text in enumerate(completions):
            if cfg.json:
                print(json.dumps({"prompt": prompt, "sample": i, "completion": text}, ensure_ascii=False))
            else:
                print(f"--- sample {i + 1}\n{prompt}{text}")
    return 0

"""Sampling completions from a causal LM (HF `generate`), batched over prompts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from babelscope.intervene.steer import MODES, Steer, parse_steer
from babelscope.settings import SEED, Settings, opt


@dataclass(kw_only=True)
class GenerateConfig(Settings):
    """`babelscope generate`: sample completions, optionally steering SAE features."""

    model: str = opt(help="HF model directory (e.g. RUN/final)")
    prompt: list[str] = opt(help="a prompt; repeat the flag for several", nargs="append")
    n: int = opt(1, "completions per prompt", flag="-n", gt=0)
    max_new_tokens: int = opt(200, "most new tokens per completion", gt=0)
    temperature: float = opt(1.0, "sampling temperature; 0 for greedy decoding", ge=0.0)
    top_k: int | None = opt(None, "sample among the k most likely tokens", gt=0)
    top_p: float | None = opt(None, "nucleus sampling: the smallest set holding this probability", gt=0.0, le=1.0)
    seed: int | None = opt(None, "seed of the sampling", **SEED)
    device: str = opt("auto", "cpu, cuda or auto")
    json: bool = opt(False, "print one JSON object per completion")
    sae: str | None = opt(None, "SAE directory whose features --steer names")
    steer: list[Steer] = opt(help="FEATURE:VALUE: add (or clamp) this SAE feature's decoder direction at VALUE (in "
                                  "the feature's activation units) at every position; repeat for several",
                             default_factory=list, nargs="append", parse=parse_steer, metavar="FEATURE:VALUE")
    steer_mode: str = opt("add", "add: h + VALUE * d_f; clamp: set the feature's activation to VALUE", choices=MODES)
    force: bool = opt(False, "steer with an SAE trained on another model")


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, n: int = 1, max_new_tokens: int = 200,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, batch_size: int = 16,
             patches: Sequence[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = ()) -> list[list[str]]:
    """`n` completions (the new text only) for each prompt; temperature 0 means greedy decoding.

    `patches` are (hook name, fn) pairs applied with `models.hooks.patch` during sampling (steering uses them).
    """
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    limit = getattr(model.config, "max_position_embeddings", 2048)
    old_side, old_trunc = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = "left"  # new tokens must follow each prompt directly
    tokenizer.truncation_side = "left"  # a prompt too long for the context loses its start, not its end
    flat = [p for p in prompts for _ in range(n)]
    out: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            if patches:
                from babelscope.models.hooks import patch

                for name, fn in patches:
                    stack.enter_context(patch(model, name, fn))
            for i in range(0, len(flat), batch_size):
                chunk = flat[i:i + batch_size]
                enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True,
                                max_length=max(1, limit - max_new_tokens))
                enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                sample = temperature > 0
                ids = model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=sample,
                    temperature=temperature if sample else None, top_k=top_k if sample else None,
                    top_p=top_p if sample else None, pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                new = ids[:, enc["input_ids"].shape[1]:]
                out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old_side, old_trunc
    return [out[j * n:(j + 1) * n] for j in range(len(prompts))]

"""Several models side by side: validation loss and bits per byte on several held-out sets, and a few
generations from the same openers (the demo's and the studies' first look at base vs continually pre-trained)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from babelscope.settings import SEED, Settings, opt


@dataclass(kw_only=True)
class CompareConfig(Settings):
    """Models x held-out sets: loss, perplexity and bits per byte, plus sample generations."""

    models: dict[str, str] = opt(help="name -> model directory")
    data: dict[str, str] = opt(help="name -> held-out corpus file")
    out: str = opt(help="output directory (losses.json)")
    max_tokens: int | None = opt(None, "window length (default: the model's context)", gt=1)
    max_docs: int | None = opt(None, "documents read per set", gt=0)
    prompts: list[str] = opt(help="openers each model completes once", default_factory=list)
    max_new_tokens: int = opt(80, "most new tokens per generation", gt=0)
    seed: int = opt(0, "seed of the sampling", **SEED)
    device: str = opt("auto", "cpu, cuda or auto")


def compare_models(cfg: CompareConfig, log: Callable[[str], None] = print) -> dict:
    """{"losses": {model: {set: {loss, ppl, bpb, tokens, docs}}}, "samples": {model: [text per prompt]}},
    also written to OUT/losses.json."""
    from babelscope.corpus import iter_corpus
    from babelscope.eval.perplexity import perplexity
    from babelscope.files import write_json_atomic
    from babelscope.generate import generate
    from babelscope.models import load_model

    losses: dict[str, dict] = {}
    samples: dict[str, list[str]] = {}
    for name, path in cfg.models.items():
        model, tok = load_model(path, device=cfg.device)
        losses[name] = {s: perplexity(model, tok, iter_corpus([f]), max_tokens=cfg.max_tokens,
                                      max_docs=cfg.max_docs, label_field="__none__")["all"]
                        for s, f in cfg.data.items()}
        if cfg.prompts:
            outs = generate(model, tok, list(cfg.prompts), n=1, max_new_tokens=cfg.max_new_tokens, temperature=1.0,
                            top_k=50, seed=cfg.seed)
            samples[name] = [p + o[0] for p, o in zip(cfg.prompts, outs, strict=True)]
        log(f"{name}: " + ", ".join(f"{s} loss {r['loss']:.3f} ({r['bpb']:.3f} bits/byte)"
                                    for s, r in losses[name].items()))
    result = {"losses": losses, "samples": samples}
    write_json_atomic(Path(cfg.out) / "losses.json", result)
    return result

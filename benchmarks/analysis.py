"""Benchmark the feature analysis: the feature pass (tokens/s) and TSEA at the study's scale (seconds).

    python benchmarks/analysis.py                      # both, defaults below
    python benchmarks/analysis.py --skip-pass          # TSEA only: 16,384 features x 32,000 tokens x 4 sets
    python benchmarks/analysis.py --tokens 50000 --preset 8M --d-sae 16384

The feature pass uses a randomly initialised preset model, a byte-level BPE trained on synthetic bilingual
text and babelscope's TopK SAE with random weights (k active latents per token, as a trained one), so it
measures the pipeline (LM forward, SAE encode, sparse shards, the three aggregation passes). Its reference,
measured in the same run on the same contexts and batches: a bare forward of the model stopped at the hook plus
the SAE's encode of the same tokens, nothing else (goal: the pass costs at most 1.3x that).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BABELSCOPE_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

_EN_TEXT = "the cat sat on the mat . Lily saw a big tree and said hello to her mom . Tim ran to the park"
_AR_TEXT = "جلست القطة على الحصيرة . رأت ليلى شجرة كبيرة وقالت مرحبا لأمها . ركض تيم إلى الحديقة"


def random_topk_sae(d_in: int, d_sae: int, k: int, hook: str, seed: int = 0):
    """babelscope's TopK SAE (unit-norm inputs) with random weights: a trained one's sparsity and cost."""
    from babelscope.sae.base import SAE, SAEConfig

    sae = SAE(SAEConfig(arch="topk", d_in=d_in, d_sae=d_sae, k=k, hook_name=hook, normalize="l2"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g))
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g) / d_in**0.5)
    return sae.eval()


def _corpus(n_docs: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n_docs):
        lang = "ar" if i % 2 else "en"
        words = (_AR_TEXT if lang == "ar" else _EN_TEXT).split(" ")
        docs.append({"id": f"d{i}", "lang": lang, "text": " ".join(rng.choice(words) for _ in range(150))})
    return docs


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_feature_pass(tokens: int, preset: str, d_sae: int, k: int, context: int, batch_size: int,
                       device: str = "cpu") -> dict:
    from transformers import LlamaForCausalLM

    from babelscope.analysis.store import StoreConfig, aggregate, write_shards
    from babelscope.models import llama_config
    from babelscope.models.hooks import hook_width
    from babelscope.tokenizer import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        docs = _corpus(max(64, 2 * tokens // (context - 1) + 64))
        tok = train_tokenizer((d["text"] for d in docs[:400]), vocab_size=2000, out_dir=tmp / "tok", min_frequency=1)
        torch.manual_seed(0)
        model = LlamaForCausalLM(llama_config(preset, len(tok), bos_token_id=tok.bos_token_id,
                                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
        model = model.eval().to(device)
        hook = f"layers.{model.config.num_hidden_layers - 1}.mlp.act"
        sae = random_topk_sae(hook_width(model, hook), d_sae, k, hook).to(device)
        cfg = StoreConfig(tokens=tokens, context=context, batch_size=batch_size, docs_per_shard=256)
        bare = bare_reference(model, tok, sae, hook, docs, cfg)  # warms up the model too
        _sync(device)
        t0 = time.perf_counter()
        state = write_shards(model, tok, sae, hook, docs, tmp / "cache", cfg)
        _sync(device)
        t1 = time.perf_counter()
        res = aggregate(tmp / "cache", cfg, n_features=d_sae, vocab_size=len(tok))
        t2 = time.perf_counter()
        bare2 = bare_reference(model, tok, sae, hook, docs, cfg)  # again after: the load may have moved
        shard_bytes = sum(p.stat().st_size for p in (tmp / "cache").glob("*.npz"))
    n = state["tokens"]
    ref = (bare["forward_s"] + bare["encode_s"] + bare2["forward_s"] + bare2["encode_s"]) / 2
    return {"tokens": n, "model": preset, "hook": hook, "d_sae": d_sae, "k": k, "lm_sae_pass_s": t1 - t0,
            "aggregate_s": t2 - t1, "pass_tok_per_s": n / (t1 - t0), "total_tok_per_s": n / (t2 - t0),
            "bare_forward_s": (bare["forward_s"] + bare2["forward_s"]) / 2,
            "bare_encode_s": (bare["encode_s"] + bare2["encode_s"]) / 2, "bare_tok_per_s": bare["tokens"] / ref,
            "pass_over_bare": (t1 - t0) / ref,
            "cache_bytes_per_token": shard_bytes / n, "alive": int((res["features"]["n_active"] > 0).sum())}


def bare_reference(model, tok, sae, hook: str, docs: list[dict], cfg) -> dict:
    """The floor of the feature pass: the same contexts in the same batches through the model, stopped at the hook
    (`capture`), and the SAE's top-k encode of the same real tokens; no selection, shards or bookkeeping."""
    from babelscope.models.contexts import pad_right, tokenize_contexts
    from babelscope.models.hooks import capture

    rows, n = [], 0
    for ids, _, _ in tokenize_contexts(tok, docs, cfg.context):
        rows.append(ids)
        n += len(ids) - 1
        if n >= cfg.tokens:
            break
    t_fwd = t_enc = 0.0
    device = str(next(model.parameters()).device)
    with torch.no_grad():
        for s in range(0, len(rows), cfg.batch_size):
            ids, mask = pad_right(rows[s:s + cfg.batch_size], tok.pad_token_id or 0)
            _sync(device)
            t0 = time.perf_counter()
            acts = capture(model, [hook], ids.to(device), mask.long().to(device))[hook]
            _sync(device)
            t1 = time.perf_counter()
            mask[:, 0] = False  # BOS dropped, as the pass does
            sae.encode_topk(acts[mask.to(device)])
            _sync(device)
            t_enc += time.perf_counter() - t1
            t_fwd += t1 - t0
    return {"tokens": n, "forward_s": t_fwd, "encode_s": t_enc}


def bench_tsea(n_features: int, vocab: int, n_sets: int, set_size: int, d_model: int, chunk: int) -> dict:
    from babelscope.analysis.tsea import enrichment_scores, tsea

    rng = np.random.default_rng(0)
    sets = [rng.choice(vocab, set_size, replace=False) for _ in range(n_sets)]
    g = torch.Generator().manual_seed(0)
    W_U = torch.randn(vocab, d_model, generator=g)
    W_dec = torch.randn(n_features, d_model, generator=g)
    # (a) scoring alone, logit weights precomputed chunk by chunk outside the timer
    scoring = 0.0
    for start in range(0, n_features, chunk):
        w = W_dec[start:start + chunk] @ W_U.T
        t = time.perf_counter()
        enrichment_scores(w, sets)
        scoring += time.perf_counter() - t
    # (b) the whole computation: logit weights (W_U W_dec) + scores + p-values + BH
    t = time.perf_counter()
    out = tsea((W_dec[s:s + chunk] @ W_U.T for s in range(0, n_features, chunk)), sets, vocab_size=vocab)
    total = time.perf_counter() - t
    assert out["score"].shape == (n_features, n_sets)
    return {"features": n_features, "vocab": vocab, "sets": n_sets, "set_size": set_size, "d_model": d_model,
            "scoring_s": scoring, "with_logit_weights_s": total}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=20_000)
    p.add_argument("--preset", default="8M")
    p.add_argument("--d-sae", type=int, default=16_384)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--features", type=int, default=16_384)
    p.add_argument("--vocab", type=int, default=32_000)
    p.add_argument("--sets", type=int, default=4)
    p.add_argument("--set-size", type=int, default=600)
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-pass", action="store_true")
    p.add_argument("--skip-tsea", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} numpy={np.__version__}", file=sys.stderr)
    if not args.skip_pass:
        r = bench_feature_pass(args.tokens, args.preset, args.d_sae, args.k, args.context, args.batch_size,
                               args.device)
        print(f"feature pass: {r['tokens']} tokens, {r['model']} {r['hook']}, SAE {r['d_sae']} latents (top-{r['k']}): "
              f"LM+SAE+shards {r['pass_tok_per_s']:.0f} tok/s ({r['lm_sae_pass_s']:.1f} s), aggregation "
              f"{r['aggregate_s']:.1f} s, end to end {r['total_tok_per_s']:.0f} tok/s; cache "
              f"{r['cache_bytes_per_token']:.0f} B/token")
        print(f"  vs the bare forward to the hook ({r['bare_forward_s']:.1f} s) + SAE encode ({r['bare_encode_s']:.1f} s) "
              f"= {r['bare_tok_per_s']:.0f} tok/s: the pass costs {r['pass_over_bare']:.2f}x that (goal <= 1.3x); "
              f"load {os.getloadavg()[0]:.1f}")
    if not args.skip_tsea:
        r = bench_tsea(args.features, args.vocab, args.sets, args.set_size, args.d_model, args.chunk)
        print(f"TSEA: {r['features']} features x {r['vocab']} tokens x {r['sets']} sets of {r['set_size']}: "
              f"scoring {r['scoring_s']:.1f} s; with logit weights (d_model {r['d_model']}), p-values and BH "
              f"{r['with_logit_weights_s']:.1f} s")


if __name__ == "__main__":
    main()

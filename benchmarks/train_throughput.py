"""Training throughput of our presets (HF Llama from `babelscope.models`) against a minimal hand-written
PyTorch Llama of the same shape, measured in the same run: fwd + bwd + clip + AdamW step, tokens/s.

    python benchmarks/train_throughput.py [--presets 1M,8M,33M] [--batch 8] [--context 256] [--vocab 32000]

Goal: ours >= 0.9x the reference. Steps alternate between the two models so that machine noise hits both.

Against the hardware: the same run measures the dense-matmul limit of the model's own shapes, the time torch.mm
(and torch.bmm for attention's two products) takes for every GEMM of one training step (forward, input gradient
and weight gradient of every linear layer incl. the LM head; attention scores and values with their two
gradients each). The model FLOPs utilisation (`mfu`) is the model's FLOPs per step (6 N per token over the
matrices that multiply, the input embedding being a lookup, plus attention's 12 L T d) over the step time,
divided by the FLOP rate torch.mm reached on those same shapes; that is, the limit's time over the step's time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from babelscope.models import get_preset, llama_config
from babelscope.train.loop import TrainConfig, _optimizer


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Block(nn.Module):
    def __init__(self, d: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(d, mlp, bias=False), nn.Linear(d, mlp, bias=False)
        self.down = nn.Linear(mlp, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        h = self.n1(x)
        q, k, v = (p(h).view(B, T, self.heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(rope(q, cos, sin), rope(k, cos, sin), v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(B, T, D))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class RefLlama(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, mlp: int, context: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, mlp) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        hd = d // heads
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        freqs = torch.outer(torch.arange(context).float(), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, input_ids):
        x = self.embed(input_ids)
        T = input_ids.shape[1]
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T])
        return self.head(self.norm(x))


def step_fn(model, opt, x, y, logits_of):
    logits = logits_of(model, x)
    loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gemm_limit(model: nn.Module, batch: int, context: int, heads: int, device: str, repeats: int = 5,
               dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    """(seconds, FLOPs) of the dense GEMMs of one training step of `model` at torch.mm/bmm speed, measured now:
    every nn.Linear's forward, input-gradient and weight-gradient product at [batch x context] tokens, and
    attention's two batched products per layer, each with its two gradients."""
    tokens = batch * context
    shapes = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            i, o = m.in_features, m.out_features
            shapes += [(tokens, i, o), (tokens, o, i), (i, tokens, o)]  # forward, input grad, weight grad
    layers = sum(1 for m in model.modules() if type(m).__name__ in ("LlamaDecoderLayer", "Block"))
    hidden = model.config.hidden_size if hasattr(model, "config") else model.embed.embedding_dim
    hd = hidden // heads
    kw = {"device": device, "dtype": dtype}
    mats = [(torch.randn(m, k, **kw), torch.randn(k, n, **kw)) for m, k, n in set(shapes)]
    counts = {sh: shapes.count(sh) for sh in set(shapes)}
    q = torch.randn(batch * heads, context, hd, **kw)
    kt = torch.randn(batch * heads, hd, context, **kw)
    att = torch.randn(batch * heads, context, context, **kw)
    times = []
    for _ in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        for (a, b), sh in zip(mats, set(shapes), strict=True):
            for _ in range(counts[sh]):
                torch.mm(a, b)
        for _ in range(layers):
            for _ in range(3):  # scores q k^T and values a v, each: forward + two gradients
                torch.bmm(q, kt)
                torch.bmm(att, q)
        _sync(device)
        times.append(time.perf_counter() - t0)
    best = sorted(times[1:])[len(times[1:]) // 2]  # the median, as the steps' (a busy machine slows both alike)
    flops = 2.0 * sum(m * k * n for m, k, n in shapes) + layers * 3 * 2 * (2.0 * batch * heads * context**2 * hd)
    return best, flops


def bench(preset: str, batch: int, context: int, vocab: int, steps: int, warmup: int, device: str,
          precision: str = "fp32") -> dict:
    from transformers import LlamaForCausalLM

    p = get_preset(preset)
    torch.manual_seed(0)
    ours = LlamaForCausalLM(llama_config(p, vocab, context=context)).to(device).train()
    ref = RefLlama(ours.config.vocab_size, p.hidden, p.layers, p.heads, p.mlp, context).to(device).train()
    n_ours = sum(t.numel() for t in ours.parameters())
    n_ref = sum(t.numel() for t in ref.parameters())
    assert n_ours == n_ref, (n_ours, n_ref)
    cfg = TrainConfig(out="", data=[], lr=5e-5)
    fused = device.startswith("cuda")
    runs = {"babelscope": (ours, _optimizer(ours, cfg, fused), lambda m, x: m(input_ids=x).logits),
            "reference": (ref, _optimizer(ref, cfg, fused), lambda m, x: m(x))}
    x = torch.randint(0, vocab, (batch, context), device=device)
    y = torch.randint(0, vocab, (batch, context), device=device)
    times = {k: [] for k in runs}
    bf16 = precision == "bf16"
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)) if bf16 else \
        contextlib.nullcontext
    for i in range(warmup + steps):
        for name, (m, opt, f) in runs.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with autocast():
                step_fn(m, opt, x, y, f)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    tok = batch * context
    # The median step is robust to the odd slow step of a shared machine.
    step_s = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    rate = {k: tok / v for k, v in step_s.items()}
    t_lim, gemm_flops = gemm_limit(ours, batch, context, p.heads, device,
                                   dtype=torch.bfloat16 if bf16 else torch.float32)
    mm_rate = gemm_flops / t_lim  # = model FLOPs per step (its GEMMs) / the time torch.mm needs for them
    return {"preset": preset, "params": n_ours, "batch": batch, "context": context, "vocab": vocab,
            "device": device, "precision": precision, "ours_tok_s": round(rate["babelscope"], 1), "ref_tok_s": round(rate["reference"], 1),
            "ratio": round(rate["babelscope"] / rate["reference"], 3),
            "mfu": round(t_lim / step_s["babelscope"], 3), "ref_mfu": round(t_lim / step_s["reference"], 3),
            "model_tflop_per_step": round(gemm_flops / 1e12, 4), "mm_tflops": round(mm_rate / 1e12, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="1M,8M,33M")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                    help="default: bf16 autocast on CUDA (as the training loop), fp32 on CPU")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args()
    rows = []
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, {args.device}, batch {args.batch} x {args.context}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'preset':<8} {'params':>12} {'ours tok/s':>12} {'ref tok/s':>12} {'ratio':>7} {'MFU':>6} "
          f"{'ref MFU':>8} {'mm TFLOP/s':>11}")
    for preset in args.presets.split(","):
        r = bench(preset, args.batch, args.context, args.vocab, args.steps, args.warmup, args.device,
                  args.precision or ("bf16" if args.device.startswith("cuda") else "fp32"))
        rows.append(r)
        print(f"{preset:<8} {r['params']:>12,} {r['ours_tok_s']:>12,.0f} {r['ref_tok_s']:>12,.0f} {r['ratio']:>7.3f} "
              f"{r['mfu']:>6.1%} {r['ref_mfu']:>8.1%} {r['mm_tflops']:>11.4f}", flush=True)
    geo = math.exp(sum(math.log(r["ratio"]) for r in rows) / len(rows))
    print(f"geometric-mean ratio ours/reference: {geo:.3f} (goal >= 0.9)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

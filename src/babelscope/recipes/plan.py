"""`babelscope run RECIPE --plan`: what every stage of a recipe will cost, before paying for it.

Nothing runs. Sizes flow down the recipe from estimates: a storyworld corpus from its story count, a user's
corpus from the input's `docs`/`tokens_per_doc` (or its file size), a model from its preset and vocabulary.
Each stage's work is counted in tokens and FLOPs (training 6 N T, forward passes 2 N T, SAE steps from their
matrix shapes), then turned into time twice:

- on this machine, from a short calibration measured now: a few training steps of each model shape the recipe
  trains, a few SAE steps of each SAE shape, and a forward pass (capped sizes, a few seconds in all), timed on
  one thread and scaled to the machine's cores;
- on a named accelerator, from its bf16 dense peak at a stated utilisation (35% by default), divided over the
  stage's processes.

API stages (synthesis, judging) are counted in requests, with an assumed latency. The numbers are estimates to
plan with, not promises: they ignore data loading, checkpointing and evaluation passes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babelscope.recipes.recipe import InputRef, Recipe, Ref, load_recipe

ACCELERATORS = {"h100": 989e12, "h200": 989e12, "a100": 312e12, "l4": 121e12, "a10": 125e12}  # bf16 dense
BYTES_PER_TOKEN = {"en": 4.2, "ar": 4.6}  # byte-level BPE at 32k on stories (smaller vocabularies: fewer)
TOKENS_PER_STORY = {"en": 230, "ar": 260}  # storyworld / TinyStories-length stories at 32k
API_SECONDS = 8.0  # assumed latency of one chat request
TOKENIZER_BYTES_PER_S = 20e6  # HF tokenizers' BPE training on 2 cores, roughly


@dataclass
class Estimate:
    """What a stage produces, for the stages after it: a corpus, a tokenizer, a model, an SAE..."""

    docs: float = 0.0
    tokens: float = 0.0
    vocab: int = 0
    model: dict[str, Any] | None = None  # preset shape: params, body, layers, hidden, mlp, vocab
    sae: dict[str, Any] | None = None  # d_in, d_sae, arch, k
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cost:
    tokens: float = 0.0
    flops: float = 0.0
    work: str = "forward"  # forward | train:<shape> | sae:<shape> | api
    requests: int = 0
    seconds: float = 0.0  # CPU-bound work with a known rate (the same on any accelerator)
    sorted_elements: float = 0.0  # sorting work (TSEA's rankings), timed here by a sort calibration
    note: str = ""


# ---- calibration -------------------------------------------------------------------------------------------------

class Calibration:
    """Measured FLOP rates of this machine: per LM shape (training and forward) and per SAE shape.

    Each is timed on one thread (a busy machine makes multi-threaded timings meaningless: oversubscribed OpenMP
    threads slow torch by 5-20x) and scaled to the machine's cores at 80% efficiency per extra core."""

    def __init__(self, budget_s: float = 0.5, cores: int | None = None):
        import os

        self.budget_s = budget_s
        self.scale = 1 + 0.8 * (max(1, cores or os.cpu_count() or 1) - 1)
        self._rates: dict[str, float] = {}

    def rate(self, work: str, shape: dict[str, Any] | None = None) -> float:
        import torch

        key = f"{work}:{sorted((shape or {}).items())}"
        if key not in self._rates:
            fn = {"train": self._train_rate, "forward": self._forward_rate, "sae": self._sae_rate,
                  "gemm": self._gemm_rate, "sort": self._sort_rate}[work]
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                self._rates[key] = fn(shape or {}) * self.scale
            finally:
                torch.set_num_threads(threads)
        return self._rates[key]

    def _sort_rate(self, shape: dict[str, Any]) -> float:
        import numpy as np

        keys = np.random.default_rng(0).integers(0, 2**62, (64, 16384))
        return keys.size / self._timed(lambda: np.sort(keys, axis=1))

    def _gemm_rate(self, shape: dict[str, Any]) -> float:
        import torch

        a, b = torch.randn(512, 512), torch.randn(512, 512)
        return 2 * 512**3 / self._timed(lambda: a @ b)

    @staticmethod
    def _model(shape: dict[str, Any]):
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(
            vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["mlp"],
            num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"], max_position_embeddings=256))

    def _timed(self, step: Callable[[], None]) -> float:
        step()  # warm-up
        t0, n = time.perf_counter(), 0
        while n < 1 or (time.perf_counter() - t0 < self.budget_s and n < 10):
            step()
            n += 1
        return (time.perf_counter() - t0) / n

    def _train_rate(self, shape: dict[str, Any]) -> float:
        import torch

        model = self._model(shape)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        ids = torch.randint(0, shape["vocab"], (4, 128))

        def step() -> None:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        return 6 * shape["params"] * ids.numel() / self._timed(step)

    def _forward_rate(self, shape: dict[str, Any]) -> float:
        import torch

        model = self._model(shape).eval()
        ids = torch.randint(0, shape["vocab"], (4, 128))

        def step() -> None:
            with torch.no_grad():
                model(input_ids=ids)
        return 2 * shape["params"] * ids.numel() / self._timed(step)

    def _sae_rate(self, shape: dict[str, Any]) -> float:
        import torch

        from babelscope.sae.base import SAEConfig
        from babelscope.sae.train import TrainConfig, make_optimizer, make_trainer

        d, n = shape["d_in"], min(shape["d_sae"], 4096)
        cfg = SAEConfig(arch=shape["arch"], d_in=d, d_sae=n, k=min(shape.get("k") or 32, n))
        tr = make_trainer(cfg, TrainConfig(arch=shape["arch"], normalize="none"), "cpu")
        opt = make_optimizer(tr, 1e-3, TrainConfig())
        u = torch.randn(256, d)

        def step() -> None:
            loss, _ = tr.loss(u)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return sae_flops(d, n, shape["arch"], cfg.k or 0) * len(u) / self._timed(step)


def sae_flops(d_in: int, d_sae: int, arch: str, k: int) -> float:
    """FLOPs of one SAE training step per activation: a dense ReLU SAE does five d x n products (encoder forward
    and weight gradient, decoder forward, weight gradient and input gradient); a TopK SAE one dense encoder
    product plus work proportional to k."""
    if arch == "relu":
        return 10.0 * d_in * d_sae
    return 2.0 * d_in * d_sae + 8.0 * d_in * k


# ---- per-kind estimates --------------------------------------------------------------------------------------------

def _preset_shape(preset: str, vocab: int, context: int | None = None) -> dict[str, Any]:
    from babelscope.models.presets import get_preset, param_counts

    p = get_preset(preset)
    total, body = param_counts(p, vocab)
    return {"params": body + vocab * p.hidden, "total": total, "layers": p.layers, "hidden": p.hidden,
            "mlp": p.mlp, "heads": p.heads, "vocab": vocab, "context": context or p.context}


def _corpus(values: Any, est: dict[str, Estimate]) -> Estimate:
    """The size of the corpus files a stage reads (their stages' estimates, summed)."""
    out = Estimate()
    for v in values if isinstance(values, list) else [values]:
        e = est.get(v) if isinstance(v, str) else None
        if e is not None:
            out.docs += e.docs
            out.tokens += e.tokens
    return out


def _model_of(value: Any, est: dict[str, Estimate]) -> dict[str, Any] | None:
    e = est.get(value) if isinstance(value, str) else None
    return e.model if e is not None else None


def estimate_stage(kind: str, s: dict[str, Any], est: dict[str, Estimate], inputs: dict[str, Any]
                   ) -> tuple[Estimate, Cost]:
    """(what the stage produces, what it costs) from its settings `s`, whose references are keys into `est`."""
    if kind == "storyworld":
        langs = s.get("langs", ["en", "ar"])
        docs = s["stories"] * len(langs)
        tokens = s["stories"] * sum(TOKENS_PER_STORY.get(lang, 250) for lang in langs)
        return Estimate(docs=docs, tokens=tokens), Cost(work="cpu", seconds=s["stories"] / 3000,
                                                        note="generated (~3,000 stories/s)")
    if kind in ("translate",):
        src = _corpus(s.get("inputs", []), est)
        shape = {"params": 3.3e9}
        flops = 2 * shape["params"] * src.tokens * (1 + s.get("beam_size", 4))
        return Estimate(docs=src.docs, tokens=src.tokens * 1.1), Cost(tokens=src.tokens, flops=flops,
                                                                      note="NLLB 3.3B, beam search")
    if kind == "synth":
        n = s["n"]
        return Estimate(docs=n, tokens=n * TOKENS_PER_STORY["ar"]), Cost(requests=n, work="api",
                                                                         note=f"{n:,} chat requests")
    if kind == "tokenizer":
        src = _corpus(s.get("data", []), est)
        seconds = src.tokens * BYTES_PER_TOKEN["en"] / TOKENIZER_BYTES_PER_S
        return Estimate(vocab=s.get("vocab_size", 32000)), Cost(tokens=src.tokens, work="cpu", seconds=seconds,
                                                                 note="BPE training (CPU, ~20 MB/s assumed)")
    if kind == "train":
        src = _corpus(s.get("data", []), est)
        base = _model_of(s.get("init_from"), est)
        tok = est.get(s.get("tokenizer")) if isinstance(s.get("tokenizer"), str) else None
        vocab = (tok.vocab if tok else 0) or (base or {}).get("vocab") or 32000
        shape = base or _preset_shape(s.get("preset") or "33M", vocab, s.get("context"))
        ctx = s.get("context") or shape.get("context", 512)
        if s.get("max_steps"):
            tokens = s["max_steps"] * s.get("batch_size", 8) * s.get("grad_accum", 1) * ctx
        else:
            tokens = src.tokens * s.get("epochs", 1.0)
        model = {**shape, "context": ctx}
        return (Estimate(model=model, tokens=tokens),
                Cost(tokens=tokens, flops=6 * shape["params"] * tokens, work="train",
                     note=f"{shape['params'] / 1e6:.1f}M params (embeddings in the output layer counted)"))
    if kind in ("losses", "marks", "judge"):
        models = s.get("models", {})
        models = list(models.values()) if isinstance(models, dict) else list(models)
        shapes = [m for m in (_model_of(x, est) for x in models) if m]
        if kind == "losses":
            data = s.get("data", {})
            tokens = sum(_corpus(v, est).tokens for v in (data.values() if isinstance(data, dict) else data))
        else:
            n_prompts = 88 if kind == "judge" else 16
            tokens = (s.get("limit") or n_prompts) * s.get("samples", 2) * s.get("max_new_tokens", 200)
        flops = sum(2 * m["params"] * tokens for m in shapes)
        requests = (s.get("limit") or 88) * s.get("samples", 2) * len(shapes) if kind == "judge" else 0
        return Estimate(), Cost(tokens=tokens * len(shapes), flops=flops, work="forward", requests=requests,
                                note="judge requests" if requests else "")
    if kind == "sae":
        shape = _model_of(s.get("model"), est) or {}
        d_in = shape.get("mlp", 0) if str(s.get("hook", "")).endswith("mlp.act") else shape.get("hidden", 0)
        d_sae = s.get("d_sae") or s.get("expansion", 16) * d_in
        arch, k = s.get("arch", "topk"), s.get("k", 32)
        tokens = s.get("tokens", 10_000_000) + s.get("val_tokens", 100_000)
        lm = 2 * shape.get("params", 0) * tokens
        n_lr = len(s.get("lrs", [1e-3]))
        seeds = 1 if s.get("stability_seed") is None else 2  # a stability seed trains a second SAE per rate
        flops = sae_flops(d_in, d_sae, arch, k) * s.get("tokens", 10_000_000) * n_lr * seeds
        return (Estimate(sae={"d_in": d_in, "d_sae": d_sae, "arch": arch, "k": k}, model=shape),
                Cost(tokens=tokens, flops=lm + flops, work="sae",
                     note=f"{arch} {d_in}x{d_sae}, {n_lr} lr" + (", 2 seeds" if seeds == 2 else "")))
    if kind == "features":
        shape = _model_of(s.get("model"), est) or {}
        sae = (est.get(s.get("sae")) or Estimate()).sae or {}
        tokens = s.get("tokens", 1_000_000)
        flops = 2 * tokens * (shape.get("params", 0) + sae.get("d_in", 0) * sae.get("d_sae", 0))
        return Estimate(model=shape, extra={"features": sae.get("d_sae", 0)}), Cost(tokens=tokens, flops=flops)
    if kind == "tsea":
        shape = _model_of(s.get("model"), est) or {}
        sae = (est.get(s.get("sae")) or Estimate()).sae or {}
        null = s.get("null", ["untrained", "isotropic", "covariance", "activations"])
        per_family = (s.get("null_directions") or sae.get("d_sae", 0)) * s.get("null_seeds", 8)
        n = sae.get("d_sae", 0) + len([f for f in null if f != "none"]) * per_family
        vocab = shape.get("vocab", 0)
        # logit weights (through W_down for mlp.act), then a sort of the vocabulary per direction
        flops = n * (2.0 * sae.get("d_in", 0) * shape.get("hidden", 0) + 2.0 * shape.get("hidden", 0) * vocab)
        return Estimate(), Cost(flops=flops, sorted_elements=float(n) * vocab,
                                note=f"{n:,} directions (features and null draws)")
    if kind == "dashboard":
        shape = _model_of(s.get("features"), est) or {}
        pages = s.get("tsea_top") or s.get("limit") or 100
        # per page ~70 example contexts of ~128 tokens, each scored clean (at most; pages share contexts) and with
        # the feature removed, that forward stopping after the last token shown (~3/4 of the context on average)
        flops = pages * 70 * 128 * 2 * 1.75 * shape.get("params", 0)
        return Estimate(), Cost(flops=flops, tokens=pages * 70 * 128, note=f"{pages} pages")
    if kind == "sweep":
        run = est.get(s.get("checkpoints")) if isinstance(s.get("checkpoints"), str) else None
        shape = (run.model if run else None) or {}
        n_ckpt = (run.extra.get("checkpoints", 6) if run else 6)
        layers = shape.get("layers", 1) if s.get("layers", "all") == "all" else len(str(s["layers"]).split(","))
        d = shape.get("hidden", 0)
        d_sae = s.get("d_sae") or s.get("expansion", 16) * d
        k = max(1, min(s.get("k", 32), d // 4 if d else 32))
        cells = n_ckpt * layers
        sae_tok, store_tok = s.get("sae_tokens", 2_000_000), s.get("store_tokens", 500_000)
        val_tok = min(100_000, max(128, sae_tok // 10))
        # One LM pass per checkpoint (or per group of hooks_per_pass layers) feeds every layer's SAE; each
        # cell's feature store reads the model once more.
        passes = n_ckpt * math.ceil(layers / (s.get("hooks_per_pass") or layers))
        n_lr = len(s.get("lrs", [1e-3]))
        lm = 2 * shape.get("params", 0) * (passes * (sae_tok + val_tok) + cells * store_tok)
        flops = cells * (sae_flops(d, d_sae, "topk", k) * sae_tok * n_lr + 2 * d * d_sae * store_tok) + lm
        return Estimate(), Cost(tokens=passes * (sae_tok + val_tok) + cells * store_tok, flops=flops, work="sae",
                                note=f"{cells} cells ({n_ckpt} checkpoints x {layers} layers), SAE {d}x{d_sae}, "
                                     f"{n_lr} lr, {passes} LM passes for the SAEs")
    if kind == "inject":
        run = est.get(s.get("run")) if isinstance(s.get("run"), str) else None
        shape = (run.model if run else None) or {}
        tokens = s.get("docs", 100) * 250 * 5
        return Estimate(), Cost(tokens=tokens, flops=2 * shape.get("params", 0) * tokens)
    return Estimate(), Cost(note="")


def _inputs_estimate(recipe: Recipe) -> dict[str, Estimate]:
    """Estimates of the user inputs: from the recipe's `docs`/`tokens_per_doc` hints, or a given file's size."""
    import tomllib

    raw = tomllib.loads(recipe.path.read_text(encoding="utf-8")).get("inputs", {})
    out = {}
    for name, spec in recipe.inputs.items():
        hint = raw.get(name, {})
        docs = float(hint.get("docs", 0))
        tokens = docs * float(hint.get("tokens_per_doc", 250))
        if spec.value and Path(str(spec.value)).is_file() and not docs:
            size = Path(str(spec.value)).stat().st_size
            tokens = size / BYTES_PER_TOKEN["en"]
            docs = tokens / 250
        model = None
        if "preset" in hint:
            model = _preset_shape(hint["preset"], int(hint.get("vocab", 32000)))
        out[f"${name}"] = Estimate(docs=docs, tokens=tokens, model=model)
    return out


def _keyed(value: Any, est: dict[str, Estimate]) -> Any:
    """Settings with references turned into keys of the estimate table ("@stage/output" -> "stage")."""
    if isinstance(value, Ref):
        return value.stage
    if isinstance(value, InputRef):
        return f"${value.name}"
    if isinstance(value, list):
        return [_keyed(v, est) for v in value]
    if isinstance(value, dict):
        return {k: _keyed(v, est) for k, v in value.items()}
    return value


def plan(recipe: Recipe, *, accelerator: str = "h100", utilisation: float = 0.35,
         calibrate: bool = True) -> list[dict[str, Any]]:
    """One row per stage: tokens, FLOPs, estimated seconds here and on the accelerator."""
    from babelscope.errors import UserError

    if accelerator not in ACCELERATORS:
        raise UserError(f"unknown accelerator '{accelerator}'; choose one of {', '.join(ACCELERATORS)}")
    peak = ACCELERATORS[accelerator] * utilisation
    est = _inputs_estimate(recipe)
    cal = Calibration() if calibrate else None
    rows = []
    for name, spec in recipe.stages.items():
        s = {**recipe.defaults, **_keyed(spec.settings, est)}
        e, c = estimate_stage(spec.kind, s, est, {})
        if spec.kind == "train" and s.get("log_checkpoints"):
            e.extra["checkpoints"] = int(s["log_checkpoints"])
        est[name] = e
        here = acc = 0.0
        if c.work == "api":
            here = acc = c.requests * API_SECONDS / max(1, s.get("concurrency", 8))
        elif c.work == "cpu":
            here = acc = c.seconds
        elif c.flops:
            if cal is not None:
                rate = _rate(cal, spec.kind, c, e, s, est)
                here = c.flops / rate if rate else float("nan")
            acc = c.flops / (peak * max(1, spec.nproc) * (0.9 if spec.nproc > 1 else 1.0))
            if c.sorted_elements and cal is not None:
                here += c.sorted_elements / cal.rate("sort")
            if c.requests:
                api = c.requests * API_SECONDS / max(1, s.get("concurrency", 4))
                here, acc = here + api, acc + api
        rows.append({"stage": name, "kind": spec.kind, "tokens": c.tokens, "flops": c.flops, "seconds_here": here,
                     "seconds_accelerator": acc, "nproc": spec.nproc, "note": c.note})
    return rows


# The share of this machine's measured GEMM rate that stages without a model shape of their own reach: TSEA's
# logit-weight products and sorts, and translation (CTranslate2's int8 beam search).
GEMM_SHARE = {"tsea": 0.5, "translate": 0.3, "dashboard": 0.2}


def _rate(cal: Calibration, kind: str, c: Cost, e: Estimate, s: dict, est: dict[str, Estimate]) -> float:
    """This machine's measured FLOP rate for a stage's kind of work."""
    first = s.get("models")
    first = next(iter(first.values() if isinstance(first, dict) else first), None) if first else None
    model = e.model or _model_of(s.get("model") or s.get("checkpoints") or s.get("run") or first, est) or {}
    shape = {k: model[k] for k in ("params", "layers", "hidden", "mlp", "heads", "vocab") if k in model}
    if kind == "train" and shape:
        return cal.rate("train", shape)
    if c.work == "sae" and e.sae:
        return cal.rate("sae", e.sae)
    if kind in GEMM_SHARE or not shape:
        return cal.rate("gemm") * GEMM_SHARE.get(kind, 0.3)
    return cal.rate("forward", shape)


def _human(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _count(x: float) -> str:
    for unit, div in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}" if x else "-"


def print_plan(spec: str | Path, overrides: list[str] | tuple[str, ...] = (), *, accelerator: str = "h100",
               utilisation: float = 0.35) -> list[dict[str, Any]]:
    """Print the plan table of a recipe (and return its rows)."""
    recipe = load_recipe(spec, overrides)
    rows = plan(recipe, accelerator=accelerator, utilisation=utilisation)
    name_w = max(len(r["stage"]) for r in rows)
    print(f"{recipe.name}: {recipe.title}")
    print(f"{'stage':<{name_w}}  {'kind':<10} {'tokens':>8} {'FLOPs':>8} {'this machine':>13} "
          f"{accelerator + ' x nproc':>15}  note")
    for r in rows:
        acc = _human(r["seconds_accelerator"]) + (f" x{r['nproc']}" if r["nproc"] > 1 else "")
        print(f"{r['stage']:<{name_w}}  {r['kind']:<10} {_count(r['tokens']):>8} {_count(r['flops']):>8} "
              f"{_human(r['seconds_here']):>13} {acc:>15}  {r['note']}")
    here = sum(r["seconds_here"] for r in rows if math.isfinite(r["seconds_here"]))
    acc = sum(r["seconds_accelerator"] for r in rows)
    print(f"total: {_count(sum(r['flops'] for r in rows))}FLOP; about {_human(here)} on this machine "
          f"(measured calibration), {_human(acc)} on {accelerator} at {utilisation:.0%} of its bf16 peak "
          f"({ACCELERATORS[accelerator] / 1e12:.0f} TFLOP/s)")
    return rows

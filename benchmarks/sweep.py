"""The bilingual sweep's cost: LM passes per checkpoint and wall time, one hook per pass (before) vs every layer's
SAE from one pass (after), on the same 4-layer, 3-checkpoint run, measured in the same process.

    python benchmarks/sweep.py                               # the demo's settings: mini preset, 40k SAE tokens
    python benchmarks/sweep.py --sae-tokens 10000 --store-tokens 3000 --stories 300   # quicker
    python benchmarks/sweep.py --device cuda --preset 33M --sae-tokens 2000000        # on a GPU

The checkpoints are randomly initialised models of the preset (three seeds), the corpus storyworld's parallel
English/Arabic stories with a tokenizer trained on them; nothing is downloaded. Each mode sweeps its own
directory from scratch. Forwards are counted where every activation pass runs (`models.contexts.capture`):
SAE training reads all swept layers per forward after, one layer per forward before; the feature stores read one
layer each in both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("BABELSCOPE_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch


def make_run(root: Path, preset: str, stories: int) -> tuple[Path, Path]:
    """A run dir with three checkpoints (random weights) and the corpus they are swept on."""
    from transformers import LlamaForCausalLM

    from babelscope.corpus import write_corpus
    from babelscope.corpus.storyworld import generate_stories
    from babelscope.models import llama_config
    from babelscope.tokenizer import load_tokenizer, train_tokenizer

    records = list(generate_stories(stories, langs=("en", "ar"), style="translated", seed=0))
    data = root / "docs.jsonl"
    write_corpus(data, records)
    train_tokenizer((r["text"] for r in records), vocab_size=2000, out_dir=root / "tok")
    tok = load_tokenizer(root / "tok")
    run = root / "run"
    for seed, (name, step) in enumerate([("checkpoints/step-10", 10), ("checkpoints/step-100", 100), ("final", 1000)]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama_config(preset, len(tok), bos_token_id=tok.bos_token_id,
                                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
        (run / name).mkdir(parents=True)
        model.save_pretrained(run / name)
        tok.save_pretrained(run / name)
        (run / name / "checkpoint.json").write_text(json.dumps({"step": step, "tokens": step * 2048}))
    return run, data


def sweep(run: Path, data: Path, out: Path, **settings) -> dict:
    """One sweep from scratch; its wall time and forwards per (checkpoint, hooks read per forward)."""
    import babelscope.models.contexts as contexts
    from babelscope.recipes.sweep import SweepConfig, run_sweep

    calls: Counter = Counter()
    seconds: Counter = Counter()
    capture = contexts.capture

    def counted(model, names, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return capture(model, names, *args, **kwargs)
        finally:
            key = (Path(model.name_or_path).name, len(names))
            calls[key] += 1
            seconds[key] += time.perf_counter() - t0

    contexts.capture = counted
    try:
        t0 = time.perf_counter()
        rows = run_sweep([run], [data], out, SweepConfig(**settings), log=lambda m: None)
        wall = time.perf_counter() - t0
    finally:
        contexts.capture = capture
    return {"wall_s": wall, "cells": len(rows), "calls": calls, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="mini")
    p.add_argument("--stories", type=int, default=1000)
    p.add_argument("--sae-tokens", type=int, default=40_000)
    p.add_argument("--store-tokens", type=int, default=10_000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, {args.device}, preset {args.preset}, SAE tokens {args.sae_tokens}, "
          f"store tokens {args.store_tokens}, load {os.getloadavg()[0]:.1f}", flush=True)
    settings = {"sae_tokens": args.sae_tokens, "store_tokens": args.store_tokens, "device": args.device,
                "sim_threshold": "zmatch"}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run, data = make_run(tmp, args.preset, args.stories)
        n_layers = json.loads((run / "final" / "config.json").read_text())["num_hidden_layers"]
        for mode, extra in (("after", {}), ("before", {"hooks_per_pass": 1})):
            results[mode] = sweep(run, data, tmp / mode, **settings, **extra)
        a, b = results["after"], results["before"]
        ckpts = sorted({c for c, _ in a["calls"]})
        store = {c: a["calls"][(c, 1)] for c in ckpts}  # the same stores in both modes
        sae_after = {c: a["calls"][(c, n_layers)] for c in ckpts}
        sae_before = {c: b["calls"][(c, 1)] - store[c] for c in ckpts}
        for mode, r, sae in (("after", a, sae_after), ("before", b, sae_before)):
            print(f"{mode:6s}: {r['cells']} cells in {r['wall_s']:.1f} s; per checkpoint {sorted(set(sae.values()))} "
                  f"SAE-training forwards ({sorted({sae[c] / sae_after[c] for c in ckpts})} passes) + "
                  f"{sorted(set(store.values()))} store forwards; LM forwards {sum(r['seconds'].values()):.1f} s",
                  flush=True)
        print(f"wall time before/after: {b['wall_s'] / a['wall_s']:.2f}x; LM seconds "
              f"{sum(b['seconds'].values()):.1f} -> {sum(a['seconds'].values()):.1f}; load {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({m: {"wall_s": r["wall_s"], "cells": r["cells"],
                                                   "forwards": {f"{c}/{h}": v for (c, h), v in r["calls"].items()}}
                                               for m, r in results.items()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Feature pages: seconds per page with the loss underlines computed one feature at a time (before) and with the
ablations of many features side by side in each forward (after), on the same store, measured in the same run.

    python benchmarks/dashboard.py                    # the demo's shape: 1M preset, ReLU SAE 256 x 4096, 24 pages
    python benchmarks/dashboard.py --pages 64 --device cuda --preset 33M --d-sae 32768

The model is a randomly initialised preset, the SAE a ReLU one on the last layer's MLP activation with random
weights and a threshold that lets about 2% of its latents fire, the store built from storyworld's Arabic stories
(nothing is downloaded). Both modes build the same pages (logits, examples, histograms, underlines); "before" runs
the per-feature path the dashboards used until now (`loss_deltas` with `feature_remover`, 16 contexts a forward,
the SAE re-encoding inside every forward), "after" `Dashboard.prepare_losses` (`ablation_deltas`: pairs side
by side, each forward stopped after the last token a page shows). The underlines of the two agree to float
tolerance on every token a page shows (checked here).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BABELSCOPE_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch


def setup(root: Path, preset: str, d_sae: int, tokens: int, device: str):
    """(store, tokenizer, model, sae) for the benchmark, built under `root`."""
    from transformers import LlamaForCausalLM

    from babelscope.analysis.store import FeatureStore, StoreConfig, build_store
    from babelscope.corpus import write_corpus
    from babelscope.corpus.storyworld import generate_stories
    from babelscope.models import llama_config, load_model
    from babelscope.sae.base import SAE, SAEConfig
    from babelscope.sae.io import save_sae
    from babelscope.tokenizer import train_tokenizer

    records = list(generate_stories(max(200, tokens // 150), langs=("ar",), style="translated", seed=0))
    write_corpus(root / "docs.jsonl", records)
    tok = train_tokenizer((r["text"] for r in records), vocab_size=4000, out_dir=root / "model")
    torch.manual_seed(0)
    lm = LlamaForCausalLM(llama_config(preset, len(tok), bos_token_id=tok.bos_token_id,
                                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    lm.save_pretrained(root / "model")
    hook = f"layers.{lm.config.num_hidden_layers - 1}.mlp.act"
    d_in = lm.config.intermediate_size
    sae = SAE(SAEConfig(arch="relu", d_in=d_in, d_sae=d_sae, hook_name=hook, normalize="l2"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) / d_in**0.5)
        sae.b_enc.fill_(-2.05 / d_in**0.5)  # about 2% of unit-norm inputs' pre-activations pass it
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g) / d_in**0.5)
    save_sae(sae, root / "sae", {"complete": True})
    build_store(root / "model", root / "sae", [root / "docs.jsonl"], root / "store",
                StoreConfig(tokens=tokens, context=128), device=device)
    model, tok = load_model(root / "model", device=device)
    from babelscope.sae.io import load_sae

    return FeatureStore(root / "store"), tok, model, load_sae(root / "sae", device=device)


def old_loss_for(dash, f: int, examples: list[dict]) -> dict[int, np.ndarray]:
    """The dashboards' loss underlines as computed until now: per feature, its contexts' clean log-probs (cached),
    then one ablated forward per 16 contexts with the SAE's remover patched in."""
    from babelscope.analysis.ablation import feature_remover, loss_deltas, token_logprobs

    if not dash.loss or not examples:
        return {}
    if dash._contexts is None:
        dash._contexts = dash.store.contexts()
    ids = list(dict.fromkeys(int(e["ctx"]) for e in examples))
    ctxs = [dash._contexts[i]["tokens"] for i in ids]
    missing = [i for i in ids if i not in dash._clean]
    pad = dash.tokenizer.pad_token_id or 0
    if missing:
        for i, lp in zip(missing, token_logprobs(dash.model, [dash._contexts[i]["tokens"] for i in missing],
                                                 pad_id=pad), strict=True):
            dash._clean[i] = lp
    deltas = loss_deltas(dash.model, dash.hook, ctxs, feature_remover(dash.sae, f),
                         clean=[dash._clean[i] for i in ids], pad_id=pad)
    return dict(zip(ids, deltas, strict=True))


def main(argv: list[str] | None = None) -> int:
    from babelscope.report import dashboard as dashboard_mod
    from babelscope.report.dashboard import Dashboard, build_site

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="1M")
    p.add_argument("--d-sae", type=int, default=4096)
    p.add_argument("--tokens", type=int, default=40_000)
    p.add_argument("--pages", type=int, default=24)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store, tok, model, sae = setup(tmp, args.preset, args.d_sae, args.tokens, args.device)
        feats = store.features()
        active = np.flatnonzero(feats["n_active"] > 0)
        pages = [int(f) for f in active[np.argsort(-feats["n_active"][active], kind="stable")][:args.pages]]
        print(f"threads {torch.get_num_threads()}, {args.device}, {args.preset}, SAE {sae.cfg.d_in} x {sae.cfg.d_sae}, "
              f"{store.meta['tokens']} tokens, {len(pages)} pages, load {os.getloadavg()[0]:.1f}", flush=True)
        times, underlines = {}, {}
        real_loss, real_prepare = Dashboard._loss_for, Dashboard.prepare_losses
        for mode in ("before", "after"):
            if mode == "before":
                Dashboard._loss_for, Dashboard.prepare_losses = old_loss_for, lambda self, features: None
            else:
                Dashboard._loss_for, Dashboard.prepare_losses = real_loss, real_prepare
            t0 = time.perf_counter()
            build_site(store, tmp / mode, tok, model=model, sae=sae, features=pages)
            times[mode] = time.perf_counter() - t0
            dash = Dashboard(store, tok, model=model, sae=sae)
            underlines[mode] = {f: dash._loss_for(f, store.examples(f)) for f in pages[:3]}
            print(f"{mode:6s}: {times[mode]:.1f} s, {times[mode] / len(pages):.2f} s per page "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
        Dashboard._loss_for, Dashboard.prepare_losses = real_loss, real_prepare
        for f, by_ctx in underlines["before"].items():
            for c, d in by_ctx.items():
                got = underlines["after"][f][c]  # up to the last token a page shows
                np.testing.assert_allclose(got, d[:len(got)], atol=1e-4)
        print(f"pages before/after: {times['before'] / times['after']:.2f}x faster "
              f"({dashboard_mod.PAGES_PER_ABLATION} pages share their forwards)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

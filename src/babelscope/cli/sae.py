"""`babelscope sae train|eval`: train sparse autoencoders on a model's activations and measure them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group
from babelscope.files import dumps

if TYPE_CHECKING:
    from babelscope.sae.metrics import SAEEvalConfig
    from babelscope.sae.train import SAETrainSettings


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "sae", "Sparse autoencoders: train them on a model's activations and evaluate them.")
    command(g, "train", run_train, "Train a ReLU or TopK SAE (one per learning rate; the best is kept).",
            settings="babelscope.sae.train:SAETrainSettings")
    command(g, "eval", run_eval, "Measure an SAE: MSE, nMSE, FVE, L0, dead/dense latents, loss recovered.",
            settings="babelscope.sae.metrics:SAEEvalConfig")


def run_train(cfg: SAETrainSettings) -> int:
    from babelscope.manifest import manifest
    from babelscope.sae.train import TrainConfig, train_sae
    from babelscope.settings import as_dict, narrow

    tcfg = narrow(cfg, TrainConfig)
    tcfg.extra = {"manifest": manifest("sae train", as_dict(cfg))}
    result = train_sae(cfg.model, cfg.hook, list(cfg.data), cfg.out, config=tcfg, cache_dir=cfg.cache,
                       resume=cfg.resume, device=cfg.device, threads=cfg.threads)
    if result.out_dir is not None:
        m = result.metrics
        print(f"{result.out_dir}: lr {m['lr']:g}  fve {m.get('fve', float('nan')):.4f}  l0 {m.get('l0', 0):.1f}  "
              f"dead {m.get('dead_fraction', float('nan')):.2%}")
    return 0


def run_eval(cfg: SAEEvalConfig) -> int:
    from babelscope.corpus import iter_corpus
    from babelscope.files import check_output, write_json_atomic
    from babelscope.sae.metrics import evaluate_sae
    from babelscope.sae.pairing import load_pair

    records = iter_corpus(cfg.data, cfg.text_field)
    if cfg.out:
        check_output(cfg.out, directory=False)
    model, tok, sae, hook = load_pair(cfg.model, cfg.sae, device=cfg.device, hook=cfg.hook, force=cfg.force)
    metrics = evaluate_sae(sae, model, tok, records, tokens=cfg.tokens,
                           hook=hook, positions=cfg.positions, context_size=cfg.context_size,
                           batch_size=cfg.batch_size, lm_loss=cfg.lm_loss, force=cfg.force)
    if cfg.out:
        write_json_atomic(cfg.out, metrics)
    print(dumps(metrics, indent=2))
    return 0

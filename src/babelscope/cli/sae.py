"""`babelscope sae train|eval`: train sparse autoencoders on a model's activations and measure them."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group

if TYPE_CHECKING:
    from babelscope.sae.metrics import SAEEvalConfig
    from babelscope.sae.train import SAETrainSettings


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "sae", "Sparse autoencoders: train them on a model's activations and evaluate them.")
    command(g, "train", run_train, "Train a ReLU or TopK SAE (one per learning rate; the best is kept), on one "
                                   "hook or many from one pass of the model.",
            settings="babelscope.sae.train:SAETrainSettings")
    command(g, "eval", run_eval, "Measure an SAE: MSE, nMSE, FVE, L0, dead/dense latents, loss recovered.",
            settings="babelscope.sae.metrics:SAEEvalConfig")


def run_train(cfg: SAETrainSettings) -> int:
    from babelscope.sae.train import train_from_settings

    for result in train_from_settings(cfg).values():
        if result.out_dir is not None:
            m = result.metrics
            print(f"{result.out_dir}: lr {m['lr']:g}  fve {m.get('fve', float('nan')):.4f}  "
                  f"l0 {m.get('l0', 0):.1f}  dead {m.get('dead_fraction', float('nan')):.2%}")
    return 0


def run_eval(cfg: SAEEvalConfig) -> int:
    from babelscope.corpus import iter_corpus
    from babelscope.files import write_json_atomic
    from babelscope.models import load_model
    from babelscope.sae import load_sae
    from babelscope.sae.metrics import evaluate_sae

    sae = load_sae(cfg.sae)
    model, tok = load_model(cfg.model, device=cfg.device)
    sae = sae.to(next(model.parameters()).device)
    metrics = evaluate_sae(sae, model, tok, iter_corpus(cfg.data, cfg.text_field), tokens=cfg.tokens,
                           hook=cfg.hook, positions=cfg.positions, context_size=cfg.context_size,
                           batch_size=cfg.batch_size, lm_loss=cfg.lm_loss)
    if cfg.out:
        write_json_atomic(cfg.out, metrics)
    print(json.dumps(metrics, indent=2))
    return 0

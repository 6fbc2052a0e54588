"""`babelscope sae train|eval|compare`: train sparse autoencoders on a model's activations and measure them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group
from babelscope.files import dumps

if TYPE_CHECKING:
    from babelscope.sae.convergence import SAECompareConfig
    from babelscope.sae.metrics import SAEEvalConfig
    from babelscope.sae.train import SAETrainSettings


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "sae", "Sparse autoencoders: train them on a model's activations and evaluate them.")
    command(g, "train", run_train, "Train a ReLU or TopK SAE (one per learning rate; the best is kept), on one "
                                   "hook or many from one pass of the model.",
            settings="babelscope.sae.train:SAETrainSettings")
    command(g, "eval", run_eval, "Measure an SAE: MSE, nMSE, FVE, L0, dead/dense latents, loss recovered, and how "
            "far its decoder moved from its init.", settings="babelscope.sae.metrics:SAEEvalConfig")
    command(g, "compare", run_compare, "Match the features of two SAEs: mean max cosine, one-to-one matching, each "
            "one's movement from its init, and two untrained inits as the floor.",
            settings="babelscope.sae.convergence:SAECompareConfig")


def run_train(cfg: SAETrainSettings) -> int:
    from babelscope.sae.train import train_from_settings

    for result in train_from_settings(cfg).values():
        if result.out_dir is not None:
            m = result.metrics
            print(f"{result.out_dir}: lr {m['lr']:g}  fve {m.get('fve', float('nan')):.4f}  "
                  f"l0 {m.get('l0', 0):.1f}  dead {m.get('dead_fraction', float('nan')):.2%}  {_learned(m)}")
    return 0


def _learned(m: dict) -> str:
    """One line: median cosine of the decoder rows with their init and, if measured, the seeds' stability."""
    text = f"decoder cos to init (median) {m['decoder']['cos_to_init']['median']:.3f}" if "decoder" in m else ""
    st = m.get("stability")
    if st:
        text += (f"  seed stability (mean max cos) {st['mmcs']:.3f} vs {st['init_control']['mmcs']:.3f} for two "
                 "untrained inits")
    return text


def run_eval(cfg: SAEEvalConfig) -> int:
    from babelscope.corpus import iter_corpus
    from babelscope.files import check_output, write_json_atomic
    from babelscope.sae.convergence import sae_movement
    from babelscope.sae.metrics import evaluate_sae
    from babelscope.sae.pairing import load_pair

    records = iter_corpus(cfg.data, cfg.text_field)
    if cfg.out:
        check_output(cfg.out, directory=False)
    model, tok, sae, hook = load_pair(cfg.model, cfg.sae, device=cfg.device, hook=cfg.hook, force=cfg.force)
    metrics = evaluate_sae(sae, model, tok, records, tokens=cfg.tokens,
                           hook=hook, positions=cfg.positions, context_size=cfg.context_size,
                           batch_size=cfg.batch_size, lm_loss=cfg.lm_loss, force=cfg.force)
    metrics["decoder"] = sae_movement(sae)  # None for an SAE that does not record its init seed
    if cfg.out:
        write_json_atomic(cfg.out, metrics)
    print(dumps(metrics, indent=2))
    return 0


def run_compare(cfg: SAECompareConfig) -> int:
    from babelscope.files import write_json_atomic
    from babelscope.sae import load_sae
    from babelscope.sae.convergence import compare_saes

    result = {"a": cfg.a, "b": cfg.b, **compare_saes(load_sae(cfg.a), load_sae(cfg.b), hungarian=cfg.hungarian)}
    if cfg.out:
        write_json_atomic(cfg.out, result)
    print(dumps(result, indent=2))
    return 0

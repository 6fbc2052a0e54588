"""`babelscope export model|sae|features`: hub-ready directories with cards, and Neuronpedia feature JSON."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group

if TYPE_CHECKING:
    from babelscope.export.model import ExportModelConfig
    from babelscope.export.neuronpedia import ExportFeaturesConfig
    from babelscope.export.sae import ExportSAEConfig


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "export", "Export models, SAEs and features for model hubs and Neuronpedia.")
    command(g, "model", run_model, "A model directory with its model card (README.md), ready to upload.",
            description="Copy a model directory's files (not the optimizer state) and write a model card: front "
                        "matter a hub reads, the training data, tokens seen, validation losses, the preset and "
                        "how to load it.", settings="babelscope.export.model:ExportModelConfig")
    command(g, "sae", run_sae, "An SAE directory (SAELens layout) with its card, ready to upload.",
            description="Copy an SAE directory and write its card: hook (TransformerLens and babelscope names), "
                        "width, k or L1, normalisation, FVE, L0 and the dead share.", settings="babelscope.export.sae:ExportSAEConfig")
    command(g, "features", run_features, "Neuronpedia-style JSON per feature from a feature store.",
            description="Per-feature JSON (features/N.json) and upload batches (batch-K.json) with top activations, "
                        "activation intervals, logit tables and histograms, and an explanations slot.",
            settings="babelscope.export.neuronpedia:ExportFeaturesConfig")


def run_model(cfg: ExportModelConfig) -> int:
    from babelscope.export.model import export_model

    print(f"model and card: {export_model(cfg)}")
    return 0


def run_sae(cfg: ExportSAEConfig) -> int:
    from babelscope.export.sae import export_sae

    print(f"SAE and card: {export_sae(cfg)}")
    return 0


def run_features(cfg: ExportFeaturesConfig) -> int:
    from babelscope.export.neuronpedia import export_features

    done = export_features(cfg)
    print(f"{done['features']} features in {done['batches']} batches: {cfg.out}"
          + ("" if done["logits"] else " (no model/SAE found: logit tables left empty)"))
    return 0

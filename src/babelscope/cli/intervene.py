"""`babelscope intervene inject`: add a fully trained model's SAE features of one type to a mid-training model."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group

if TYPE_CHECKING:
    from babelscope.intervene.inject import InjectConfig


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "intervene", "Interventions with SAE features (injection).")
    command(g, "inject", run, "Inject the full model's features of one type into a mid-training model.",
            description="At the SAE's hook the mid model's activation becomes h_mid + alpha * s * "
                        "W_dec^T(m * E(h_full)) with m the n most frequently active features of a type "
                        "(from the full model's feature store) and s = ||h_full|| (--space raw) or 1 "
                        "(--space normalised, the study's formula). Prints and writes perplexity per "
                        "language and overall (the study's Table 1).",
            settings="babelscope.intervene.inject:InjectConfig")


def run(cfg: InjectConfig) -> int:
    from babelscope.intervene.inject import format_table, run_injection
    from babelscope.settings import as_dict

    rows, labels = run_injection(
        cfg.full, cfg.mid, cfg.sae, cfg.data, cfg.out, features_dir=cfg.features, layer=cfg.layer,
        types=[cfg.type], n=[1000, 3000, 5000] if cfg.grid else cfg.n,
        alpha=[0.05, 0.1, 0.2] if cfg.grid else cfg.alpha, space=cfg.space, tau=cfg.tau,
        max_docs=cfg.max_docs, max_tokens=cfg.max_tokens, batch_size=cfg.batch_size, device=cfg.device,
        command_args=as_dict(cfg), force=cfg.force)
    print(format_table(rows, labels), end="")
    print(json.dumps({"out": str(cfg.out)}))
    return 0

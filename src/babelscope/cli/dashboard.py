"""`babelscope dashboard`: static HTML feature pages and a searchable index from a feature store."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from babelscope.cli._common import command

if TYPE_CHECKING:
    from babelscope.report.dashboard import DashboardConfig


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "dashboard", run, "Feature dashboards (HTML, offline) from a feature store.",
            description="One page per feature (activation histogram with density, logit histogram and top/"
                        "bottom logits, top examples coloured by activation and underlined by the feature's "
                        "loss effect, activation intervals) and an index to search and sort features.",
            settings="babelscope.report.dashboard:DashboardConfig")


def run(cfg: DashboardConfig) -> int:
    import numpy as np

    from babelscope.models import resolve_device
    from babelscope.report.dashboard import build_site, load_for_site, read_tsea

    store, tok, model, sae = load_for_site(cfg.features, model_dir=cfg.model, sae_dir=cfg.sae,
                                           device=resolve_device(cfg.device), need_model=cfg.use_model)
    features = cfg.only
    if cfg.limit is not None:
        feats = store.features()
        active = np.flatnonzero(feats["n_active"] > 0)
        order = active[np.argsort(-feats["frequency"][active], kind="stable")]
        features = [int(f) for f in (order if features is None else [f for f in order if f in set(features)])]
        features = features[:cfg.limit]
    result = build_site(store, cfg.out, tok, model=model, sae=sae, tsea=read_tsea(cfg.tsea), features=features,
                        loss=cfg.loss, png=cfg.png)
    print(json.dumps(result))
    return 0

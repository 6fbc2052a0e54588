"""`babelscope analyze features` (the feature store) and `babelscope analyze tsea` (token set enrichment).

The `analyze` group is shared: other command modules add subcommands to it through `analyze_commands(sub)`,
whichever module registers first creates it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group
from babelscope.files import dumps

if TYPE_CHECKING:
    from babelscope.analysis.store import FeaturesConfig
    from babelscope.analysis.tsea import TseaConfig


def analyze_commands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The subcommand table of `babelscope analyze`, created on first use."""
    return group(sub, "analyze", "Analyse SAE features (feature store, TSEA, languages).")


def register(sub: argparse._SubParsersAction) -> None:
    cmds = analyze_commands(sub)
    command(cmds, "features", run_features, "One pass of model + SAE over a corpus into a feature store.",
            description="Stream documents through the model and the SAE once, writing sparse activation shards "
                        "(resumable), then compute per-feature statistics, token attributions at 70% of each "
                        "feature's max (per token and document label), span statistics and examples: "
                        "features/attributions/examples/contexts.parquet + meta.json.",
            settings="babelscope.analysis.store:FeaturesConfig")

    command(cmds, "tsea", run_tsea, "Token set enrichment of every feature's logit weights, against null directions.",
            description="Score token sets (English/Arabic names, name_then_punct, FILE.txt, re:PATTERN) for every "
                        "feature (signed GSEA running-sum score); for a pair of sets test each feature's gap against "
                        "null directions of several families over several seeds (empirical p-value, "
                        "Benjamini-Hochberg across features, counts with intervals). Writes tsea.parquet/.csv, "
                        "calibrated.parquet, null.parquet, sets.json, meta.json, and the scatter, gap histogram and "
                        "Manhattan plots (PNG + HTML).",
            settings="babelscope.analysis.tsea:TseaConfig")


def run_features(cfg: FeaturesConfig) -> int:
    from babelscope.analysis.store import StoreConfig, build_store
    from babelscope.settings import as_dict, narrow

    meta = build_store(cfg.model, cfg.sae, cfg.data, cfg.out, narrow(cfg, StoreConfig), text_field=cfg.text_field,
                       device=cfg.device, keep_cache=cfg.keep_cache, command_args=as_dict(cfg), force=cfg.force,
                       precision=cfg.precision)
    print(dumps({k: meta[k] for k in ("tokens", "n_docs", "n_features", "labels", "hook")}))
    return 0


def run_tsea(cfg: TseaConfig) -> int:
    from babelscope.analysis.tsea import analyze_tsea
    from babelscope.report.tsea import tsea_figures

    meta = analyze_tsea(cfg)
    figures = tsea_figures(cfg.out)
    for name in meta.get("empty_sets", []):
        print(f"babelscope: warning: token set '{name}' has no token in this vocabulary (see sets.json); its "
              "scores are empty", file=sys.stderr)
    shown = {k: meta.get(k) for k in ("sets", "n_features", "threshold", "plot_scale", "scatter_pair",
                                      "beyond_threshold")}
    null = meta.get("null")
    if null:
        shown["calibrated"] = {f: {side: {k: c[k] for k in ("count", "count_interval")}
                                   for side, c in r["calibrated"].items()}
                               for f, r in null["families"].items()}
        shown["null_beyond_threshold"] = {f: {side: {k: round(v[k], 2) for k in ("mean", "sd")}
                                              for side, v in r.get("threshold_count", {}).items()}
                                          for f, r in null["families"].items()}
        shown["level"] = null["level"]
    shown["figures"] = [v for k, v in figures.items() if k in ("scatter", "manhattan")]
    print(json.dumps(shown, ensure_ascii=False))
    print("calibrated: each feature's gap against the pooled gaps of a null family's directions (empirical p, "
          "Benjamini-Hochberg); the KS q-values in tsea.parquet only say that a set's logits differ from the "
          "rest's, which nearly any direction passes for a coherent set", file=sys.stderr)
    return 0


def _args(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k != "func"}

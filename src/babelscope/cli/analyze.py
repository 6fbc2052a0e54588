"""`babelscope analyze features` (the feature store) and `babelscope analyze tsea` (token set enrichment).

The `analyze` group is shared: other command modules add subcommands to it through `analyze_commands(sub)`,
whichever module registers first creates it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from babelscope.cli._common import command, group, number

if TYPE_CHECKING:
    from babelscope.analysis.store import FeaturesConfig


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

    p = command(cmds, "tsea", run_tsea, "Token set enrichment of every feature's logit weights.",
                description="Score token sets (English/Arabic names, name_then_punct, FILE.txt, re:PATTERN) for "
                            "every feature: signed GSEA running-sum score, KS p-value, Benjamini-Hochberg q-value; "
                            "writes tsea.parquet/.csv, sets.json, a scatter of two sets and Manhattan plots "
                            "(PNG + HTML).")
    p.add_argument("--model", required=True, help="HF model directory")
    p.add_argument("--sae", required=True, help="SAE directory")
    p.add_argument("--sets", nargs="+", required=True,
                   help="comma-separated: english_names, english_names_latin, english_names_arabic, arabic_names, "
                        "arabic_names_latin, name_then_punct (needs --data), FILE.txt, re:PATTERN (runs to the "
                        "end of its argument)")
    p.add_argument("--out", required=True)
    p.add_argument("--data", nargs="*", help="corpus for name_then_punct")
    p.add_argument("--text-field", default="text")
    p.add_argument("--max-docs", type=number, default=10_000, help="documents read for name_then_punct")
    p.add_argument("--min-count", type=int, default=1, help="name_then_punct: times a name must precede punctuation")
    p.add_argument("--multi", choices=("drop", "first"), default="drop",
                   help="multi-token words: drop them (default) or use their first token")
    p.add_argument("--weight", type=float, default=0.0, help="GSEA weight p (|logit|^p); 0 = unweighted KS form")
    p.add_argument("--scatter", help="X,Y: the sets on the scatter's horizontal and vertical axes (default: the "
                                      "second and the first set, so with --sets english_names,arabic_names features "
                                      "above the diagonal favour English names, as in Study A)")
    p.add_argument("--scale", choices=("log", "raw"), default="log",
                   help="plot scale: log = sign(ES)*-ln(1-|ES|) as the study's figures (default), raw = ES")
    p.add_argument("--threshold", type=float, default=None,
                   help="mark features with |score_b - score_a| above this (default 2 on the log scale, 0.5 raw)")
    p.add_argument("--null", type=number, default=None,
                   help="random unit directions scored as a baseline for the count beyond the threshold (default: "
                        "as many as features; 0: none)")
    p.add_argument("--chunk", type=int, default=512, help="features per chunk")
    p.add_argument("--device", default="auto")


def run_features(cfg: FeaturesConfig) -> int:
    from babelscope.analysis.store import StoreConfig, build_store
    from babelscope.settings import as_dict, narrow

    meta = build_store(cfg.model, cfg.sae, cfg.data, cfg.out, narrow(cfg, StoreConfig), text_field=cfg.text_field,
                       device=cfg.device, keep_cache=cfg.keep_cache, command_args=as_dict(cfg))
    print(json.dumps({k: meta[k] for k in ("tokens", "n_docs", "n_features", "labels", "hook")},
                     ensure_ascii=False))
    return 0


def run_tsea(args: argparse.Namespace) -> int:
    from babelscope.analysis.token_sets import parse_specs
    from babelscope.analysis.tsea import analyze_tsea

    pair = parse_specs([args.scatter]) if args.scatter else None
    meta = analyze_tsea(args.model, args.sae, parse_specs(args.sets), args.out, data=args.data,
                        text_field=args.text_field, max_docs=args.max_docs, multi=args.multi,
                        min_count=args.min_count, device=args.device, command_args=_args(args), p=args.weight,
                        threshold=args.threshold, scale=args.scale, pair=pair, chunk=args.chunk,
                        null=None if args.null is None else int(args.null))
    for name in meta.get("empty_sets", []):
        print(f"babelscope: warning: token set '{name}' has no token in this vocabulary (see sets.json); its "
              "scores are empty", file=sys.stderr)
    print(json.dumps({k: meta.get(k) for k in ("sets", "n_features", "threshold", "plot_scale", "scatter_pair",
                                                "beyond_threshold", "null", "marked")}, ensure_ascii=False))
    return 0


def _args(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k != "func"}

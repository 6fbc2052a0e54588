"""`babelscope export features`: Neuronpedia-style per-feature JSON from a feature store.

Each `features/N.json` holds what a Neuronpedia feature dashboard shows, under the keys SAEDashboard's
Neuronpedia export uses: the logit tables (`pos_str`/`pos_values`, `neg_str`/`neg_values`) and the logit-weight
histogram, the activation density (`frac_nonzero`) and histogram, and `activations`: the top examples (bin_min
-1, bin_max the feature's max) then each activation interval's examples (bin_min, bin_max, bin_contains: the
interval's share of activations), each as token texts and the feature's activation on every token. An empty
`explanations` list is the slot for autointerp explanations. `batch-0.json` holds the same features with the
batch header (model_id, layer, sae_set) that Neuronpedia's upload reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.settings import Settings, opt

BATCH_SIZE = 128


@dataclass(kw_only=True)
class ExportFeaturesConfig(Settings):
    """`babelscope export features`: per-feature JSON for Neuronpedia from a feature store."""

    features: str = opt(help="feature store directory (from `babelscope analyze features`)")
    out: str = opt(help="directory to write: features/N.json and batch-K.json")
    model: str | None = opt(None, "model directory for the logit tables (default: the store's)")
    sae: str | None = opt(None, "SAE directory for the logit tables (default: the store's)")
    model_id: str | None = opt(None, "Neuronpedia model id (default: the model's name)")
    sae_set: str | None = opt(None, "Neuronpedia SAE set name (default: the SAE directory's name)")
    only: list[int] = opt(help="export only these features (default: every feature that was active)",
                          default_factory=list, ge=0)
    device: str = opt("cpu", "cpu, cuda, cuda:N or auto")
    overwrite: bool = opt(False, "replace --out if it has files")
    force: bool = opt(False, "use the SAE with a model other than the one it was trained on")


def _centres(lo: float, hi: float, n: int) -> list[float]:
    width = (hi - lo) / max(n, 1)
    return [lo + width * (i + 0.5) for i in range(n)]


def neuronpedia_feature(data: dict[str, Any], text, tokens_seen: int) -> dict[str, Any]:
    """One feature in Neuronpedia's dashboard shape, from the dashboard's `feature_data` (token texts decoded raw,
    so they concatenate to the text)."""
    logits = data.get("logits") or {"top": [], "bottom": [], "hist": {"counts": [], "lo": 0.0, "hi": 0.0}}
    hist = data["hist"]

    def example(ex: dict, lo: float, hi: float, contains: float) -> dict:
        ids = [t["id"] for t in ex["tokens"]]
        return {"bin_min": lo, "bin_max": hi, "bin_contains": contains, "tokens": text.pieces(ids),
                "values": [t["act"] for t in ex["tokens"]], "qualifying_token_index": ex["pos"],
                "label": ex.get("label"), "record_id": ex.get("record_id")}

    activations = [example(ex, -1, data["max_act"], -1) for ex in data["top_examples"]]
    for group in data["intervals"]:
        activations += [example(ex, group["lo"], group["hi"], group["share"] if group["share"] is not None else -1)
                        for ex in group["examples"]]
    lh = logits["hist"]
    return {
        "feature_index": data["feature"],
        "pos_str": [text.token(t["id"]) for t in logits["top"]], "pos_values": [t["value"] for t in logits["top"]],
        "neg_str": [text.token(t["id"]) for t in logits["bottom"]],
        "neg_values": [t["value"] for t in logits["bottom"]],
        "frac_nonzero": data["density"],
        "freq_hist_data_bar_heights": hist, "freq_hist_data_bar_values": _centres(0.0, data["hist_max"] or 0.0,
                                                                                 len(hist)),
        "logits_hist_data_bar_heights": lh["counts"],
        "logits_hist_data_bar_values": _centres(lh["lo"], lh["hi"], len(lh["counts"])),
        "num_tokens_for_dashboard": tokens_seen, "max_act": data["max_act"],
        "activations": activations,
        "explanations": [],
    }


def export_features(cfg: ExportFeaturesConfig) -> dict[str, Any]:
    """Write features/N.json and batch-K.json for the chosen features; returns the batch header and the count."""
    from babelscope.export.publish import staged
    from babelscope.models.hooks import HookPoint
    from babelscope.progress import progress
    from babelscope.report.dashboard import Dashboard, load_for_site
    from babelscope.report.text import TokenText, clean_floats
    from babelscope.sae.io import model_label

    store, tokenizer, model, sae = load_for_site(cfg.features, model_dir=cfg.model, sae_dir=cfg.sae,
                                                 device=cfg.device, force=cfg.force)
    dash = Dashboard(store, tokenizer, model=model, sae=sae, loss=False)
    meta = store.meta
    features = cfg.only or [int(f) for f in np.flatnonzero(dash.feats["n_active"] > 0)]
    header = {"model_id": cfg.model_id or model_label(str(meta.get("model", ""))),
              "layer": HookPoint.parse(meta["hook"]).layer if meta.get("hook") else None,
              "sae_set": cfg.sae_set or Path(str(meta.get("sae", "sae"))).name,
              "hook_name": HookPoint.parse(meta["hook"]).format("tl") if meta.get("hook") else None,
              "settings": {"n_prompts_total": meta.get("n_contexts"), "n_tokens_in_prompt": meta.get("config", {}
                                                                                                  ).get("context")}}
    text = TokenText(tokenizer)
    with staged(cfg.out, cfg.overwrite) as tmp:
        (tmp / "features").mkdir()
        batch: list[dict] = []
        n_batches = 0
        for f in progress(features, desc="export features", unit="feature"):
            feature = clean_floats(neuronpedia_feature(dash.feature_data(f), text, int(meta.get("tokens", 0))))
            (tmp / "features" / f"{f}.json").write_text(json.dumps(feature, ensure_ascii=False, allow_nan=False),
                                                       encoding="utf-8")
            batch.append(feature)
            if len(batch) == BATCH_SIZE or f == features[-1]:
                (tmp / f"batch-{n_batches}.json").write_text(
                    json.dumps({**header, "features": batch}, ensure_ascii=False, allow_nan=False), encoding="utf-8")
                n_batches += 1
                batch = []
    return {**header, "features": len(features), "batches": n_batches, "logits": model is not None}

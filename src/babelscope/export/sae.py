"""`babelscope export sae`: an SAE directory ready for a hub: the SAELens files and a card with its hook, width,
sparsity setting and quality (FVE, L0, dead share)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babelscope.errors import UserError
from babelscope.export.cards import card, code, md_table
from babelscope.settings import Settings, opt


@dataclass(kw_only=True)
class ExportSAEConfig(Settings):
    """`babelscope export sae`: copy an SAE directory and write its card (README.md)."""

    sae: str = opt(help="SAE directory (cfg.json, sae_weights.safetensors, training.json)")
    out: str = opt(help="directory to write: the SAE files and README.md")
    name: str | None = opt(None, "the SAE's name on the card (default: the directory's name)")
    base_model: str | None = opt(None, "the hub id of the model the SAE reads, for the card's base_model")
    license: str | None = opt(None, "license id for the card, e.g. apache-2.0")
    overwrite: bool = opt(False, "replace --out if it has files")


def sae_facts(sae_dir: str | Path) -> dict[str, Any]:
    """The SAE's config, its SAELens metadata and its training record."""
    from babelscope.inputs import read_json
    from babelscope.sae.io import CFG, read_cfg, read_training

    cfg = read_cfg(sae_dir)
    raw = read_json(Path(sae_dir) / CFG, CFG)
    return {"cfg": cfg, "saelens": raw, "training": read_training(sae_dir)}


def sae_card(facts: dict[str, Any], name: str, base_model: str | None, license: str | None) -> str:
    """README.md for an SAE directory (see `sae_facts`)."""
    from babelscope.models.hooks import HookPoint

    cfg, raw, tr = facts["cfg"], facts["saelens"], facts["training"]
    meta_lens = raw.get("metadata", {})
    tl_hook = meta_lens.get("hook_name") or cfg.hook_name
    try:
        ours = HookPoint.parse(cfg.hook_name).format()
    except UserError:
        ours = cfg.hook_name
    meta = {"library_name": "saelens", "base_model": base_model, "license": license,
            "tags": ["sparse-autoencoder", "sae", "saelens", "babelscope", cfg.arch]}
    sparsity = f"TopK, k = {cfg.k}" if cfg.arch == "topk" else f"ReLU with L1 coefficient {tr.get('l1', '?')}"
    norm = {"l2": "each input vector scaled to unit norm (SAELens: constant_norm_rescale, norm sqrt(d_in))",
            "scale": f"inputs multiplied by a fixed {cfg.scale:.4g}", "none": "raw activations"}[cfg.normalize]
    what = (f"A sparse autoencoder on `{tl_hook}` (babelscope: `{ours}`) of `{meta_lens.get('model_name') or cfg.model}`:"
            f" {cfg.d_in} inputs, {cfg.d_sae} latents ({cfg.d_sae // max(cfg.d_in, 1)}x), {sparsity}; {norm}. "
            f"Trained on contexts of {meta_lens.get('context_size')} tokens, BOS first"
            f"{' (positions ' + str(cfg.extra['positions']) + ')' if cfg.extra.get('positions') else ''}.")
    m = tr.get("metrics") or {}
    quality = ""
    if m:
        rows = [{"metric": "fraction of variance explained (FVE)", "value": m.get("fve")},
                {"metric": "L0 (active latents per token)", "value": m.get("l0")},
                {"metric": "dead latents (never fired on validation)", "value": m.get("dead_fraction")},
                {"metric": "dead latents (training window)", "value": m.get("dead_train_fraction")},
                {"metric": "normalised MSE", "value": m.get("nmse")},
                {"metric": "validation activations", "value": m.get("tokens")},
                {"metric": "training activations", "value": m.get("train_tokens")},
                {"metric": "learning rate (best of the grid)", "value": tr.get("best_lr")}]
        quality = md_table([r for r in rows if r["value"] is not None], ["metric", "value"])
    scale = raw.get("babelscope_activation_scale", 1.0)
    load = code("python", """
from sae_lens import SAE

sae = SAE.load_from_disk("PATH")  # or babelscope.sae.load_sae("PATH")
""") + (f"\nSAELens' feature activations are {scale:.4g} x babelscope's (its inputs have norm sqrt(d_in)); "
        "reconstructions agree." if abs(scale - 1.0) > 1e-12 else "")
    return card(meta, name, [("SAE", what), ("Quality", quality), ("How to load it", load),
                             ("Made with", "babelscope `sae train`; training.json holds every setting and the "
                                           "learning-rate grid.")])


def export_sae(cfg: ExportSAEConfig) -> Path:
    """Copy the SAE files and write README.md into `cfg.out`; returns it."""
    from babelscope.export.publish import staged
    from babelscope.sae.io import load_sae

    facts = sae_facts(cfg.sae)
    load_sae(cfg.sae)  # a truncated or inconsistent weight file is not published
    src = Path(cfg.sae)
    if Path(cfg.out).resolve() == src.resolve():
        raise UserError("--out must differ from --sae", path=cfg.out)
    name = cfg.name or src.resolve().name
    with staged(cfg.out, cfg.overwrite) as tmp:
        for f in ("cfg.json", "sae_weights.safetensors", "training.json"):
            if (src / f).is_file():
                shutil.copy2(src / f, tmp / f)
        (tmp / "README.md").write_text(sae_card(facts, name, cfg.base_model, cfg.license), encoding="utf-8")
    return Path(cfg.out)

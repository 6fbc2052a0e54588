"""`babelscope export model`: a model directory ready for a hub: the HF files (no training state) and a card
that says what data it saw, how many tokens, its validation losses, its preset and how to load it."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babelscope.errors import UserError
from babelscope.export.cards import card, code, md_table, thin
from babelscope.settings import Settings, opt

TRAINING_STATE = ("trainer_state.pt", "checkpoint.json")


@dataclass(kw_only=True)
class ExportModelConfig(Settings):
    """`babelscope export model`: copy a model directory and write its model card (README.md)."""

    model: str = opt(help="model directory (RUN/final or RUN/checkpoints/step-N)")
    out: str = opt(help="directory to write: the model files and README.md")
    name: str | None = opt(None, "the model's name on the card (default: the run's name)")
    language: list[str] = opt(help="languages of the training text for the card, e.g. en ar", default_factory=list)
    license: str | None = opt(None, "license id for the card, e.g. apache-2.0")
    overwrite: bool = opt(False, "replace --out if it has files")


def run_dir(model_dir: Path) -> Path | None:
    """The training run a model directory belongs to (its config.json has the train command's args)."""
    for candidate in (model_dir.parent, model_dir.parent.parent):
        cfg = candidate / "config.json"
        if cfg.is_file():
            try:
                if "args" in json.loads(cfg.read_text(encoding="utf-8")):
                    return candidate
            except (json.JSONDecodeError, UnicodeDecodeError):
                return None
    return None


def count_parameters(model_dir: Path) -> int:
    """Parameters in the safetensors files, read from their headers (nothing is loaded)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(f, framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 (safe_open has no __iter__)
                n = 1
                for d in st.get_slice(key).get_shape():
                    n *= d
                total += n
    return total


def model_facts(model_dir: str | Path, name: str | None = None) -> dict[str, Any]:
    """What the card says, from the model dir, its checkpoint.json and its run's config.json and metrics.csv."""
    from babelscope.inputs import read_json
    from babelscope.models.loading import check_model_dir
    from babelscope.sae.io import model_label
    from babelscope.train.metrics import MetricsLog

    path = check_model_dir(model_dir).resolve()
    config = read_json(path / "config.json", "config.json")
    info = read_json(path / "checkpoint.json", "checkpoint.json") if (path / "checkpoint.json").is_file() else {}
    run = run_dir(path)
    run_cfg = read_json(run / "config.json", "config.json") if run else {}
    args, shards = run_cfg.get("args", {}), run_cfg.get("shards", {})
    losses = []
    if run and (run / "metrics.csv").is_file():
        losses = [{"step": int(r["step"]), "tokens": int(r["tokens"]), "val_loss": float(r["val_loss"])}
                  for r in MetricsLog(run / "metrics.csv").read() if r.get("val_loss")]
        losses = [r for r in losses if r["step"] <= info.get("step", r["step"])]
    return {
        "name": name or model_label(str(path)), "config": config, "info": info, "args": args, "shards": shards,
        "params": count_parameters(path), "val_losses": losses,
        "base": model_label(args["init_from"]) if args.get("init_from") else None,
    }


def model_card(facts: dict[str, Any], language: list[str], license: str | None) -> str:
    """README.md for a model directory (see `model_facts`)."""
    c, info, args, shards = facts["config"], facts["info"], facts["args"], facts["shards"]
    context = c.get("max_position_embeddings")
    meta = {"library_name": "transformers", "pipeline_tag": "text-generation", "language": language,
            "license": license, "tags": ["babelscope", "story-model", c.get("model_type", "llama")]}
    shape = (f"{c.get('model_type', '?')} decoder: {c.get('num_hidden_layers')} layers, hidden size "
             f"{c.get('hidden_size')}, {c.get('num_attention_heads')} heads "
             f"({c.get('num_key_value_heads', c.get('num_attention_heads'))} key/value), MLP {c.get('intermediate_size')}, "
             f"vocabulary {c.get('vocab_size')}, context {context} tokens; {facts['params']:,} parameters.")
    model_text = shape + (f"\n\nbabelscope preset: `{args['preset']}`." if args.get("preset") else "")
    if facts["base"]:
        model_text += f"\n\nContinued pre-training of `{facts['base']}` (its weights and optimizer state)."
    data = []
    if args.get("data"):
        data.append("Training files: " + ", ".join(f"`{Path(p).name}`" for p in args["data"]) + ".")
    docs, tokens = shards.get("docs", {}), shards.get("tokens", {})
    if tokens:
        data.append(f"Training split: {docs.get('train', '?'):,} documents, {tokens.get('train', 0):,} tokens; "
                    f"validation: {docs.get('val', '?'):,} documents, {tokens.get('val', 0):,} tokens"
                    + (" (held out from the training files)." if not args.get("val_data") else "."))
    if info:
        passes = (f" ({info.get('tokens', 0) / tokens['train']:.2f} passes over the training split)"
                  if tokens.get("train") else "")
        data.append(f"Tokens seen: {info.get('tokens', 0):,} in {info.get('step', 0):,} optimizer steps{passes}.")
    if args.get("lr"):
        warmup = args.get("warmup", 0)
        warm = f"a {warmup:.0%} warm-up" if warmup < 1 else f"{int(warmup)} warm-up steps"
        data.append(f"AdamW, learning rate {args['lr']:g} ({args.get('schedule', 'constant')} after {warm}), "
                    f"batch {args.get('batch_size')} x {args.get('grad_accum', 1)} windows of "
                    f"{args.get('context') or context} tokens, seed {args.get('seed', 0)}.")
    losses = facts["val_losses"]
    loss_text = ""
    if info.get("val_loss") is not None:
        loss_text = f"Final validation loss: {info['val_loss']:.4f} nats per token.\n\n"
    if losses:
        loss_text += md_table(thin(losses, 12), ["step", "tokens", "val_loss"])
    load = code("python", f"""
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("PATH_OR_REPO")  # adds BOS, as in training; model_max_length {context}
model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")
ids = tok("Once upon a time", return_tensors="pt").input_ids
print(tok.decode(model.generate(ids, max_new_tokens=60, do_sample=True)[0], skip_special_tokens=True))
""") + "\nOr serve it behind an OpenAI-compatible API:\n\n" + code("bash", "babelscope serve --model PATH")
    return card(meta, facts["name"], [("Model", model_text), ("Training data", "\n\n".join(data)),
                                      ("Validation loss", loss_text), ("How to load it", load),
                                      ("Made with", "babelscope `train`; every setting of the run is in its "
                                                    "config.json.")])


def export_model(cfg: ExportModelConfig) -> Path:
    """Copy the model files (not the optimizer state) and write README.md into `cfg.out`; returns it."""
    from babelscope.export.publish import staged
    from babelscope.train.checkpoint import check_weights

    check_weights(cfg.model)  # a truncated weight file is not published
    facts = model_facts(cfg.model, cfg.name)
    src = Path(cfg.model)
    if Path(cfg.out).resolve() == src.resolve():
        raise UserError("--out must differ from --model", path=cfg.out)
    with staged(cfg.out, cfg.overwrite) as tmp:
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name not in TRAINING_STATE and f.name != "README.md":
                shutil.copy2(f, tmp / f.name)
        (tmp / "README.md").write_text(model_card(facts, cfg.language, cfg.license), encoding="utf-8")
    return Path(cfg.out)

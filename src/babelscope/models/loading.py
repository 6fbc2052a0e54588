"""Loading any HF causal LM (our presets are just one family) from a local directory, with clear errors."""

from __future__ import annotations

import re
from pathlib import Path

from babelscope.errors import UserError


def resolve_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise UserError(f"unknown device '{name}'; expected cpu, cuda, cuda:N, mps or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but no CUDA GPU is available")
    return name


def check_model_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise UserError("model directory does not exist", path=path)
    if not (path / "config.json").exists():
        raise UserError("not an HF model directory (no config.json)", path=path)
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise UserError("model directory has no weights (*.safetensors)", path=path)
    return path


def check_vocab(model, tokenizer, path: str | Path) -> None:
    """A tokenizer whose ids the embedding cannot hold is the classic silent mismatch; make it loud."""
    n_tok, n_model = len(tokenizer), model.get_input_embeddings().weight.shape[0]
    if n_tok > n_model:
        raise UserError(f"tokenizer has {n_tok} tokens but the model's embedding has {n_model} rows; "
                        "they do not belong together", path=path)


def load_model(path: str | Path, *, device: str = "cpu", dtype=None, tokenizer: str | Path | None = None,
               eval_mode: bool = True):
    """Load `(model, tokenizer)` from an HF model directory (tokenizer beside it unless given)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from babelscope.tokenizer import load_tokenizer

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load buries babelscope's own bars
    path = check_model_dir(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype or torch.float32)
    except Exception as e:  # transformers raises many types for a broken directory
        raise UserError(f"cannot load model ({type(e).__name__}: {e})", path=path) from None
    tok = load_tokenizer(tokenizer or path)
    check_vocab(model, tok, tokenizer or path)
    model.to(resolve_device(device))
    if eval_mode:
        model.eval()
    return model, tok

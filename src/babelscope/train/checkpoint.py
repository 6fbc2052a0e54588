"""Checkpoints: an HF model dir (weights, config, tokenizer) plus `trainer_state.pt` (optimizer, scheduler,
RNG states, data position) and `checkpoint.json` (step, tokens), written to a temporary name and renamed."""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from babelscope.errors import UserError
from babelscope.files import dumps

STATE = "trainer_state.pt"
INFO = "checkpoint.json"
_STEP = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, model, tokenizer, state: dict[str, Any], info: dict[str, Any]) -> Path:
    """Write a checkpoint directory atomically: readers see the old one or the complete new one."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per save would bury the training bar
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    context = getattr(model.config, "max_position_embeddings", None)
    if context:  # the tokenizer saved with a model says the model's context, not the tokenizer's default
        tokenizer.model_max_length = int(context)
    tokenizer.save_pretrained(tmp)
    torch.save(state, tmp / STATE)
    (tmp / INFO).write_text(dumps(info, indent=2) + "\n")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    """Read `trainer_state.pt` of a checkpoint dir; a truncated or corrupt file is a one-line error."""
    from babelscope.inputs import load_torch

    f = Path(path) / STATE
    if not f.exists():
        raise UserError(f"no {STATE}: not a babelscope checkpoint", path=Path(path))
    state = load_torch(f, "checkpoint")
    if not isinstance(state, dict):
        raise UserError(f"not a babelscope checkpoint (holds a {type(state).__name__})", path=f)
    return state


def check_weights(path: str | Path) -> None:
    """Open every safetensors file's header so a truncated weight file names itself."""
    from safetensors import safe_open

    for f in sorted(Path(path).glob("*.safetensors")):
        try:
            with safe_open(f, framework="pt") as st:
                for key in st.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    st.get_slice(key)
            size_ok = f.stat().st_size > 8
        except Exception as e:
            raise UserError(f"truncated or corrupt weights ({type(e).__name__}: {e})", path=f) from None
        if not size_ok:
            raise UserError("truncated weights", path=f)


def list_checkpoints(run: str | Path) -> list[tuple[int, Path]]:
    """Completed `step-N` checkpoints of a run (or of a checkpoints dir), oldest first."""
    run = Path(run)
    root = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    found = []
    for d in root.iterdir() if root.is_dir() else []:
        m = _STEP.match(d.name)
        if m and (d / INFO).exists():
            found.append((int(m.group(1)), d))
    return sorted(found)


def read_info(path: str | Path) -> dict[str, Any]:
    from babelscope.inputs import read_json

    return read_json(Path(path) / INFO, INFO)

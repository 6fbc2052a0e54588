"""Documents through a model: batches of tokenised contexts with their activations at hook points.

This is the one activation pass every consumer builds on: the SAE's shuffling buffer, the feature store,
the intervention. Each document becomes one context (its first `max_tokens` tokens, BOS prepended), or,
with `split_long`, as many consecutive windows as it needs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from babelscope.models.hooks import capture
from babelscope.tokenizer import encode_batch


@dataclass
class ContextBatch:
    input_ids: torch.Tensor  # [B, T] long, on CPU, right-padded
    valid: torch.Tensor  # [B, T] bool: a real token (not padding, and not BOS when BOS is dropped)
    acts: dict[str, torch.Tensor]  # hook name -> [B, T, d], on the model's device
    records: list[dict]  # the source record of each row, without its text
    starts: list[int]  # the token offset of each row within its document (non-zero for later windows)


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows as one right-padded batch: ids [B, T] (long) and the mask of real tokens [B, T] (bool)."""
    T = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, :len(r)] = True
    return ids, mask


def tokenize_contexts(tokenizer, records: Iterable[dict], max_tokens: int, *, prepend_bos: bool = True,
                      split_long: bool = False, chunk: int = 256) -> Iterator[tuple[list[int], dict, int]]:
    """Yield (token ids, record without text, offset) per context, tokenising `chunk` documents at a time."""
    bos = tokenizer.bos_token_id if prepend_bos else None
    pending: list[dict] = []

    def flush() -> Iterator[tuple[list[int], dict, int]]:
        encoded = encode_batch(tokenizer, [r["text"] for r in pending])
        for record, ids in zip(pending, encoded, strict=True):
            meta = {k: v for k, v in record.items() if k != "text"}
            ids = ([bos] if bos is not None else []) + list(ids)
            step = max_tokens if split_long else len(ids) or 1
            for start in range(0, max(len(ids), 1), step):
                window = ids[start:start + max_tokens]
                if window:
                    yield window, meta, start
        pending.clear()

    for record in records:
        pending.append(record)
        if len(pending) >= chunk:
            yield from flush()
    if pending:
        yield from flush()


def iter_contexts(model: nn.Module, tokenizer, records: Iterable[dict], hooks: list[str], *,
                  max_tokens: int = 64, batch_size: int = 32, drop_bos: bool = True, split_long: bool = False,
                  prepend_bos: bool = True, autocast: Callable[[], AbstractContextManager] | None = None
                  ) -> Iterator[ContextBatch]:
    """Stream documents through `model` and yield their activations at `hooks`, batch by batch; `autocast`
    (e.g. `lm_autocast("bf16", device)`) wraps every forward."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bos = tokenizer.bos_token_id
    batch: list[tuple[list[int], dict, int]] = []

    def run() -> ContextBatch:
        input_ids, mask = pad_right([ids for ids, _, _ in batch], pad)
        valid = mask.clone()
        if drop_bos and bos is not None:
            starts_with_bos = torch.tensor([start == 0 for _, _, start in batch]) & (input_ids[:, 0] == bos)
            valid[:, 0] &= ~starts_with_bos
        with autocast() if autocast is not None else contextlib.nullcontext():
            acts = capture(model, hooks, input_ids.to(device, non_blocking=True), mask.to(device).long())
        return ContextBatch(input_ids, valid, acts, [m for _, m, _ in batch], [s for _, _, s in batch])

    for item in tokenize_contexts(tokenizer, records, max_tokens, prepend_bos=prepend_bos, split_long=split_long):
        batch.append(item)
        if len(batch) == batch_size:
            yield run()
            batch = []
    if batch:
        yield run()


def lm_autocast(precision: str, device: str | torch.device) -> Callable[[], AbstractContextManager] | None:
    """The context a language model's forward runs in: bf16 autocast ("bf16", or "auto" on a GPU with bf16),
    else None (fp32). SAEs keep fp32 weights; their inputs are cast to fp32 when they are gathered."""
    device_type = torch.device(device).type
    use = precision == "bf16" or (precision == "auto" and device_type == "cuda" and torch.cuda.is_bf16_supported())
    if not use:
        return None
    return lambda: torch.autocast(device_type, dtype=torch.bfloat16)


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """"auto" made concrete for `device` ("bf16" or "fp32"), for records and fingerprints."""
    return "bf16" if lm_autocast(precision, device) is not None else "fp32"

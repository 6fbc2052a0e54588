"""Perplexity and bits per byte on held-out documents, overall and per document label (e.g. `lang`).

Bits per byte = total negative log-likelihood / UTF-8 bytes / ln 2, comparable across tokenizers. Long
documents are cut into windows that overlap by one token, so every token but the leading BOS is predicted
exactly once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch

from babelscope.models.contexts import pad_right
from babelscope.models.scoring import token_nll
from babelscope.tokenizer import encode_batch


@dataclass
class EvalBatch:
    input_ids: torch.Tensor  # [B, T], right-padded
    mask: torch.Tensor  # [B, T] bool, real tokens
    labels: list[str]  # the document label of each row
    n_bytes: list[int]  # UTF-8 bytes of each row's document, counted on its first window only


@dataclass
class Score:
    nll: float = 0.0
    tokens: int = 0
    bytes: int = 0
    docs: int = 0

    @property
    def loss(self) -> float:
        return self.nll / max(self.tokens, 1)

    @property
    def ppl(self) -> float:
        return math.exp(self.loss)

    @property
    def bpb(self) -> float:
        return self.nll / max(self.bytes, 1) / math.log(2)

    def row(self) -> dict:
        return {"docs": self.docs, "tokens": self.tokens, "loss": self.loss, "ppl": self.ppl, "bpb": self.bpb}


@dataclass
class Scores:
    by_label: dict[str, Score] = field(default_factory=lambda: defaultdict(Score))

    def table(self) -> dict[str, dict]:
        total = Score()
        for s in self.by_label.values():
            total.nll += s.nll
            total.tokens += s.tokens
            total.bytes += s.bytes
            total.docs += s.docs
        return {**{k: v.row() for k, v in sorted(self.by_label.items())}, "all": total.row()}


def iter_eval_batches(tokenizer, records: Iterable[dict], *, max_tokens: int = 512, batch_size: int = 16,
                      label_field: str = "lang", max_docs: int | None = None) -> Iterator[EvalBatch]:
    """Tokenise documents (BOS first) into windows overlapping by one token and batch them."""
    bos = tokenizer.bos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows: list[tuple[list[int], str, int]] = []

    def emit() -> EvalBatch:
        ids, mask = pad_right([r[0] for r in rows], pad)
        return EvalBatch(ids, mask, [r[1] for r in rows], [r[2] for r in rows])

    for n, record in enumerate(records):
        if max_docs is not None and n >= max_docs:
            break
        ids = ([bos] if bos is not None else []) + encode_batch(tokenizer, [record["text"]])[0]
        label = str(record.get(label_field, "all"))
        start, first = 0, True
        while start < len(ids) - 1:
            rows.append((ids[start:start + max_tokens], label, len(record["text"].encode()) if first else 0))
            first = False
            start += max_tokens - 1
            if len(rows) == batch_size:
                yield emit()
                rows = []
    if rows:
        yield emit()


def accumulate(scores: Scores, batch: EvalBatch, nll: torch.Tensor) -> None:
    targets = (batch.mask[:, 1:] & batch.mask[:, :-1]).sum(1)
    for i, label in enumerate(batch.labels):
        s = scores.by_label[label]
        s.nll += float(nll[i].sum())
        s.tokens += int(targets[i])
        s.bytes += batch.n_bytes[i]
        s.docs += batch.n_bytes[i] > 0


@torch.no_grad()
def perplexity(model, tokenizer, records: Iterable[dict], *, max_tokens: int | None = None, batch_size: int = 16,
               label_field: str = "lang", max_docs: int | None = None,
               forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict[str, dict]:
    """{label: {docs, tokens, loss, ppl, bpb}} plus an "all" row; `forward(ids, mask) -> logits` overrides
    the plain model call (an intervention uses it)."""
    device = next(model.parameters()).device
    max_tokens = max_tokens or getattr(model.config, "max_position_embeddings", 512)
    forward = forward or (lambda ids, mask: model(input_ids=ids, attention_mask=mask.long()).logits)
    scores = Scores()
    for batch in iter_eval_batches(tokenizer, records, max_tokens=max_tokens, batch_size=batch_size,
                                   label_field=label_field, max_docs=max_docs):
        ids, mask = batch.input_ids.to(device), batch.mask.to(device)
        accumulate(scores, batch, token_nll(forward(ids, mask), ids, mask).cpu())
    return scores.table()

"""Log-probabilities of token sequences, and their two OpenAI shapes (legacy completions and chat).

One forward pass over the whole sequence (prompt and completion) gives every token's log-probability under
the raw model distribution (no temperature or top-p), computed by the shared per-token NLL
(`models.scoring.token_nll`), so what the server reports is what scoring the sequence directly gives. The
first token has no prediction: null, as the API defines.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from babelscope.models.contexts import pad_right
from babelscope.models.scoring import token_nll


@dataclass
class Scored:
    """A scored sequence: `logprobs[i]` of token i given tokens < i (None for i = 0), `top[i]` the most likely
    (token id, log-probability) alternatives at i, most likely first (None for i = 0)."""

    ids: list[int]
    logprobs: list[float | None]
    top: list[list[tuple[int, float]] | None]


@torch.no_grad()
def score(model, sequences: list[list[int]], top_n: int = 0, pad_id: int = 0, batch_size: int = 8) -> list[Scored]:
    """Every token's log-probability (and the `top_n` alternatives) in each sequence, batched, right-padded."""
    device = next(model.parameters()).device
    out: list[Scored] = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        ids, mask = (t.to(device) for t in pad_right(chunk, pad_id))
        logits = model(input_ids=ids, attention_mask=mask.long()).logits
        chosen = (-token_nll(logits, ids, mask)).cpu()
        if top_n:
            values, indices = torch.log_softmax(logits[:, :-1].float(), dim=-1).topk(top_n, dim=-1)
            values, indices = values.cpu(), indices.cpu()
        for i, s in enumerate(chunk):
            lps: list[float | None] = [None, *chosen[i, :len(s) - 1].tolist()]
            top: list[list[tuple[int, float]] | None] = [None]
            for t in range(1, len(s)):
                alts = list(zip(indices[i, t - 1].tolist(), values[i, t - 1].tolist(), strict=True)) if top_n else []
                # The chosen token among its alternatives carries exactly its reported number.
                top.append([(a, lps[t] if a == s[t] else v) for a, v in alts])  # type: ignore[misc]
            out.append(Scored(list(s), lps, top))
    return out


def token_piece(tokenizer, token_id: int) -> tuple[str, list[int]]:
    """A token's text and UTF-8 bytes; a token holding part of a character is written `bytes:\\xNN...`, as the
    OpenAI API writes it."""
    text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if "\ufffd" not in text:
        return text, list(text.encode("utf-8"))
    raw = _byte_level_bytes(tokenizer, token_id)
    if raw is None:
        return text, list(text.encode("utf-8"))
    return "bytes:" + "".join(f"\\x{b:02x}" for b in raw), list(raw)


def _byte_level_bytes(tokenizer, token_id: int) -> bytes | None:
    """The raw bytes of a byte-level BPE token, or None for other tokenizers."""
    from babelscope.report.text import _byte_decoder

    to_byte = _byte_decoder()
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if not isinstance(piece, str) or any(c not in to_byte for c in piece):
        return None
    return bytes(to_byte[c] for c in piece)


def text_offsets(tokenizer, ids: list[int]) -> tuple[str, list[int]]:
    """(the decoded text of `ids`, the character offset in it where each token's text starts)."""
    prefixes = tokenizer.batch_decode([ids[:i] for i in range(len(ids) + 1)], skip_special_tokens=True,
                                      clean_up_tokenization_spaces=False)
    return prefixes[-1], [len(p) for p in prefixes[:-1]]


def completion_logprobs(tokenizer, scored: Scored, start: int, offsets: list[int], keep: int | None = None) -> dict:
    """The legacy `logprobs` object for tokens `start:keep` of a scored sequence: tokens, token_logprobs,
    top_logprobs (token text -> log-probability: the N likeliest and the chosen one) and text_offset (`offsets`,
    one per token of the sequence)."""
    end = len(scored.ids) if keep is None else keep
    tokens, lps, tops = [], [], []
    for t in range(start, end):
        tokens.append(token_piece(tokenizer, scored.ids[t])[0])
        lps.append(scored.logprobs[t])
        alts = scored.top[t]
        if alts is None:
            tops.append(None)
            continue
        table: dict[str, float] = {}
        for a, v in alts:  # alternatives that decode alike keep the likelier one
            table.setdefault(token_piece(tokenizer, a)[0], v)
        table.setdefault(tokens[-1], lps[-1])  # the chosen token is always there (up to N + 1 entries, as the API)
        tops.append(table)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets[start:end]}


def chat_logprobs(tokenizer, scored: Scored, start: int, keep: int | None = None) -> dict:
    """The chat `logprobs` object (`content`: token, logprob, bytes, top_logprobs) for tokens `start:keep`."""
    end = len(scored.ids) if keep is None else keep
    content = []
    for t in range(start, end):
        text, raw = token_piece(tokenizer, scored.ids[t])
        alts = []
        for a, v in scored.top[t] or []:
            a_text, a_raw = token_piece(tokenizer, a)
            alts.append({"token": a_text, "logprob": v, "bytes": a_raw})
        content.append({"token": text, "logprob": scored.logprobs[t], "bytes": raw, "top_logprobs": alts})
    return {"content": content, "refusal": None}

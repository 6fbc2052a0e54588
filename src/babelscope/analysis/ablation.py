"""The per-token loss effect of a feature, for the dashboards' underlines.

At the hook, the feature's contribution to the SAE's reconstruction, f_i(x) d_i (mapped back to the raw
activation space), is subtracted from the activation at every position; the model then recomputes everything
above the hook, final norm included. For each position t >= 1 the dashboards show

    loss_delta[t] = (-log p_clean(x_t | x_<t)) - (-log p_ablated(x_t | x_<t))

on the *predicted* token x_t, as SAEDashboard does: negative (blue) where the feature lowers the loss of the
true next token, positive (red) where it raises it. Position 0 (BOS) has no prediction and gets 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from babelscope.models.contexts import pad_right
from babelscope.models.hooks import patch
from babelscope.models.scoring import token_nll


def _token_logprobs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(x_t | x_<t) [B, T] (0 at t = 0 and at padding)."""
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask.long(), use_cache=False).logits
    out = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    out[:, 1:] = -token_nll(logits, ids, mask)
    return out


def token_logprobs(model: nn.Module, contexts: Sequence[Sequence[int]], *, hook: str | None = None,
                   remove: Callable[[torch.Tensor], torch.Tensor] | None = None, batch_size: int = 16,
                   pad_id: int = 0) -> list[np.ndarray]:
    """log p(x_t | x_<t) per token of each context (0 at t = 0), optionally with `remove` patched in at `hook`."""
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    for start in range(0, len(contexts), batch_size):
        chunk = contexts[start:start + batch_size]
        ids, mask = (t.to(device) for t in pad_right(chunk, pad_id))
        if remove is None:
            lp = _token_logprobs(model, ids, mask)
        else:
            with patch(model, hook, remove):
                lp = _token_logprobs(model, ids, mask)
        lp = lp.cpu().numpy()
        out += [lp[i, :len(c)] for i, c in enumerate(chunk)]
    return out


def loss_deltas(model: nn.Module, hook: str, contexts: Sequence[Sequence[int]],
                remove: Callable[[torch.Tensor], torch.Tensor], *, clean: Sequence[np.ndarray] | None = None,
                batch_size: int = 16, pad_id: int = 0) -> list[np.ndarray]:
    """loss_delta per token (see the module docstring) for each context, with `remove(acts)` giving the hook
    activation without the feature; `contexts` are model inputs (BOS first); `clean` log-probs may be reused."""
    if clean is None:
        clean = token_logprobs(model, contexts, batch_size=batch_size, pad_id=pad_id)
    ablated = token_logprobs(model, contexts, hook=hook, remove=remove, batch_size=batch_size, pad_id=pad_id)
    return [a - c for a, c in zip(ablated, clean, strict=True)]  # = loss_clean - loss_ablated


def feature_remover(sae, feature: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """`remove(acts)`: the raw activations minus feature `feature`'s contribution to the SAE's reconstruction,
    f_i(x) d_i mapped back to the raw space (for an input-normalised SAE, divided by its s(x)); the rest of the
    reconstruction and the SAE's error term stay in place."""
    def remove(acts: torch.Tensor) -> torch.Tensor:
        f = sae.encode(acts)
        only = torch.zeros_like(f)
        only[..., feature] = f[..., feature]
        contribution = decode_raw(sae, only, acts, bias=False)
        return acts - contribution.to(acts.dtype)

    return remove


def decode_raw(sae, f: torch.Tensor, x: torch.Tensor, *, bias: bool = True) -> torch.Tensor:
    """The SAE's decode of feature activations `f` in the raw activation space of the inputs `x`."""
    to_raw = getattr(sae, "to_raw", None)
    try:
        y = sae.decode(f, bias=bias)
    except TypeError:  # a decoder without the bias switch
        y = sae.decode(f) - (sae.decode(torch.zeros_like(f)) if not bias else 0)
    return to_raw(y, x) if callable(to_raw) else y


# ---- many features side by side ---------------------------------------------------------------------------------

def clean_pass(model: nn.Module, hook: str, contexts: Sequence[Sequence[int]], *, batch_size: int = 32,
               pad_id: int = 0) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """One clean forward per batch of contexts: log p(x_t | x_<t) per token (as `token_logprobs`) and the RAW
    activations [T, d] at `hook` of each context (recorded on the way, on the model's device)."""
    device = next(model.parameters()).device
    logprobs: list[np.ndarray] = []
    acts: list[torch.Tensor] = []
    for start in range(0, len(contexts), batch_size):
        chunk = contexts[start:start + batch_size]
        ids, mask = (t.to(device) for t in pad_right(chunk, pad_id))
        seen: list[torch.Tensor] = []
        with patch(model, hook, lambda a, seen=seen: seen.append(a.detach()) or a):
            lp = _token_logprobs(model, ids, mask).cpu().numpy()
        logprobs += [lp[i, :len(c)] for i, c in enumerate(chunk)]
        acts += [seen[0][i, :len(c)] for i, c in enumerate(chunk)]
    return logprobs, acts


def feature_acts(sae, acts: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The activation [B, T] of feature features[b] at every position of row b of RAW `acts` [B, T, d] (what
    `sae.encode` gives in that column). A ReLU SAE computes that column alone; others encode densely."""
    cfg = getattr(sae, "cfg", None)
    if getattr(cfg, "arch", None) == "relu" and callable(getattr(sae, "normalize", None)):
        u = sae.normalize(acts)
        if cfg.apply_b_dec_to_input:
            u = u - sae.b_dec
        z = torch.einsum("btd,bd->bt", u, sae.W_enc[:, features].T) + sae.b_enc[features][:, None]
        return torch.relu(z)
    f = sae.encode(acts)
    return f.gather(-1, features.view(-1, 1, 1).expand(-1, f.shape[1], 1)).squeeze(-1)


def contribution(sae, acts: torch.Tensor, features: torch.Tensor, f: torch.Tensor | None = None) -> torch.Tensor:
    """f_i(x) d_i in the RAW space of `acts` [B, T, d] for feature features[b] in row b: what `feature_remover`
    subtracts (`f` [B, T]: the features' activations, when already known)."""
    f = feature_acts(sae, acts, features) if f is None else f
    W = sae.W_dec[features]  # [B, d]
    y = f.unsqueeze(-1).to(W.dtype) * W.unsqueeze(1)
    to_raw = getattr(sae, "to_raw", None)
    return to_raw(y, acts) if callable(to_raw) else y


@torch.no_grad()
def ablation_deltas(model: nn.Module, hook: str, sae, pairs: Sequence[tuple[int, int]],
                    contexts: dict[int, Sequence[int]], *, clean: dict[int, np.ndarray] | None = None,
                    until: dict[tuple[int, int], int] | None = None, batch_size: int = 32,
                    pad_id: int = 0) -> dict[tuple[int, int], np.ndarray]:
    """loss_delta per token (module docstring) for every (feature, context id) pair, the ablations of many
    features run side by side: one clean pass per context gives its hook activations, from which each pair's
    f_i(x) d_i is computed outside the model; each forward then holds `batch_size` pairs, patched by subtraction.
    Equal (to float tolerance) to `loss_deltas(..., feature_remover(sae, i))` per feature. `clean` caches the
    clean log-probabilities by context id (filled here). `until[(i, c)]` = n: only the first n tokens of that
    pair are needed (a causal model never looks further), so its forward stops there and its array has n values."""
    until = until or {}
    clean = {} if clean is None else clean
    device = next(model.parameters()).device
    ids = list(dict.fromkeys(c for _, c in pairs))
    lps, acts = clean_pass(model, hook, [contexts[c] for c in ids], batch_size=batch_size, pad_id=pad_id)
    for c, lp in zip(ids, lps, strict=True):
        clean.setdefault(c, lp)
    act_of = dict(zip(ids, acts, strict=True))
    sae_device = getattr(getattr(sae, "W_dec", None), "device", device)
    codes = {}
    if getattr(getattr(sae, "cfg", None), "arch", None) == "topk" and callable(getattr(sae, "encode_topk", None)):
        codes = {c: sae.encode_topk(a.to(sae_device)) for c, a in act_of.items()}
    def length(pair: tuple[int, int]) -> int:
        return min(len(contexts[pair[1]]), until.get(pair, len(contexts[pair[1]])))

    order = sorted(range(len(pairs)), key=lambda j: (length(pairs[j]), j))  # similar lengths together
    out: dict[tuple[int, int], np.ndarray] = {}
    for start in range(0, len(order), batch_size):
        rows = [pairs[j] for j in order[start:start + batch_size]]
        toks = [list(contexts[c])[:length((f, c))] for f, c in rows]
        T = max(len(t) for t in toks)
        x = torch.zeros(len(rows), T, acts[0].shape[-1], dtype=acts[0].dtype, device=acts[0].device)
        real = torch.zeros(len(rows), T, 1, dtype=torch.bool, device=x.device)
        for i, (_, c) in enumerate(rows):
            x[i, :len(toks[i])] = act_of[c][:len(toks[i])]
            real[i, :len(toks[i])] = True
        feats = torch.tensor([f for f, _ in rows], device=sae_device)
        fa = None
        if codes:  # a TopK SAE: each context was encoded once; a pair reads its feature's column from the code
            fa = torch.zeros(len(rows), T, device=sae_device)
            for i, (f, c) in enumerate(rows):
                values, indices = codes[c]
                fa[i, :len(toks[i])] = (values * (indices == f)).sum(-1).float()[:len(toks[i])]
        delta = (contribution(sae, x.to(sae_device), feats, fa).to(x.device) * real).to(x.dtype)
        batch_ids, mask = (t.to(device) for t in pad_right(toks, pad_id))
        with patch(model, hook, lambda a, delta=delta: a - delta.to(a.dtype)):
            lp = _token_logprobs(model, batch_ids, mask).cpu().numpy()
        for i, (f, c) in enumerate(rows):
            out[(f, c)] = lp[i, :len(toks[i])] - clean[c][:len(toks[i])]
    return out

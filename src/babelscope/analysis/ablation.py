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

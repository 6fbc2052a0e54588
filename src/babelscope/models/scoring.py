"""Per-token scores of a causal LM: the one place that turns logits into next-token log-likelihoods."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of each next token, [B, T-1] (position t scores input_ids[:, t + 1]); 0 where the
    token or its context position is padding (`mask` [B, T] marks real tokens)."""
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), input_ids[:, 1:].to(logits.device),
                          reduction="none")
    return nll * (mask[:, 1:] & mask[:, :-1]).to(nll.device)

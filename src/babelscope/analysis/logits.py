"""Logit weights: the direct effect of each SAE feature's decoder direction on the next-token logits.

    logit_weight(f) = W_U' (W_down) d_f          W_U' = W_U diag(g) (I - 11^T/d for a LayerNorm)

d_f is the feature's decoder row. For a hook on `mlp.act` (the down projection's input, Study A's "after the
SiLU") the direction first goes through the down projection; `resid_post`, `mlp.out` and `attn.out` live in
the residual stream already. The final norm's gain g is folded into the unembedding W_U (it reweights
dimensions, so it can reorder tokens); a LayerNorm's mean subtraction is linear and folded too. What is left
out is the norm's division by the RMS / standard deviation (a positive per-token scalar, so it cannot change
any ranking), biases (a constant shift of every feature's logits) and, for hooks below the last layer, every
path through later layers. Decoder rows live in the SAE's normalised input space; its input normalisation
rescales them by a positive factor, which again leaves rankings and enrichment scores unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from babelscope.errors import UserError
from babelscope.models.hooks import find_module, hook_module, parse_hook

_FINAL_NORMS = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.decoder.final_layer_norm",
                "model.final_layernorm")


def final_norm(model: nn.Module) -> nn.Module | None:
    """The norm applied to the last residual stream before the unembedding (None if the layout has none)."""
    for dotted in _FINAL_NORMS:
        module = find_module(model, dotted)
        if isinstance(module, nn.Module):
            return module
    return None


def folded_unembedding(model: nn.Module) -> tuple[torch.Tensor, str]:
    """(W_U' [vocab, d_model] float32 with the final norm's gain and centring folded in, what was folded)."""
    out = model.get_output_embeddings()
    if out is None or getattr(out, "weight", None) is None:
        raise UserError(f"{type(model).__name__} has no output embedding (lm_head) to take logit weights from")
    W = out.weight.detach().float().clone()  # [vocab, d_model]
    norm = final_norm(model)
    notes = []
    gain = getattr(norm, "weight", None) if norm is not None else None
    if isinstance(gain, torch.Tensor) and gain.shape == (W.shape[1],):
        W = W * gain.detach().float()[None, :]
        notes.append(f"final norm gain ({type(norm).__name__}) folded into W_U")
    elif norm is not None:
        notes.append(f"final norm {type(norm).__name__} has no per-dimension gain; nothing folded")
    else:
        notes.append("no final norm found; W_U used as is")
    if isinstance(norm, nn.LayerNorm):
        W = W - W.mean(dim=1, keepdim=True)
        notes.append("LayerNorm mean subtraction folded in")
    notes.append("the division by the RMS/std (a positive scalar) and all biases are left out")
    return W, "; ".join(notes)


def output_directions(model: nn.Module, hook_name: str, W_dec: torch.Tensor) -> torch.Tensor:
    """Decoder rows [F, d_in] mapped into the residual stream [F, d_model] (through W_down for `mlp.act`)."""
    point = parse_hook(model, hook_name)
    W_dec = W_dec.detach().float()
    if point.kind != "mlp.act":
        return W_dec
    down = hook_module(model, point)
    weight = down.weight.detach().float().to(W_dec.device)
    if type(down).__name__ == "Conv1D":  # GPT-2 stores [in, out]
        return W_dec @ weight
    return W_dec @ weight.T  # nn.Linear stores [out, in]


def iter_logit_weights(model: nn.Module, hook_name: str, W_dec: torch.Tensor, *, chunk: int = 512,
                       vocab_size: int | None = None) -> Iterator[torch.Tensor]:
    """Logit weights [C, vocab] for consecutive chunks of features (never the whole [F, vocab] at once)."""
    W_U, _ = folded_unembedding(model)
    if vocab_size is not None:
        W_U = W_U[:vocab_size]
    W_U = W_U.to(W_dec.device)
    for start in range(0, W_dec.shape[0], chunk):
        with torch.no_grad():
            yield output_directions(model, hook_name, W_dec[start:start + chunk]) @ W_U.T


def logit_weights(model: nn.Module, hook_name: str, W_dec: torch.Tensor, *, features: list[int] | None = None,
                  vocab_size: int | None = None) -> torch.Tensor:
    """Logit weights [len(features), vocab] of the chosen features (all when None); see the module docstring."""
    rows = W_dec if features is None else W_dec[torch.as_tensor(features, dtype=torch.long)]
    return torch.cat(list(iter_logit_weights(model, hook_name, rows, vocab_size=vocab_size, chunk=4096)))


def top_bottom(weights: torch.Tensor, k: int = 10) -> dict[str, list]:
    """The k highest and k lowest entries of one feature's logit weights [vocab], as id and value lists."""
    k = min(k, weights.shape[-1])
    top = torch.topk(weights, k)
    bottom = torch.topk(weights, k, largest=False)
    return {"top_ids": top.indices.tolist(), "top_values": top.values.tolist(),
            "bottom_ids": bottom.indices.tolist(), "bottom_values": bottom.values.tolist()}

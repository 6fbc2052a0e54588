"""The numbers the field reports for an SAE, from summable statistics (so no number depends on batch size).

Reconstruction (in the SAE's normalised input space u, the space it was trained in):
    mse  = sum ||u - u_hat||^2 / (N d)                     (per element)
    nmse = sum ||u - u_hat||^2 / sum ||u - mean(u)||^2     (against the mean of u, not zero)
    fve  = 1 - nmse                                        (fraction of variance explained)
    l0   = mean number of active latents per token
    dead = share of latents never active on the evaluation tokens; dense = share active on > 10% of tokens
Downstream (the SAE's RAW-space reconstruction spliced into the model at its hook, BOS left clean):
    loss_recovered = (CE_zero - CE_sae) / (CE_zero - CE_clean)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from babelscope.errors import UserError
from babelscope.sae.base import SAE
from babelscope.settings import Settings, opt

DENSE_THRESHOLD = 0.1


@dataclass(kw_only=True)
class SAEEvalConfig(Settings):
    """`babelscope sae eval`: reconstruction metrics and the spliced model's loss for one SAE."""

    sae: str = opt(help="SAE directory")
    model: str = opt(help="HF model directory")
    data: list[str] = opt(help="corpus files")
    tokens: int = opt(1_000_000, "activations to evaluate on", gt=0)
    hook: str | None = opt(None, "hook point (default: the one in the SAE's cfg.json)")
    positions: str | None = opt(None, "all | first:N | random:N (default: the positions the SAE was trained on)")
    context_size: int | None = opt(None, "tokens per context (default: the SAE's)", gt=1)
    batch_size: int = opt(32, "contexts per forward pass", gt=0)
    lm_loss: bool = opt(True, "skip the spliced-model cross-entropy", flag="--no-lm-loss")
    text_field: str = opt("text", "the record field holding the text")
    device: str = opt("auto", "cpu, cuda or auto")
    out: str | None = opt(None, "also write the metrics to this JSON file")
    force: bool = opt(False, "use the SAE with a model or hook other than the one it was trained on")


class ReconstructionStats:
    """Running sums (float64) from which every reconstruction metric follows exactly."""

    def __init__(self, d_in: int, d_sae: int, device: str | torch.device = "cpu"):
        kw = {"dtype": torch.float64, "device": device}
        self.n = torch.zeros((), **kw)
        self.sse = torch.zeros((), **kw)
        self.sum_u = torch.zeros(d_in, **kw)
        self.sum_sq = torch.zeros((), **kw)
        self.l0 = torch.zeros((), **kw)
        self.fires = torch.zeros(d_sae, **kw)

    def update(self, u: torch.Tensor, u_hat: torch.Tensor, f: torch.Tensor) -> None:
        """Add a batch: inputs u, reconstructions u_hat [N, d_in], feature activations f [N, d_sae]."""
        u, u_hat = u.double(), u_hat.double()
        active = f != 0
        self.n += u.shape[0]
        self.sse += (u - u_hat).pow(2).sum()
        self.sum_u += u.sum(0)
        self.sum_sq += u.pow(2).sum()
        self.l0 += active.sum()
        self.fires += active.sum(0)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"n": self.n, "sse": self.sse, "sum_u": self.sum_u, "sum_sq": self.sum_sq, "l0": self.l0,
                "fires": self.fires}


def summarize(t: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Metrics from summed statistics (see the module docstring)."""
    n = float(t["n"])
    if n == 0:
        raise UserError("no activations to evaluate (the corpus gave none)")
    d = t["sum_u"].numel()
    total_var = float(t["sum_sq"] - t["sum_u"].pow(2).sum() / n)
    sse = float(t["sse"])
    nmse = sse / total_var if total_var > 0 else float("nan")
    freq = t["fires"] / n
    return {"tokens": int(n), "mse": sse / (n * d), "nmse": nmse, "fve": 1.0 - nmse, "l0": float(t["l0"]) / n,
            "dead_fraction": float((t["fires"] == 0).double().mean()),
            "dense_fraction": float((freq > DENSE_THRESHOLD).double().mean())}


def reconstruction_metrics(sae: SAE, x: torch.Tensor, *, batch_size: int = 8192) -> dict[str, Any]:
    """Metrics of `sae` on RAW activations x [N, d_in]; identical for any `batch_size`."""
    stats = ReconstructionStats(sae.cfg.d_in, sae.cfg.d_sae, device=sae.device)
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            xb = x[s:s + batch_size].to(sae.device)
            f = sae.encode(xb)
            stats.update(sae.normalize(xb), sae.decode(f), f)
    return summarize(stats.tensors())


def next_token_ce(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """(sum of next-token cross-entropies, number of predicted tokens) over positions where both are real."""
    from babelscope.models.scoring import token_nll

    return float(token_nll(logits, input_ids, mask).sum()), int((mask[:, 1:] & mask[:, :-1]).sum())


def loss_recovered(ce_clean: float, ce_sae: float, ce_zero: float) -> float:
    """(CE_zero - CE_sae) / (CE_zero - CE_clean): 1 is a perfect SAE, 0 as bad as zero-ablation."""
    gap = ce_zero - ce_clean
    return (ce_zero - ce_sae) / gap if gap != 0 else float("nan")


def _splice(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Apply fn to every position but the first (BOS, which the SAE never saw)."""
    def go(h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h[:, :1], fn(h[:, 1:]).to(h.dtype)], 1)
    return go


@torch.no_grad()
def evaluate_sae(sae: SAE, model: Any, tokenizer: Any, records: Iterable[dict], *, tokens: int = 1_000_000,
                 hook: str | None = None, positions: str | None = None, context_size: int | None = None,
                 batch_size: int = 32, lm_loss: bool = True, force: bool = False) -> dict[str, Any]:
    """Reconstruction metrics over `tokens` activations and, with `lm_loss`, CE clean / with SAE / zero-ablated.

    Positions default to those the SAE was trained on (cfg.extra["positions"]); contexts are cut the same way.
    """
    from babelscope.models.contexts import iter_contexts
    from babelscope.models.hooks import patch
    from babelscope.sae.buffer import parse_positions, select_positions
    from babelscope.sae.pairing import check_pair

    hook = check_pair(sae, model, hook, force=force)
    pos = parse_positions(positions or sae.cfg.extra.get("positions", "all"))
    ctx = context_size or sae.cfg.context_size or 128
    max_tokens = min(ctx, pos.n + 1) if pos.mode == "first" else ctx
    stats = ReconstructionStats(sae.cfg.d_in, sae.cfg.d_sae, device=sae.device)
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    n_pred = 0
    consumed = 0
    for batch in iter_contexts(model, tokenizer, records, [hook], max_tokens=max_tokens, batch_size=batch_size):
        g = torch.Generator().manual_seed(consumed)
        consumed += len(batch.records)
        keep = select_positions(batch.valid, pos, g)
        x = batch.acts[hook][keep.to(batch.acts[hook].device)].to(sae.device)
        f = sae.encode(x)
        stats.update(sae.normalize(x), sae.decode(f), f)
        if lm_loss:
            device = next(model.parameters()).device
            ids = batch.input_ids.to(device)
            mask = _real(batch)
            am = mask.long().to(device)
            s, n = next_token_ce(model(input_ids=ids, attention_mask=am).logits, ids, mask)
            ce["clean"] += s
            with patch(model, hook, _splice(lambda h: sae.reconstruct(h.to(sae.device)).to(h.device))):
                ce["sae"] += next_token_ce(model(input_ids=ids, attention_mask=am).logits, ids, mask)[0]
            with patch(model, hook, _splice(torch.zeros_like)):
                ce["zero"] += next_token_ce(model(input_ids=ids, attention_mask=am).logits, ids, mask)[0]
            n_pred += n
        if float(stats.n) >= tokens:
            break
    out = summarize(stats.tensors())
    out["hook"] = hook
    out["positions"] = str(pos)
    if lm_loss and n_pred:
        c = {k: v / n_pred for k, v in ce.items()}
        out.update({"ce_clean": c["clean"], "ce_sae": c["sae"], "ce_zero": c["zero"],
                    "ce_delta": c["sae"] - c["clean"],
                    "loss_recovered": loss_recovered(c["clean"], c["sae"], c["zero"]), "lm_tokens": n_pred})
    return out


def _real(batch: Any) -> torch.Tensor:
    """Real (non-padding) tokens of a ContextBatch, BOS included: valid plus each row's first position."""
    real = batch.valid.clone()
    real[:, 0] = True
    return real

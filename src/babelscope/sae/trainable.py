"""The training-time layout shared by the ReLU and TopK SAEs, and the decoder-norm constraint.

While training, the encoder is held as W_enc^T [d_sae, d_in] (one contiguous row per latent, like the decoder),
so the sparse backward passes scatter whole rows; `to_sae` transposes it back to SAELens' W_enc [d_in, d_sae].
Everything works in the NORMALISED input space u (see base.py); the trainer normalises each batch.
"""

from __future__ import annotations

import torch
from torch import nn

from babelscope.sae.base import SAE, SAEConfig
from babelscope.sae.geometric_median import geometric_median


class TrainableSAE(nn.Module):
    """Parameters W_enc_T, b_enc, W_dec, b_dec; subclasses define `loss(u, dead) -> (loss, stats)`."""

    def __init__(self, cfg: SAEConfig, *, device: str | torch.device = "cpu", seed: int = 0):
        super().__init__()
        self.cfg = cfg
        w = initial_decoder(cfg.d_sae, cfg.d_in, seed)
        self.W_dec = nn.Parameter(w.to(device))
        self.W_enc_T = nn.Parameter(w.clone().to(device))  # encoder = decoder transposed (Gao et al.)
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, device=device))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device))

    @torch.no_grad()
    def init_b_dec(self, sample: torch.Tensor) -> None:
        """b_dec = the geometric median of a sample of normalised inputs."""
        self.b_dec.copy_(geometric_median(sample.float()).to(self.b_dec.device))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each (unit) decoder row, so a step cannot grow it."""
        project_out_parallel(self.W_dec.grad, self.W_dec)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    def to_sae(self) -> SAE:
        """The inference SAE (SAELens layout) holding a copy of these parameters."""
        sae = SAE(self.cfg, device=self.W_dec.device)
        with torch.no_grad():
            sae.W_enc.copy_(self.W_enc_T.t())
            sae.b_enc.copy_(self.b_enc)
            sae.W_dec.copy_(self.W_dec)
            sae.b_dec.copy_(self.b_dec)
        return sae.eval()

    @torch.no_grad()
    def load_sae(self, sae: SAE) -> None:
        self.W_enc_T.copy_(sae.W_enc.t())
        self.b_enc.copy_(sae.b_enc)
        self.W_dec.copy_(sae.W_dec)
        self.b_dec.copy_(sae.b_dec)

    def loss(self, u: torch.Tensor, dead: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


def initial_decoder(d_sae: int, d_in: int, seed: int) -> torch.Tensor:
    """The decoder [d_sae, d_in] a trainer starts from with `seed`: unit rows of a Gaussian draw. The TSEA
    null's "untrained" family calls this too, so it follows any change to the initialisation."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d_sae, d_in, generator=g, dtype=torch.float32)
    return w / w.norm(dim=1, keepdim=True)


def project_out_parallel(grad: torch.Tensor | None, rows: torch.Tensor) -> None:
    """In place: grad_i -= (grad_i . w_i) w_i for unit rows w_i."""
    if grad is not None:
        grad.sub_((grad * rows).sum(dim=1, keepdim=True) * rows)

"""ReLU SAE training (Study A): f = ReLU((u - b_dec) W_enc + b_enc), loss = ||u - u_hat||^2 + lambda * sum_i f_i.

Choice: the decoder rows are held at unit norm (gradient component along each row removed, rows renormalised
after every step) and the penalty is the plain L1. With ||d_i|| = 1 the plain L1 equals the decoder-norm
weighted L1 lambda * sum_i f_i ||d_i||, so the objective is the same, but the saved SAE needs no folding:
a feature's activation is directly its contribution's length, comparable across features, which the feature
analyses (the 70%-of-max threshold, logit weights, TSEA) rely on. The TopK SAE uses the same constraint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from babelscope.sae.trainable import TrainableSAE


def relu_loss(u: torch.Tensor, W_enc_T: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor,
              b_dec: torch.Tensor, l1: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mse, f): mean over the batch of ||u - u_hat||^2 + l1 * ||f||_1, all dense."""
    f = F.relu(torch.addmm(b_enc, u - b_dec, W_enc_T.t()))
    u_hat = torch.addmm(b_dec, f, W_dec)
    mse = (u_hat - u).pow(2).sum(-1).mean()
    return mse + l1 * f.sum(-1).mean(), mse, f


class ReLUTrainer(TrainableSAE):
    """A ReLU + L1 SAE being trained; `l1` is the sparsity coefficient lambda."""

    def __init__(self, cfg, *, l1: float = 2.0, **kw):
        super().__init__(cfg, **kw)
        self.l1 = l1

    def loss(self, u: torch.Tensor, dead: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        loss, mse, f = relu_loss(u, self.W_enc_T, self.b_enc, self.W_dec, self.b_dec, self.l1)
        fires = (f.detach() > 0).sum(0)
        return loss, {"mse": mse.detach(), "aux": None, "fires": fires}

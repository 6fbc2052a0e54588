"""TopK SAE training (Gao et al.): loss = ||u - u_hat||^2 + 1/32 * AuxK, with sparse forward and backward.

Speed: the only dense product is the encoder's u @ W_enc (it must score every latent). Everything after the
top-k touches just the k chosen latents of each row: the decoder gathers k rows (embedding_bag), and the two
custom autograd functions below scatter gradients into those rows only (a sparse [d_sae, B] x [B, d_in]
product) instead of two more dense products of the encoder's size, as a dense implementation pays.
(On CPU this sparse product beat index_add by 2-10x at k = 32..288.)

AuxK: latents that have not fired for `dead_window` tokens are dead; the k_aux = d_in/2 largest dead
pre-activations reconstruct the residual e = u - u_hat (detached). That reconstruction is W_dec-rows only,
WITHOUT b_dec: b_dec is already inside u_hat, adding it again was a bug in two public libraries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from babelscope.sae.trainable import TrainableSAE

AUXK_COEF = 1.0 / 32.0


@torch.compiler.disable  # a sparse COO product: eager under torch.compile (dynamo cannot trace its constructor)
def _rows_times(indices: torch.Tensor, weights: torch.Tensor, dense: torch.Tensor, n_rows: int) -> torch.Tensor:
    """S @ dense for the sparse S [n_rows, B] with S[indices[b, j], b] = weights[b, j] (duplicates summed)."""
    B, k = indices.shape
    cols = torch.arange(B, device=indices.device).repeat_interleave(k)
    S = torch.sparse_coo_tensor(torch.stack([indices.reshape(-1), cols]), weights.reshape(-1).to(dense.dtype),
                                (n_rows, B), check_invariants=False)
    return torch.sparse.mm(S, dense)


class TopKEncode(torch.autograd.Function):
    """(u, W_enc_T, b_enc, b_dec) -> ReLU'd top-k values and indices, plus the top-k_aux dead latents."""

    @staticmethod
    def forward(ctx, u, W_enc_T, b_enc, b_dec, k, dead, k_aux):  # type: ignore[override]
        uc = u - b_dec
        z = torch.addmm(b_enc, uc, W_enc_T.t())
        values, indices = z.topk(k, dim=-1, sorted=False)
        values = values.clamp_min_(0)
        if dead is not None and k_aux > 0:
            # Score only the dead columns: late in training few latents are dead, so this scan is short.
            dead_idx = dead.nonzero().squeeze(1)
            aux_values, pos = z.index_select(1, dead_idx).topk(k_aux, dim=-1, sorted=False)
            aux_indices = dead_idx[pos]
            aux_values = aux_values.clamp_min_(0)
        else:
            aux_values = u.new_zeros(u.shape[0], 0)
            aux_indices = indices.new_zeros(u.shape[0], 0)
        del z
        ctx.save_for_backward(uc, W_enc_T, values, indices, aux_values, aux_indices)
        ctx.mark_non_differentiable(indices, aux_indices)
        return values, indices, aux_values, aux_indices

    @staticmethod
    def backward(ctx, g_values, _g_idx, g_aux, _g_aux_idx):  # type: ignore[override]
        uc, W_enc_T, values, indices, aux_values, aux_indices = ctx.saved_tensors
        g = g_values * (values > 0)
        idx = indices
        if aux_indices.shape[1]:
            idx = torch.cat([indices, aux_indices], 1)
            g = torch.cat([g, g_aux * (aux_values > 0)], 1)
        n = W_enc_T.shape[0]
        g_b_enc = torch.zeros(n, dtype=g.dtype, device=g.device).index_add_(0, idx.reshape(-1), g.reshape(-1))
        g_W = _rows_times(idx, g, uc, n) if ctx.needs_input_grad[1] else None
        g_b_dec = -(g_b_enc @ W_enc_T) if ctx.needs_input_grad[3] else None
        g_u = F.embedding_bag(idx, W_enc_T, per_sample_weights=g, mode="sum") if ctx.needs_input_grad[0] else None
        return g_u, g_W, g_b_enc, g_b_dec, None, None, None


def sparse_decode(values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """Differentiable gather-decode without bias ([B, k] -> [B, d_in]): embedding_bag, whose backward already
    touches only the k rows used (measured 2-4x faster here than a hand-written backward)."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")


def auxk_loss(residual: torch.Tensor, aux_values: torch.Tensor, aux_indices: torch.Tensor,
              W_dec: torch.Tensor) -> torch.Tensor:
    """mean_b ||e_b - sum_j a_bj W_dec[i_bj]||^2: dead latents reconstruct the residual e, with no b_dec."""
    e_hat = sparse_decode(aux_values, aux_indices, W_dec)
    return (e_hat - residual).pow(2).sum(-1).mean()


class TopKTrainer(TrainableSAE):
    """A TopK SAE being trained; `loss` returns the MSE (+ AuxK when latents are dead) on normalised inputs."""

    def loss(self, u: torch.Tensor, dead: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        k = self.cfg.k
        n_dead = int(dead.sum()) if dead is not None else 0
        k_aux = min(self.cfg.d_in // 2, n_dead)
        values, indices, aux_values, aux_indices = TopKEncode.apply(
            u, self.W_enc_T, self.b_enc, self.b_dec, k, dead if k_aux else None, k_aux)
        u_hat = sparse_decode(values, indices, self.W_dec) + self.b_dec
        err = u_hat - u
        mse = err.pow(2).sum(-1).mean()
        loss = mse
        aux = None
        if k_aux:
            aux = auxk_loss(-err.detach(), aux_values, aux_indices, self.W_dec)
            loss = loss + AUXK_COEF * aux
        fires = torch.bincount(indices[values > 0], minlength=self.cfg.d_sae)
        return loss, {"mse": mse.detach(), "aux": aux.detach() if aux is not None else None, "fires": fires}

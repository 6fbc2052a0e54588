"""The sparse autoencoder every babelscope stage shares: SAELens-named parameters, two activations.

Spaces (x is a RAW hook activation, exactly what `hooks.capture` returns):

    normalised input   u = s(x) * x, with s(x) = 1 (none), 1/||x|| (l2: unit norm, Study B) or a fixed c (scale)
    features           f = act((u - b_dec) @ W_enc + b_enc)       act = ReLU (relu) or ReLU(TopK_k(.)) (topk)
    decoded            decode(f) = f @ W_dec + b_dec                in the normalised space
    reconstruction     reconstruct(x) = decode(encode(x)) / s(x)    in the RAW space: splice it into the model

W_enc is [d_in, d_sae], W_dec is [d_sae, d_in] (row i is latent i's direction, unit norm after training),
b_enc [d_sae], b_dec [d_in] (the b_pre of the papers). The math is pure functions at the bottom of this file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from babelscope.errors import UserError

ARCHS = ("relu", "topk")
NORMALIZE = ("none", "l2", "scale")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class SAEConfig:
    """What an SAE is and where it reads from; saved in cfg.json (SAELens keys) and training.json."""

    arch: str  # "relu" (SAELens "standard") | "topk"
    d_in: int
    d_sae: int
    k: int | None = None  # active latents per token (topk only)
    hook_name: str = ""  # babelscope hook name, e.g. "layers.1.mlp.act"
    model: str = ""  # the model directory or name the SAE was trained on
    model_fingerprint: str = ""  # models.fingerprint.model_fingerprint of that model ("" when unknown)
    normalize: str = "none"  # "none" | "l2" (each vector to unit norm) | "scale" (multiply by `scale`)
    scale: float = 1.0  # the fixed factor of normalize="scale" (chosen so the mean norm is sqrt(d_in))
    dtype: str = "float32"
    apply_b_dec_to_input: bool = True  # subtract b_dec before encoding (always true for SAEs we train)
    context_size: int | None = None  # tokens per context the SAE was trained on
    prepend_bos: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # anything else worth keeping (dataset, positions, ...)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UserError(f"unknown SAE architecture '{self.arch}'; choose one of {', '.join(ARCHS)}")
        if self.normalize not in NORMALIZE:
            raise UserError(f"unknown input normalisation '{self.normalize}'; choose one of {', '.join(NORMALIZE)}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype '{self.dtype}'; choose one of {', '.join(DTYPES)}")
        if self.d_in <= 0 or self.d_sae <= 0:
            raise UserError(f"SAE widths must be positive (d_in={self.d_in}, d_sae={self.d_sae})")
        if self.arch == "topk" and not (self.k and 0 < self.k <= self.d_sae):
            raise UserError(f"a TopK SAE needs 0 < k <= d_sae ({self.d_sae}), got k={self.k}")
        if self.normalize == "scale" and not (self.scale > 0 and math.isfinite(self.scale)):
            raise UserError(f"normalize='scale' needs a positive finite scale, got {self.scale}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SAEConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class SAE(nn.Module):
    """A ReLU or TopK sparse autoencoder over raw hook activations (see the module docstring for the spaces)."""

    def __init__(self, cfg: SAEConfig, *, device: str | torch.device = "cpu"):
        super().__init__()
        self.cfg = cfg
        dt = DTYPES[cfg.dtype]
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae, dtype=dt, device=device))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dt, device=device))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in, dtype=dt, device=device))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dt, device=device))

    # ---- spaces -------------------------------------------------------------------------------------
    def input_scale(self, x: torch.Tensor) -> torch.Tensor:
        """s(x) [..., 1]: the factor that maps raw x to the normalised input space (u = s(x) * x)."""
        return input_scale(x, self.cfg.normalize, self.cfg.scale)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw -> normalised input space (what the SAE was trained on); also casts to the SAE's dtype."""
        x = x.to(self.W_enc.dtype)
        return x * self.input_scale(x)

    def to_raw(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Normalised -> raw space for vectors belonging to the raw inputs x (y / s(x), per vector)."""
        return y / self.input_scale(x.to(y.dtype))

    # ---- dense path ---------------------------------------------------------------------------------
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations (u - b_dec) @ W_enc + b_enc [..., d_sae] from RAW x."""
        return pre_acts(self.normalize(x), self.W_enc, self.b_enc, self.b_dec, self.cfg.apply_b_dec_to_input)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """RAW activations [..., d_in] -> dense feature activations [..., d_sae] (zeros where inactive)."""
        z = self.pre_acts(x)
        return relu_acts(z) if self.cfg.arch == "relu" else topk_dense(z, self.cfg.k)

    def decode(self, f: torch.Tensor, *, bias: bool = True) -> torch.Tensor:
        """Dense features [..., d_sae] -> f @ W_dec (+ b_dec) in the NORMALISED input space (not raw)."""
        y = f.to(self.W_dec.dtype) @ self.W_dec
        return y + self.b_dec if bias else y

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """RAW x -> reconstruction in the RAW space, ready to replace x in the model (hooks.patch)."""
        x = x.to(self.W_enc.dtype)
        s = self.input_scale(x)
        u = x * s
        z = pre_acts(u, self.W_enc, self.b_enc, self.b_dec, self.cfg.apply_b_dec_to_input)
        if self.cfg.arch == "topk":
            values, indices = topk_sparse(z, self.cfg.k)
            y = decode_sparse(values, indices, self.W_dec, self.b_dec)
        else:
            y = relu_acts(z) @ self.W_dec + self.b_dec
        return y / s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as `reconstruct`: RAW in, RAW out."""
        return self.reconstruct(x)

    # ---- sparse path --------------------------------------------------------------------------------
    def encode_topk(self, x: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """RAW x -> (values, indices) [..., k] of the k largest latents (ReLU'd: an inactive slot holds 0).

        For a TopK SAE `k` defaults to cfg.k and the result is exactly `encode`'s non-zeros; a ReLU SAE needs `k`.
        """
        k = k or self.cfg.k
        if not k:
            raise UserError("encode_topk on a ReLU SAE needs an explicit k")
        return topk_sparse(self.pre_acts(x), k)

    def decode_topk(self, values: torch.Tensor, indices: torch.Tensor, *, bias: bool = True) -> torch.Tensor:
        """(values, indices) [..., k] -> NORMALISED-space decode, gathering only the k decoder rows used."""
        return decode_sparse(values, indices, self.W_dec, self.b_dec if bias else None)

    # ---- housekeeping -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm (training keeps it there after each step)."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    def extra_repr(self) -> str:
        c = self.cfg
        k = f", k={c.k}" if c.arch == "topk" else ""
        return f"arch={c.arch}, d_in={c.d_in}, d_sae={c.d_sae}{k}, hook={c.hook_name!r}, normalize={c.normalize}"


# ---- pure math --------------------------------------------------------------------------------------
def input_scale(x: torch.Tensor, normalize: str, scale: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """The per-vector factor s(x) [..., 1] of an input normalisation ("none", "l2" or "scale")."""
    if normalize == "l2":
        return 1.0 / x.norm(dim=-1, keepdim=True).clamp_min(eps)
    factor = scale if normalize == "scale" else 1.0
    return torch.full_like(x[..., :1], factor)


def pre_acts(u: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, b_dec: torch.Tensor,
             apply_b_dec: bool = True) -> torch.Tensor:
    """(u - b_dec) @ W_enc + b_enc, computed as u @ W_enc + (b_enc - b_dec @ W_enc) (one matmul, no copy of u)."""
    bias = b_enc - b_dec @ W_enc if apply_b_dec else b_enc
    return torch.addmm(bias, u.reshape(-1, u.shape[-1]), W_enc).reshape(*u.shape[:-1], W_enc.shape[1])


def relu_acts(z: torch.Tensor) -> torch.Tensor:
    return F.relu(z)


def topk_sparse(z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest pre-activations per row, ReLU'd, and their latent indices (order unspecified)."""
    values, indices = z.topk(k, dim=-1, sorted=False)
    return F.relu(values), indices


def topk_dense(z: torch.Tensor, k: int) -> torch.Tensor:
    """TopK activation as a dense tensor: the k largest (ReLU'd) kept, everything else zero."""
    values, indices = topk_sparse(z, k)
    return torch.zeros_like(z).scatter_(-1, indices, values)


def decode_sparse(values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor,
                  b_dec: torch.Tensor | None = None) -> torch.Tensor:
    """sum_j values[..., j] * W_dec[indices[..., j]] (+ b_dec): only the k rows used are read."""
    k = values.shape[-1]
    flat_i = indices.reshape(-1, k)
    flat_v = values.reshape(-1, k).to(W_dec.dtype)
    y = F.embedding_bag(flat_i, W_dec, per_sample_weights=flat_v, mode="sum")
    if b_dec is not None:
        y = y + b_dec
    return y.reshape(*values.shape[:-1], W_dec.shape[1])

"""Which model is this? A short fingerprint of a model's weights, recorded by what is trained on the model (an
SAE) and checked when the two meet again, so an SAE is not silently used on another model of the same width.

The fingerprint hashes every parameter's name and shape and 64 evenly spaced values, rounded to bfloat16: it
takes milliseconds, and is the same for the model saved and loaded again, on any device, in float32 or
bfloat16. Two checkpoints of one run (a base model and its continued pre-training) differ.
"""

from __future__ import annotations

import hashlib

import torch

SAMPLES = 64


@torch.no_grad()
def model_fingerprint(model: torch.nn.Module) -> str:
    """16 hex digits identifying `model`'s weights (see the module docstring)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
        flat = p.detach().reshape(-1)
        n = flat.numel()
        k = min(n, SAMPLES)
        idx = (torch.arange(k, dtype=torch.int64) * max(n - 1, 0)) // max(k - 1, 1)
        values = flat[idx.to(flat.device)].to(torch.bfloat16).to(torch.float32).cpu()
        h.update(f"{name}:{tuple(p.shape)};".encode())
        h.update(values.numpy().tobytes())
    return h.hexdigest()[:16]

"""Steering: add or clamp one SAE feature's decoder direction at its hook during generation, to see what the
feature does (e.g. turn an Arabic-name feature up and count the names the model then writes).

VALUE is in the feature's own activation units (those of the feature store's `max_act`), mapped to the raw
activation space the same way as an injection (`intervene.inject`): the change is computed in the SAE's
normalised input space and mapped back with `sae.to_raw` (times ||h|| when the SAE L2-normalises its inputs).
- add:   h + VALUE * s * d_f                     (VALUE = 0 leaves the model unchanged)
- clamp: h + (VALUE - f(h)) * s * d_f            (the feature's activation f(h) is set to VALUE)
where d_f is row f of W_dec and s the input scale. Every position is steered, the prompt's included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from babelscope.errors import UserError

MODES = ("add", "clamp")


@dataclass(frozen=True)
class Steer:
    feature: int
    value: float


def parse_steer(text: str) -> Steer:
    """`FEATURE:VALUE` -> Steer (the parser of --steer); ValueError otherwise."""
    feature, sep, value = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return Steer(int(feature), float(value))
    except ValueError:
        raise ValueError(f"expected FEATURE:VALUE such as 123:8.0, got {text!r}") from None


def steer_delta(h: torch.Tensor, w_dec: torch.Tensor, steers: Sequence[Steer], *, mode: str = "add",
                acts: torch.Tensor | None = None, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """The change to h [..., d]: for each steer, (value - current) * scale * w_dec[feature], where current is 0
    in add mode and the feature's activation `acts[..., feature]` in clamp mode."""
    if mode not in MODES:
        raise UserError(f"--steer-mode must be one of {', '.join(MODES)}, got '{mode}'")
    delta = torch.zeros_like(h)
    for s in steers:
        coef = torch.full((*h.shape[:-1], 1), s.value, dtype=h.dtype, device=h.device)
        if mode == "clamp":
            if acts is None:
                raise ValueError("clamp mode needs the feature activations")
            coef = coef - acts[..., s.feature:s.feature + 1].to(h.dtype)
        delta = delta + coef * scale * w_dec[s.feature].to(h)
    return delta


def steering_fn(sae, steers: Sequence[Steer], mode: str = "add") -> Callable[[torch.Tensor], torch.Tensor]:
    """The function for `models.hooks.patch(model, sae.cfg.hook_name, fn)` that applies `steers`."""
    d_sae = int(sae.cfg.d_sae)
    for s in steers:
        if not 0 <= s.feature < d_sae:
            raise UserError(f"--steer feature {s.feature} is out of range: the SAE has features 0..{d_sae - 1}")
    if mode not in MODES:
        raise UserError(f"--steer-mode must be one of {', '.join(MODES)}, got '{mode}'")

    def fn(h: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            acts = sae.encode(h) if mode == "clamp" else None
            return h + sae.to_raw(steer_delta(h, sae.W_dec, steers, mode=mode, acts=acts), h)

    return fn


def steering_patches(sae, steers: Sequence[Steer], mode: str = "add") -> list[tuple[str, Callable]]:
    """[(hook name, fn)] for `generate(..., patches=...)`."""
    return [(sae.cfg.hook_name, steering_fn(sae, steers, mode))] if steers else []

"""Where an SAE meets a model: the one check every command that pairs them runs, before any work.

`sae eval`, `analyze features`, `analyze tsea`, `generate --steer`, `dashboard`/`browse` with a model and
`intervene inject` all load through `load_pair` (or call `check_pair` on what they loaded), so an SAE that
cannot read the model's activations is one line naming the SAE directory, not a matrix-shape error deep inside
a forward pass; an SAE trained on another model or hook (its recorded fingerprint and hook) is refused unless
`--force`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babelscope.errors import UserError


def check_pair(sae: Any, model: Any, hook: str | None = None, *, sae_dir: str | Path | None = None,
               model_dir: str | Path | None = None, force: bool = False, origin: bool = True) -> str:
    """The hook point to use (`hook`, else the SAE's own); a UserError naming the SAE directory when the model
    has no such hook or its width there is not the SAE's `d_in` (always), or, unless `force` (or with `origin`
    False: an SAE of one checkpoint read on another by design), when the hook or the model is not the one the SAE
    records it was trained on (a model fingerprint, `models.fingerprint`)."""
    from babelscope.models.hooks import hook_width, parse_hook

    hook = hook or sae.cfg.hook_name
    if not hook:
        raise UserError("the SAE's cfg.json names no hook point (metadata.hook_name); pass --hook", path=sae_dir)
    try:
        parse_hook(model, hook)
    except UserError as e:
        raise UserError(f"this SAE reads hook '{hook}', which the model{_at(model_dir)} lacks: {e}",
                        path=sae_dir) from None
    width = hook_width(model, hook)
    if width != int(sae.cfg.d_in):
        raise UserError(f"SAE width mismatch: the SAE reads d_in={sae.cfg.d_in} activations but hook '{hook}' of "
                        f"the model{_at(model_dir)} has width {width}; was it trained on another model?",
                        path=sae_dir)
    if origin:
        _check_origin(sae, model, hook, sae_dir=sae_dir, model_dir=model_dir, force=force)
    return hook


def _check_origin(sae: Any, model: Any, hook: str, *, sae_dir: str | Path | None, model_dir: str | Path | None,
                  force: bool) -> None:
    """Refuse (unless `force`: warn) an SAE recorded as trained on another hook or another model."""
    from babelscope.models.fingerprint import model_fingerprint

    trained = sae.cfg.hook_name
    problems = []
    if trained and not same_hook(hook, trained):
        problems.append(f"it was trained on hook '{trained}', not '{hook}'")
    recorded = getattr(sae.cfg, "model_fingerprint", None)
    if recorded:
        here = model_fingerprint(model)
        if here != recorded:
            problems.append(f"it was trained on another model ({sae.cfg.model or 'unnamed'}, fingerprint "
                            f"{recorded}; the model{_at(model_dir)} has {here})")
    if not problems:
        return
    message = "this SAE does not belong to this model: " + "; ".join(problems)
    if not force:
        raise UserError(message + ". Pass --force to use it anyway", path=sae_dir)
    from babelscope.errors import warn

    warn(message + " (--force: going on)")


def same_hook(a: str, b: str) -> bool:
    """Whether two hook names mean the same point (either spelling); names babelscope cannot read must be equal."""
    from babelscope.models.hooks import HookPoint

    try:
        return HookPoint.parse(a) == HookPoint.parse(b)
    except UserError:
        return a == b


def _at(model_dir: str | Path | None) -> str:
    return f" ({model_dir})" if model_dir else ""


def load_pair(model_dir: str | Path, sae_dir: str | Path, *, device: str = "cpu", hook: str | None = None,
              force: bool = False) -> tuple[Any, Any, Any, str]:
    """(model, tokenizer, sae, hook): both loaded (the SAE on the model's device) and checked to belong together."""
    from babelscope.models import load_model
    from babelscope.sae.io import load_sae, read_cfg

    read_cfg(sae_dir)  # a broken SAE directory fails before the model loads
    model, tokenizer = load_model(model_dir, device=device)
    sae = load_sae(sae_dir, device=next(model.parameters()).device)
    return model, tokenizer, sae, check_pair(sae, model, hook, sae_dir=sae_dir, model_dir=model_dir, force=force)

"""SAE directories in the SAELens 6 layout: `cfg.json` + `sae_weights.safetensors`, plus our `training.json`.

On disk the tensors follow SAELens' conventions, so SAELens (`SAE.load_from_disk`, `HookedSAETransformer`,
`SAETransformerBridge`), SAEDashboard and Neuronpedia tools compute the same reconstruction we do:
- relu -> architecture "standard", topk -> "topk" with `k`; tensors W_enc [d_in, d_sae], b_enc [d_sae],
  W_dec [d_sae, d_in], b_dec [d_in]. Decoder rows stay unit-norm on disk, and a TopK SAE says
  `rescale_acts_by_decoder_norm: true` (a no-op for unit rows), so tools that fold decoder norms accept it.
- normalize "l2" (unit norm) is written as SAELens' "constant_norm_rescale" (inputs of norm sqrt(d)): b_enc and
  b_dec * sqrt(d) on disk; "scale" (a fixed factor c) is written as "none" with b_enc and b_dec / c. Either
  way SAELens' feature activations are `babelscope_activation_scale` x ours (sqrt(d), 1/c or 1) and its
  reconstructions equal ours.
- metadata: `hook_name` in TransformerLens spelling (`blocks.L.mlp.hook_post`), `model_name` a name (the local
  path stays in the `babelscope` entry), `context_size` the positions training used (65 for first:64 + BOS),
  `dataset_path`, `prepend_bos`.
cfg.json's `babelscope` entry records our own fields and `load_sae` undoes the folding, so a round trip returns
the exact parameters we trained. Directories written before `babelscope_layout` 2 (decoder rows scaled by
sqrt(d)) still load.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from babelscope.errors import UserError
from babelscope.files import atomic_path, write_json_atomic
from babelscope.inputs import check_dir, load_safetensors, read_json
from babelscope.sae.base import DTYPES, SAE, SAEConfig

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
TRAINING = "training.json"
SAELENS_VERSION = "6.0.0"  # the cfg.json format we write (SAELens reads >= 6.0 configs from `metadata`)
_TENSORS = {"W_enc": ("d_in", "d_sae"), "b_enc": ("d_sae",), "W_dec": ("d_sae", "d_in"), "b_dec": ("d_in",)}


LAYOUT = 2  # 1: W_enc and W_dec carried the input scale (rows of norm sqrt(d)); 2: unit rows, biases scaled


def _disk_factor(cfg: SAEConfig) -> float:
    """u_disk = factor * u_ours: how much larger SAELens' normalised input is than ours (and its activations)."""
    if cfg.normalize == "l2":
        return math.sqrt(cfg.d_in)
    if cfg.normalize == "scale":
        return 1.0 / cfg.scale
    return 1.0


def _to_disk(sae: SAE) -> dict[str, torch.Tensor]:
    """Our parameters in SAELens' input space: features scaled by the factor a, decoder rows untouched."""
    a = _disk_factor(sae.cfg)
    p = {n: getattr(sae, n).detach() for n in _TENSORS}
    return {"W_enc": p["W_enc"], "b_enc": p["b_enc"] * a, "W_dec": p["W_dec"], "b_dec": p["b_dec"] * a}


def _from_disk(tensors: dict[str, torch.Tensor], cfg: SAEConfig, layout: int = LAYOUT) -> dict[str, torch.Tensor]:
    a = _disk_factor(cfg)
    t = tensors
    if layout == 1:
        return {"W_enc": t["W_enc"] * a, "b_enc": t["b_enc"], "W_dec": t["W_dec"] / a, "b_dec": t["b_dec"] / a}
    return {"W_enc": t["W_enc"], "b_enc": t["b_enc"] / a, "W_dec": t["W_dec"], "b_dec": t["b_dec"] / a}


def model_label(model: str) -> str:
    """A model's name for other tools: a run's name for RUN/final, a directory's name, or the name as given."""
    if not model:
        return ""
    path = Path(model)
    if path.name == "final" and path.parent.name:
        return path.parent.name
    return path.name or model


def trained_context(cfg: SAEConfig) -> int | None:
    """The context positions training actually used: BOS + N for first:N (at most the context), else the context."""
    positions = str(cfg.extra.get("positions", ""))
    mode, _, n = positions.partition(":")
    if mode == "first" and n.isdigit():
        return min(int(n) + 1, cfg.context_size) if cfg.context_size else int(n) + 1
    return cfg.context_size


def _tl_hook(name: str) -> str:
    from babelscope.models.hooks import HookPoint

    try:
        return HookPoint.parse(name).format("tl")
    except UserError:
        return name


def _our_hook(name: str) -> str:
    from babelscope.models.hooks import HookPoint

    try:
        return HookPoint.parse(name).format()
    except UserError:
        return name


def saelens_cfg(cfg: SAEConfig) -> dict[str, Any]:
    """The cfg.json dict: the keys SAELens 6 reads, and our own config under `babelscope`."""
    from babelscope.models.hooks import HookPoint

    try:
        layer: int | None = HookPoint.parse(cfg.hook_name).layer
    except UserError:
        layer = None
    out: dict[str, Any] = {
        "architecture": "standard" if cfg.arch == "relu" else "topk",
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": cfg.dtype,
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "constant_norm_rescale" if cfg.normalize == "l2" else "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": model_label(cfg.model),
            "hook_name": _tl_hook(cfg.hook_name),
            "hook_layer": layer,
            "hook_head_index": None,
            "context_size": trained_context(cfg),
            "prepend_bos": cfg.prepend_bos,
            "dataset_path": str(cfg.extra.get("dataset_path", "")),
            "model_class_name": "AutoModelForCausalLM",
            "sae_lens_version": SAELENS_VERSION,
            "sae_lens_training_version": SAELENS_VERSION,
        },
        "babelscope": cfg.to_dict(),
        "babelscope_layout": LAYOUT,
        "babelscope_activation_scale": _disk_factor(cfg),
    }
    if cfg.arch == "topk":
        out["k"] = cfg.k
        out["rescale_acts_by_decoder_norm"] = True
    return out


def _cfg_from_saelens(d: dict[str, Any], path: Path) -> SAEConfig:
    """Our SAEConfig from a cfg.json: ours (the `babelscope` entry) or any SAELens standard/TopK SAE."""
    if isinstance(d.get("babelscope"), dict):
        return SAEConfig.from_dict(d["babelscope"])
    arch = {"standard": "relu", "topk": "topk"}.get(d.get("architecture", "standard"))
    if arch is None:
        raise UserError(f"SAE architecture '{d.get('architecture')}' is not supported (standard or topk)", path=path)
    norm = d.get("normalize_activations", "none")
    if norm not in ("none", "constant_norm_rescale", False):
        raise UserError(f"normalize_activations '{norm}' is not supported (none or constant_norm_rescale)",
                        path=path)
    meta = d.get("metadata") or d.get("meta") or {}
    k = d.get("k") or (d.get("activation_fn_kwargs") or {}).get("k")
    try:
        return SAEConfig(arch=arch, d_in=int(d["d_in"]), d_sae=int(d["d_sae"]), k=int(k) if k else None,
                         hook_name=_our_hook(meta.get("hook_name") or d.get("hook_name") or ""),
                         model=meta.get("model_name") or d.get("model_name") or "",
                         normalize="l2" if norm == "constant_norm_rescale" else "none",
                         dtype=d.get("dtype", "float32") if d.get("dtype", "float32") in DTYPES else "float32",
                         apply_b_dec_to_input=bool(d.get("apply_b_dec_to_input", True)),
                         context_size=meta.get("context_size") or d.get("context_size"))
    except KeyError as e:
        raise UserError(f"missing key {e.args[0]!r}", path=path) from None


def _fold_decoder_norms(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A TopK SAE with `rescale_acts_by_decoder_norm` as the same function with unit decoder rows."""
    norms = t["W_dec"].norm(dim=-1)
    return {**t, "W_enc": t["W_enc"] * norms, "b_enc": t["b_enc"] * norms, "W_dec": t["W_dec"] / norms[:, None]}


def save_sae(sae: SAE, out_dir: str | Path, training: dict[str, Any] | None = None) -> Path:
    """Write `sae` to `out_dir` (cfg.json, sae_weights.safetensors and, if given, training.json), atomically."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {n: t.to("cpu").contiguous() for n, t in _to_disk(sae).items()}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_json_atomic(out / CFG, saelens_cfg(sae.cfg))
    if training is not None:
        write_json_atomic(out / TRAINING, training)
    return out


def read_cfg(sae_dir: str | Path) -> SAEConfig:
    """The SAEConfig of an SAE directory, without loading the weights."""
    path = check_dir(sae_dir, "SAE directory")
    cfg_path = path / CFG
    if not cfg_path.exists():
        raise UserError(f"not an SAE directory (no {CFG})", path=path)
    try:
        return _cfg_from_saelens(_read_json(cfg_path), cfg_path)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"bad SAE config ({type(e).__name__}: {e})", path=cfg_path) from None
    except UserError as e:
        if str(cfg_path) in str(e):
            raise
        raise UserError(str(e), path=cfg_path) from None


def _read_json(cfg_path: Path) -> dict[str, Any]:
    return read_json(cfg_path, CFG)


def read_training(sae_dir: str | Path) -> dict[str, Any]:
    """training.json of an SAE directory ({} when absent, e.g. an SAE trained elsewhere)."""
    path = Path(sae_dir) / TRAINING
    if not path.exists():
        return {}
    return read_json(path, TRAINING)


def load_sae(sae_dir: str | Path, *, device: str | torch.device = "cpu", dtype: str | None = None) -> SAE:
    """Load an SAE directory (ours or a SAELens standard/TopK one) onto `device`, in eval mode."""
    cfg = read_cfg(sae_dir)
    raw = _read_json(Path(sae_dir) / CFG)
    ours = isinstance(raw.get("babelscope"), dict)
    layout = int(raw.get("babelscope_layout", 1)) if ours else 1
    if dtype is not None:
        cfg.dtype = dtype
        cfg.__post_init__()
    weights = Path(sae_dir) / WEIGHTS
    if not weights.exists():
        raise UserError(f"not an SAE directory (no {WEIGHTS})", path=sae_dir)
    tensors = load_safetensors(weights)
    dims = {"d_in": cfg.d_in, "d_sae": cfg.d_sae}
    for name, shape in _TENSORS.items():
        want = tuple(dims[s] for s in shape)
        if name not in tensors:
            raise UserError(f"tensor '{name}' missing", path=weights)
        if tuple(tensors[name].shape) != want:
            raise UserError(f"tensor '{name}' has shape {tuple(tensors[name].shape)}, cfg.json says {want}",
                            path=weights)
    sae = SAE(cfg, device=device)
    disk = {n: tensors[n].to(torch.float64) for n in _TENSORS}
    if not ours and raw.get("rescale_acts_by_decoder_norm"):
        disk = _fold_decoder_norms(disk)
    with torch.no_grad():
        for name, t in _from_disk(disk, cfg, layout).items():
            getattr(sae, name).copy_(t.to(getattr(sae, name).dtype))
    return sae.eval()

"""Has an SAE learned? Decoder movement from its initialisation, and feature stability across seeds.

Movement: the cosine of every decoder row with its initial value (the init is a pure function of the seed, so
it is recomputed, never stored). Rows that stay near their random start make every later analysis an
analysis of the initialisation.

Stability (Paulo and Belrose 2025, "Sparse autoencoders trained on the same data learn different features"):
two SAEs trained on the same batches from different init seeds; every decoder row of one is matched with
its most similar row of the other.
    mmcs        mean over rows of the maximum cosine with the other SAE's rows, averaged over both directions
    hungarian   mean cosine of the best one-to-one matching (Hungarian algorithm on the cosine matrix)
    shared      share of rows whose one-to-one partner has cosine > 0.7 (the paper's "shared" latents use
                this cut; here on decoder rows only); the matching is skipped above HUNGARIAN_MAX rows
The same numbers for two untrained inits of the same shape are the floor a trained pair must clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from babelscope.sae.trainable import initial_decoder
from babelscope.settings import Settings, opt

SHARED_COSINE = 0.7
HUNGARIAN_MAX = 8192  # the one-to-one matching holds an n x n float64 matrix: skipped above this width


@dataclass(kw_only=True)
class SAECompareConfig(Settings):
    """`babelscope sae compare`: how well the features of two SAEs match."""

    a: str = opt(help="first SAE directory", positional=True)
    b: str = opt(help="second SAE directory (same width), e.g. the first's OUT/seed-N", positional=True)
    hungarian: bool = opt(True, "skip the one-to-one matching (n x n memory)", flag="--no-hungarian")
    out: str | None = opt(None, "also write the result to this JSON file")


def _unit(w: torch.Tensor) -> torch.Tensor:
    w = w.detach().float().cpu()
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def row_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of each row of `a` with the same row of `b`."""
    return (_unit(a) * _unit(b)).sum(1)


def quantiles(x: torch.Tensor) -> dict[str, float]:
    """Median, quartiles and mean of a 1-D tensor."""
    q = torch.quantile(x.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"median": float(q[1]), "q25": float(q[0]), "q75": float(q[2]), "mean": float(x.double().mean())}


def decoder_movement(W_dec: torch.Tensor, W_init: torch.Tensor) -> dict[str, Any]:
    """How far the decoder rows moved: quantiles of their cosine with the initial rows, and the share that
    stayed above 0.9."""
    cos = row_cosines(W_dec, W_init)
    return {"cos_to_init": quantiles(cos), "share_above_0.9": float((cos > 0.9).double().mean())}


def max_cosines(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """For each row of `a`, its largest cosine with any row of `b` (chunked: never the whole matrix at once)."""
    ua, ub = _unit(a), _unit(b)
    return torch.cat([(ua[i:i + chunk] @ ub.T).max(1).values for i in range(0, len(ua), chunk)])


def stability(a: torch.Tensor, b: torch.Tensor, *, hungarian: bool = True) -> dict[str, Any]:
    """Matching of two decoders' rows [n, d]: mean max cosine both ways, and the one-to-one (Hungarian)
    matching's mean cosine and shared share (see the module docstring)."""
    ab, ba = max_cosines(a, b), max_cosines(b, a)
    out: dict[str, Any] = {"mmcs": 0.5 * (float(ab.mean()) + float(ba.mean())), "mmcs_a_to_b": float(ab.mean()),
                           "mmcs_b_to_a": float(ba.mean()), "max_cos_a": quantiles(ab)}
    if hungarian and len(a) <= HUNGARIAN_MAX and len(b) <= HUNGARIAN_MAX:
        from scipy.optimize import linear_sum_assignment

        cos = (_unit(a) @ _unit(b).T).double().numpy()
        rows, cols = linear_sum_assignment(cos, maximize=True)
        matched = torch.from_numpy(cos[rows, cols])
        out.update({"hungarian": float(matched.mean()),
                    "shared": float((matched > SHARED_COSINE).double().mean()), "shared_cut": SHARED_COSINE})
    return out


def init_stability(d_sae: int, d_in: int, seeds: tuple[int, int] = (0, 1), **kw: Any) -> dict[str, Any]:
    """The stability numbers of two untrained inits: what matching alone gives at this shape."""
    return stability(initial_decoder(d_sae, d_in, seeds[0]), initial_decoder(d_sae, d_in, seeds[1]), **kw)


def sae_seed(sae: Any) -> int | None:
    """The init seed an SAE directory records (cfg.extra["seed"]); None for SAEs trained elsewhere."""
    seed = (getattr(sae.cfg, "extra", None) or {}).get("seed")
    return int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None


def sae_movement(sae: Any) -> dict[str, Any] | None:
    """`decoder_movement` of an SAE against the init its seed gives; None when the seed is unknown."""
    seed = sae_seed(sae)
    if seed is None:
        return None
    out = decoder_movement(sae.W_dec, initial_decoder(sae.cfg.d_sae, sae.cfg.d_in, seed))
    return {"seed": seed, **out}


def compare_saes(a: Any, b: Any, *, hungarian: bool = True) -> dict[str, Any]:
    """Stability of two SAEs of the same shape, each one's movement, and the two-untrained-inits control."""
    from babelscope.errors import UserError

    if tuple(a.W_dec.shape) != tuple(b.W_dec.shape):
        raise UserError(f"the two SAEs differ in shape: {tuple(a.W_dec.shape)} vs {tuple(b.W_dec.shape)}")
    sa, sb = sae_seed(a), sae_seed(b)
    control_seeds = (sa, sb) if sa is not None and sb is not None and sa != sb else (0, 1)
    return {"stability": stability(a.W_dec, b.W_dec, hungarian=hungarian),
            "movement": {"a": sae_movement(a), "b": sae_movement(b)},
            "init_control": {"seeds": list(control_seeds),
                             **init_stability(a.cfg.d_sae, a.cfg.d_in, control_seeds, hungarian=hungarian)}}


def learning_summary(sae_dir: Any) -> dict[str, Any]:
    """What a recipe reports per SAE: validation FVE / L0 / dead share, the decoder's cosine with its init
    (quartiles) and, when a stability seed was trained, the seeds' match against two untrained inits; from
    training.json (the movement is computed from the weights when it lacks it); `learned` and `warnings` as
    `sae.train.learning_problems` judges them."""
    from pathlib import Path

    from babelscope.sae.io import load_sae, read_training
    from babelscope.sae.train import learning_problems

    sae_dir = Path(sae_dir)
    m = dict(read_training(sae_dir).get("metrics") or {})
    m["decoder"] = m.get("decoder") or sae_movement(load_sae(sae_dir))
    st = m.get("stability")
    out: dict[str, Any] = {"sae": str(sae_dir), **{k: m.get(k) for k in ("fve", "l0", "dead_fraction", "lr", "steps")},
                           "decoder": m["decoder"], "stability": None}
    if st:
        out["stability"] = {"seeds": st["seeds"], "mmcs": st["mmcs"], "hungarian": st.get("hungarian"),
                            "shared": st.get("shared"), "init_mmcs": st["init_control"]["mmcs"],
                            "init_hungarian": st["init_control"].get("hungarian"),
                            "companion_cos_to_init": st["companion_decoder"]["cos_to_init"]["median"]}
    problems = learning_problems(m)
    out["learned"], out["warnings"] = not problems, problems
    return out


# An SAE has learned when its median decoder row has turned by more than ~45 degrees from its random start
# (cosine <= 0.7), and, when two seeds were trained, they match clearly better than two untrained inits do.
LEARNED = {"max_median_cos_to_init": 0.7, "min_mmcs_over_init": 0.1}


def movement_problems(metrics: dict[str, Any]) -> list[str]:
    """LEARNED applied to training metrics holding `decoder` (and `stability`): what says the SAE did not learn."""
    problems = []
    dec = metrics.get("decoder")
    if dec and dec["cos_to_init"]["median"] > LEARNED["max_median_cos_to_init"]:
        problems.append(f"its decoder rows kept a median cosine of {dec['cos_to_init']['median']:.3f} with their "
                        f"random init (> {LEARNED['max_median_cos_to_init']}): more steps, a higher learning rate "
                        "or fewer latents")
    st = metrics.get("stability")
    if st and st["mmcs"] < st["init_control"]["mmcs"] + LEARNED["min_mmcs_over_init"]:
        problems.append(f"two seeds' features match (mean max cosine {st['mmcs']:.3f}) hardly better than two "
                        f"untrained inits ({st['init_control']['mmcs']:.3f})")
    return problems

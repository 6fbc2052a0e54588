"""Null directions and the calibrated per-feature test: is a feature more biased than a direction that learned
nothing?

A TSEA count ("N features lie more than 2 from the diagonal") means nothing on its own: the unembedding alone
makes many random directions favour one name set. So each feature's statistic (the gap between two sets'
enrichment, e.g. English minus Arabic names on the log scale) is compared with the same statistic of null
directions, drawn in one of four families:

- `isotropic`: unit Gaussian directions, what "random" usually means;
- `covariance`: Gaussian with the covariance of the hook's activations on a corpus (directions weighted as the
  data varies);
- `activations`: real activation vectors of the corpus, centred (directions the data itself takes);
- `untrained`: the decoder an SAE trainer would start from with another seed (`sae.trainable.initial_decoder`),
  i.e. what an SAE that never learned would give.

Every draw comes from its own stream, `numpy.random.default_rng([NULL_STREAM, family code, seed])` (the
untrained family derives a trainer seed >= 2**32 from it), so a null never repeats the draw an SAE trainer
makes from `torch.Generator().manual_seed(seed)`: a null equal to the SAE's initialisation would compare an
SAE that barely moved with itself.

The test: for a feature with gap g and N pooled null gaps (all seeds of one family),
    p_upper = (1 + #{null >= g}) / (N + 1),   p_lower = (1 + #{null <= g}) / (N + 1)   (the +1 keeps p > 0),
    p = min(1, 2 min(p_upper, p_lower))        two-sided, by doubling the smaller tail, so that an asymmetric
                                               null (real activations favour one set) is handled;
then Benjamini-Hochberg across features; a feature with q < level is biased towards the set of its smaller tail.
Counts come with a Wilson score interval for the share of features (a binomial interval: features are the
sampling units; unlike a percentile bootstrap it does not collapse to [0, 0] when nothing is flagged), and two
models are compared by the difference of their shares with Newcombe's hybrid score interval (method 10 of
Newcombe 1998). Both ignore the dependence BH creates between features and the noise of the null itself; the
spread over null seeds is reported beside them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from babelscope.analysis.intervals import diff_proportions, wilson
from babelscope.errors import UserError

FAMILIES = ("untrained", "isotropic", "covariance", "activations")
NEEDS_ACTIVATIONS = frozenset({"covariance", "activations"})
DESCRIPTION = {
    "untrained": "the decoder an SAE trainer initialises with another seed (unit Gaussian rows), i.e. an SAE "
                 "that never learned",
    "isotropic": "unit directions from an isotropic Gaussian",
    "covariance": "Gaussian directions with the covariance of the hook's activations on the corpus",
    "activations": "real activation vectors of the corpus, centred on their mean",
}
NULL_STREAM = 0x6E756C6C  # "null": keeps these draws apart from every seeded stream of the trainers
_CODE = {"isotropic": 1, "covariance": 2, "activations": 3, "untrained": 4}


def check_families(families: Sequence[str]) -> list[str]:
    """The families as a list, each one known (a UserError names an unknown one)."""
    out = []
    for f in families:
        if f not in _CODE:
            raise UserError(f"unknown null family '{f}'; choose from {', '.join(FAMILIES)}")
        if f not in out:
            out.append(f)
    return out


def null_rng(family: str, seed: int) -> np.random.Generator:
    """The random stream of one (family, seed): never the SAE trainer's `torch.Generator().manual_seed(seed)`."""
    return np.random.default_rng([NULL_STREAM, _CODE[family], int(seed)])


def untrained_seed(seed: int) -> int:
    """The trainer seed the `untrained` family uses for null seed `seed`: drawn from the null stream, >= 2**32,
    so it is never a seed a person passes to `sae train` (0, 1, 42, ...)."""
    return int(null_rng("untrained", seed).integers(2**32, 2**62))


def null_directions(family: str, n: int, d: int, seed: int, *, activations: torch.Tensor | None = None,
                    sae_seed: int | None = None) -> torch.Tensor:
    """`n` unit directions [n, d] (float32) of `family` for null seed `seed`. `activations` [m, d] (in the SAE's
    input space) are needed by `covariance` and `activations`; `sae_seed`, when known, is checked against the
    untrained family's trainer seed."""
    from babelscope.sae.trainable import initial_decoder

    check_families([family])
    rng = null_rng(family, seed)
    if family == "untrained":
        trainer_seed = untrained_seed(seed)
        if sae_seed is not None and trainer_seed == int(sae_seed):  # pragma: no cover - needs a seed >= 2**32
            raise UserError(f"null seed {seed} would redraw the SAE's own initialisation (seed {sae_seed})")
        x = initial_decoder(n, d, trainer_seed).double().numpy()
    elif family == "isotropic":
        x = rng.standard_normal((n, d))
    elif family in NEEDS_ACTIVATIONS:
        if activations is None or len(activations) < 2:
            raise UserError(f"the '{family}' null needs activations of the hook on a corpus (give --data)")
        acts = activations.detach().double().cpu().numpy()
        if acts.shape[1] != d:
            raise UserError(f"activations have width {acts.shape[1]}, the directions {d}")
        centred = acts - acts.mean(axis=0)
        if family == "covariance":
            cov = centred.T @ centred / (len(centred) - 1)
            vals, vecs = np.linalg.eigh(cov)
            x = (rng.standard_normal((n, d)) * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
        else:  # without replacement when there are enough vectors, so that seeds draw different subsets
            if n >= len(centred):
                raise UserError(f"the 'activations' null needs more activation vectors ({len(centred)}) than "
                                f"directions per seed ({n}); read more tokens (--null-tokens)")
            x = centred[rng.choice(len(centred), n, replace=False)]
    else:  # pragma: no cover
        raise AssertionError(family)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return torch.from_numpy(x.astype(np.float32))


# ---- the test ------------------------------------------------------------------------------------------------

def empirical_pvalues(observed: np.ndarray, null: np.ndarray) -> dict[str, np.ndarray]:
    """Tail p-values of each observed value against the pooled null sample, with the +1 correction:
    p_upper = (1 + #{null >= x}) / (N + 1), p_lower = (1 + #{null <= x}) / (N + 1), and the two-sided
    p_value = min(1, 2 min(p_upper, p_lower)). NaN observations (and NaN null values) are left out."""
    obs = np.asarray(observed, dtype=np.float64)
    ref = np.sort(np.asarray(null, dtype=np.float64).ravel())
    ref = ref[~np.isnan(ref)]
    n = len(ref)
    if n == 0:
        raise ValueError("the null sample is empty")
    upper = (1 + n - np.searchsorted(ref, obs, side="left")) / (n + 1)
    lower = (1 + np.searchsorted(ref, obs, side="right")) / (n + 1)
    two = np.minimum(1.0, 2 * np.minimum(upper, lower))
    nan = np.isnan(obs)
    return {k: np.where(nan, np.nan, v) for k, v in (("p_upper", upper), ("p_lower", lower), ("p_value", two))}


def calibrated_test(gap: np.ndarray, null_gaps: np.ndarray, *, level: float = 0.05) -> dict[str, np.ndarray]:
    """Each feature's gap against the pooled null gaps: p-values (see `empirical_pvalues`), BH q-values across
    features, and `side`: +1 flagged towards the upper tail, -1 towards the lower tail, 0 not flagged."""
    from babelscope.analysis.tsea import benjamini_hochberg

    out = empirical_pvalues(gap, null_gaps)
    q = benjamini_hochberg(out["p_value"])
    flagged = np.nan_to_num(q, nan=1.0) < level
    side = np.where(out["p_upper"] < out["p_lower"], 1, -1)
    out["q_value"] = q
    out["side"] = np.where(flagged, side, 0).astype(np.int8)
    return out


def min_detectable(n_null: int, n_features: int, level: float = 0.05) -> int:
    """The fewest features that can reach q < level together: the smallest two-sided p a null of `n_null`
    values allows is 2 / (n_null + 1), and BH needs p_(k) <= level k / n_features."""
    p_min = min(1.0, 2.0 / (n_null + 1))
    return max(1, math.ceil(p_min * n_features / level - 1e-9))


# ---- intervals ------------------------------------------------------------------------------------------------

def share_difference(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> dict[str, float | bool | str]:
    """k1/n1 - k2/n2 with Newcombe's interval and whether it is distinguishable from zero (excludes 0)."""
    d, lo, hi = diff_proportions(k1, n1, k2, n2, level)
    distinct = bool(lo > 0 or hi < 0)
    return {"difference": d, "interval": [lo, hi], "level": level, "distinguishable": distinct,
            "reading": ("distinguishable from zero" if distinct else "not distinguishable from zero")
            + f" ({level:.0%} Newcombe interval {lo:+.4f} to {hi:+.4f})"}


def count_summary(k: int, n: int, level: float = 0.95) -> dict[str, float | int | list]:
    """A count of flagged features out of n with its share and Wilson interval (as a share and as counts)."""
    lo, hi = wilson(k, n, level)
    return {"count": int(k), "of": int(n), "share": k / n if n else float("nan"), "interval": [lo, hi],
            "count_interval": [lo * n, hi * n]}


def spread(values: Sequence[float]) -> dict[str, float | list]:
    """Mean, standard deviation (n - 1), min and max of per-seed values, and the values."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()) if v.size else float("nan"),
            "sd": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
            "min": float(v.min()) if v.size else float("nan"), "max": float(v.max()) if v.size else float("nan"),
            "per_seed": [float(x) for x in v]}


# ---- one family, end to end (given the gaps) -------------------------------------------------------------------

def family_result(gap: np.ndarray, null_gaps: Sequence[np.ndarray], sides: Sequence[str], *, level: float = 0.05,
                  threshold: float | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(summary, per-feature columns) of the calibrated test of `gap` [F] against one family's per-seed null gaps.

    `sides` names the upper and the lower tail (e.g. the y set and the x set of a scatter). The summary holds the
    flagged counts with intervals, the minimum detectable count, the old count beyond `threshold` for the
    features and per null seed (mean and spread), and how many directions of each null seed the test flags
    against the other seeds (its false-positive count; it should be near zero).
    """
    gap = np.asarray(gap, dtype=np.float64)
    pooled = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in null_gaps])
    test = calibrated_test(gap, pooled, level=level)
    n = int((~np.isnan(gap)).sum())
    up, down = sides
    summary: dict = {
        "seeds": len(null_gaps), "null_values": int((~np.isnan(pooled)).sum()),
        "calibrated": {up: count_summary(int((test["side"] == 1).sum()), n),
                       down: count_summary(int((test["side"] == -1).sum()), n)},
        "min_detectable": min_detectable(int((~np.isnan(pooled)).sum()), n, level),
        "level": level,
    }
    if len(null_gaps) > 1:
        flagged = []
        for s in range(len(null_gaps)):
            rest = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for j, g in enumerate(null_gaps) if j != s])
            flagged.append(int((calibrated_test(null_gaps[s], rest, level=level)["side"] != 0).sum()))
        summary["null_flagged"] = {**spread(flagged), "of": len(np.asarray(null_gaps[0]).ravel()),
                                   "note": "each null seed's directions tested against the other seeds' pool"}
    if threshold is not None:
        summary["threshold"] = threshold
        summary["threshold_count"] = {
            up: spread([float((np.asarray(g) > threshold).sum()) for g in null_gaps]),
            down: spread([float((np.asarray(g) < -threshold).sum()) for g in null_gaps])}
    return summary, test

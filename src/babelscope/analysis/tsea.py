"""Token Set Enrichment Analysis (TSEA): does a feature's logit-weight ranking put a token set at its top?

For one feature, sort the vocabulary by logit weight, descending (a stable sort: ties keep token-id order, so
results repeat). Walk the ranking with a running sum that rises by w_t / sum_S w at a member t of the set S
and falls by 1 / (N - |S|) at every other token, w_t = |logit_t|^p (p = 0: every member weighs 1/|S|, the
classic unweighted form). The enrichment score is the running sum's extreme with its sign, as in GSEA
(Subramanian et al., 2005): positive when the set sits among the most promoted tokens, negative when it sits
among the most suppressed ones. A random set scores near zero.

Only members move the walk upwards, so its maximum lies just after some member and its minimum just before
one: with members at 0-based ranks r_1 < ... < r_s and W_i the cumulative member weight,

    max = max_i  W_i / W_s     - (r_i - i + 1) / (N - s)        (after the i-th member)
    min = min_i  W_{i-1} / W_s - (r_i - i + 1) / (N - s)        (just before it)

(both also compare with 0, which the walk reaches at its end). So a feature needs one sort of its N logits,
the inverse permutation, and a gather of the s member ranks per set; nothing of size features x vocab x sets
is ever built. The unweighted score's absolute value is the two-sample Kolmogorov-Smirnov statistic between
the members' logits and the rest (exactly so when no two logits tie), which gives a p-value; the
Benjamini-Hochberg correction runs across every (feature, set) pair. That p-value tests whether a set's logit
weights are distributed like those of all other tokens, which nearly any direction passes for a coherent set
(names share their embedding statistics), so it says nothing about a feature being special: the study's claim
is tested against null directions (`babelscope.analysis.null`), in `write_tsea`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from babelscope.analysis.null import (
    DESCRIPTION,
    FAMILIES,
    NEEDS_ACTIVATIONS,
    check_families,
    family_result,
    null_directions,
    untrained_seed,
)
from babelscope.settings import Settings, opt

_TIE = 1e-12  # |max| and |min| this close count as a tie, which goes to the positive side


def _ranks(weights: torch.Tensor) -> torch.Tensor:
    """0-based rank [C, N] of every token in its row's stable descending order (the inverse permutation).

    float32 rows are sorted as unique int64 keys (order-preserving bits of the value, then the token id), so
    numpy's fast unstable sort gives exactly the stable order; other dtypes use torch's stable sort.
    """
    C, N = weights.shape
    if weights.dtype == torch.float32 and weights.device.type == "cpu" and N < 2**31:
        bits = weights.contiguous().numpy().view(np.int32)
        desc = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))  # int32 order == float order
        np.invert(desc, out=desc)  # ascending int order == descending float order
        keys = np.empty((C, N), dtype=np.int64)
        halves = keys.view(np.int32).reshape(C, N, 2)  # little-endian: [..., 0] low word, [..., 1] high word
        if np.little_endian:
            halves[:, :, 1], halves[:, :, 0] = desc, np.arange(N, dtype=np.int32)
        else:  # pragma: no cover
            halves[:, :, 0], halves[:, :, 1] = desc, np.arange(N, dtype=np.int32)
        keys.sort(axis=1)
        order = torch.from_numpy(keys & np.int64(0xFFFFFFFF))
    else:
        order = torch.sort(weights, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(N, device=order.device).expand(C, N))
    return ranks


def _extremes(cum_hit: torch.Tensor, ranks: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed running-sum extreme and its absolute value, from cumulative hit shares and sorted member ranks."""
    s = ranks.shape[1]
    i = torch.arange(1, s + 1, device=ranks.device, dtype=torch.float64)
    miss = (ranks.to(torch.float64) - i + 1) / (n - s)  # misses passed on reaching member i, over N - s
    before = torch.cat([torch.zeros_like(cum_hit[:, :1]), cum_hit[:, :-1]], dim=1)
    hi = torch.clamp((cum_hit - miss).amax(dim=1), min=0.0)
    lo = torch.clamp((before - miss).amin(dim=1), max=0.0)
    return torch.where(hi >= -lo - _TIE, hi, lo), torch.maximum(hi, -lo)


def as_members(token_set: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """A token set as a sorted, de-duplicated int64 tensor."""
    return torch.as_tensor(np.unique(np.asarray(token_set, dtype=np.int64)))


def enrichment_scores(weights: torch.Tensor, sets: Sequence[Sequence[int] | np.ndarray | torch.Tensor], *,
                      p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed enrichment scores [C, S] of `sets` for each row of `weights` [C, N] (a chunk of features).

    Returns (score, ks) as float64 on the CPU: `score` in the chosen form (unweighted for p = 0, GSEA-weighted
    |w|^p otherwise) and `ks`, the unweighted score's absolute value (the two-sample KS statistic). A set that
    is empty or covers the whole vocabulary scores NaN; so does a weighted set whose weights are all zero.
    """
    C, N = weights.shape
    score = torch.full((C, len(sets)), float("nan"), dtype=torch.float64)
    ks = torch.full((C, len(sets)), float("nan"), dtype=torch.float64)
    members = [as_members(s).to(weights.device) for s in sets]
    if not any(0 < len(m) < N for m in members):
        return score, ks
    ranks = _ranks(weights)
    for j, m in enumerate(members):
        s = len(m)
        if not 0 < s < N:
            continue
        r, order = torch.sort(ranks[:, m], dim=1)
        unweighted = torch.arange(1, s + 1, dtype=torch.float64, device=r.device).expand(C, s) / s
        signed, d = _extremes(unweighted, r, N)
        ks[:, j] = d.cpu()
        if p == 0:
            score[:, j] = signed.cpu()
            continue
        w = weights[:, m].gather(1, order).to(torch.float64).abs() ** p  # member weights in rank order
        total = w.sum(dim=1, keepdim=True)
        signed_w, _ = _extremes(w.cumsum(dim=1) / total, r, N)
        score[:, j] = torch.where(total[:, 0] > 0, signed_w, torch.nan).cpu()
    return score, ks


def running_sum(weights: np.ndarray, members: Sequence[int], p: float = 0.0) -> np.ndarray:
    """The full running sum [N] of one feature (for plots and as the brute-force reference in tests)."""
    weights = np.asarray(weights, dtype=np.float64)
    N = len(weights)
    order = np.argsort(-weights, kind="stable")
    hit = np.zeros(N, dtype=bool)
    hit[np.unique(np.asarray(members, dtype=np.int64))] = True
    hit = hit[order]
    w = np.abs(weights[order]) ** p if p else np.ones(N)
    hit_w = np.where(hit, w, 0.0)
    if hit_w.sum() == 0:
        return np.full(N, np.nan)
    up = hit_w / hit_w.sum()
    down = np.where(hit, 0.0, 1.0 / (N - hit.sum()))
    return np.cumsum(up - down)


def signed_extreme(rs: np.ndarray) -> float:
    """The enrichment score of a running sum: its largest deviation from zero, with its sign."""
    if np.isnan(rs).any():
        return float("nan")
    hi, lo = max(float(rs.max()), 0.0), min(float(rs.min()), 0.0)
    return hi if hi >= -lo - _TIE else lo


def ks_pvalue(d: np.ndarray | float, n: np.ndarray | int, m: np.ndarray | int) -> np.ndarray:
    """Two-sided p-value of a two-sample KS statistic `d` between samples of sizes n and m.

    Kolmogorov's limiting distribution with Stephens' small-sample correction (as in Numerical Recipes):
    lambda = (sqrt(ne) + 0.12 + 0.11 / sqrt(ne)) d, ne = n m / (n + m), p = 2 sum_k (-1)^(k-1) exp(-2 k^2 lambda^2).
    """
    d = np.asarray(d, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty set has d = NaN and gets NaN
        ne = np.asarray(n, dtype=np.float64) * m / (np.asarray(n, dtype=np.float64) + m)
        sq = np.sqrt(ne)
        lam = (sq + 0.12 + 0.11 / sq) * d
    k = np.arange(1, 101, dtype=np.float64).reshape((-1,) + (1,) * lam.ndim)
    terms = 2 * (-1) ** (k - 1) * np.exp(-2 * k**2 * lam[None] ** 2)
    p = np.where(lam < 0.2, 1.0, terms.sum(axis=0))  # the series converges slowly below 0.2, where p = 1
    return np.where(np.isnan(d), np.nan, np.clip(p, 0.0, 1.0))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) over all entries of `p`; NaNs stay NaN and do not count."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    ok = ~np.isnan(flat)
    q = np.full_like(flat, np.nan)
    vals = flat[ok]
    m = len(vals)
    if m:
        order = np.argsort(vals, kind="stable")
        scaled = vals[order] * m / np.arange(1, m + 1)
        scaled = np.minimum.accumulate(scaled[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(scaled, 1.0)
        q[ok] = out
    return q.reshape(p.shape)


def log_score(score: np.ndarray) -> np.ndarray:
    """sign(ES) * -ln(1 - |ES|): the unbounded scale the TSEA tutorial (and Study A's figures) plot."""
    score = np.asarray(score, dtype=np.float64)
    return np.sign(score) * -np.log1p(-np.clip(np.abs(score), 0.0, 1.0 - 1e-12))


def tsea(chunks: Iterable[torch.Tensor], sets: Sequence[Sequence[int]], *, p: float = 0.0,
         vocab_size: int | None = None) -> dict[str, np.ndarray]:
    """Enrichment of every set for every feature, from logit weights given chunk by chunk ([C, N] each).

    Returns arrays [F, S]: `score` (signed, in the chosen form), `ks` (unweighted KS statistic), `ks_p_value`
    (two-sided KS) and `ks_q_value` (Benjamini-Hochberg across all features x sets).
    """
    scores, kss = [], []
    n = vocab_size
    for w in chunks:
        n = w.shape[1]
        sc, d = enrichment_scores(w, sets, p=p)
        scores.append(sc.numpy())
        kss.append(d.numpy())
    S = len(sets)
    score = np.concatenate(scores) if scores else np.zeros((0, S))
    ks = np.concatenate(kss) if kss else np.zeros((0, S))
    sizes = np.array([len(as_members(s)) for s in sets], dtype=np.float64)
    pv = ks_pvalue(ks, sizes[None, :], (n or 0) - sizes[None, :]) if n else np.full_like(ks, np.nan)
    return {"score": score, "ks": ks, "ks_p_value": pv, "ks_q_value": benjamini_hochberg(pv)}


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS statistic by definition: the largest gap between the two empirical CDFs."""
    a, b = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    x = np.concatenate([a, b])
    fa = np.searchsorted(a, x, side="right") / len(a)
    fb = np.searchsorted(b, x, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def kolmogorov_sf(lam: float) -> float:
    """Q_KS(lambda) = P(sqrt(n) D > lambda) in the limit (for tests and reading tables)."""
    if lam < 0.2:
        return 1.0
    return float(min(1.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))))


# ---- I/O: `babelscope analyze tsea` ---------------------------------------------------------------------------

DEFAULT_THRESHOLD = {"log": 2.0, "raw": 0.5}
SCALE_NOTE = {
    "log": "sign(ES) * -ln(1 - |ES|), the unbounded scale of the TSEA tutorial's plots (and so of Study A's "
           "figures, whose '2 points from the diagonal' live on it)",
    "raw": "the signed enrichment score ES in [-1, 1]",
}
KS_NOTE = ("ks_p_value: two-sided two-sample KS test of whether the set's logit weights are distributed like all "
           "other tokens' (Kolmogorov limit with Stephens' correction); ks_q_value: Benjamini-Hochberg over all "
           "features x sets. Nearly any direction, random ones included, passes it for a coherent set such as "
           "names, so it does not say that a feature is biased; 'null' tests that")
TEST_NOTE = ("per feature, the gap score(y) - score(x) on the plot scale against the pooled gaps of one null "
             "family's directions (all its seeds): empirical p = min(1, 2 min(p_upper, p_lower)) with "
             "p_upper = (1 + #null >= gap) / (N + 1) and p_lower likewise (two-sided by doubling the smaller "
             "tail), Benjamini-Hochberg across features, flagged at q < level towards the set of the smaller "
             "tail; counts with 95% Wilson intervals (features as binomial trials)")


@dataclass(kw_only=True)
class TseaConfig(Settings):
    """`babelscope analyze tsea`: token set enrichment of every feature, tested against null directions."""

    model: str = opt(help="HF model directory")
    sae: str = opt(help="SAE directory")
    sets: list[str] = opt(help="comma-separated: english_names, english_names_latin, english_names_arabic, "
                               "arabic_names, arabic_names_latin, name_then_punct (needs --data), FILE.txt, "
                               "re:PATTERN (runs to the end of its argument)")
    out: str = opt(help="output directory")
    data: list[str] = opt(help="corpus for name_then_punct and for the covariance and activations nulls",
                          default_factory=list)
    text_field: str = opt("text", "the record field holding the text")
    max_docs: int = opt(10_000, "documents read for name_then_punct", gt=0)
    min_count: int = opt(1, "name_then_punct: times a name must precede punctuation", ge=1)
    multi: str = opt("drop", "multi-token words: drop them or use their first token", choices=("drop", "first"))
    weight: float = opt(0.0, "GSEA weight p (|logit|^p); 0 = the unweighted KS form", ge=0)
    scatter: str | None = opt(None, "X,Y: the sets on the scatter's horizontal and vertical axes, whose gap Y - X "
                                    "is tested against the null (default: the second and the first set, so with "
                                    "--sets english_names,arabic_names features above the diagonal favour "
                                    "English names, as in Study A)")
    scale: str = opt("log", "scale of the plots and of the tested gap: log = sign(ES)*-ln(1-|ES|) as the study's "
                            "figures, raw = ES", choices=("log", "raw"))
    threshold: float | None = opt(None, "the study's count: features with |Y - X| above this (default 2 on the log "
                                        "scale, 0.5 raw); kept beside the calibrated test for comparison", gt=0)
    null: list[str] = opt(help="null families, the first one drawn in the scatter: untrained, isotropic, "
                               "covariance, activations (the last two need --data); none: no null",
                          default_factory=lambda: list(FAMILIES))
    null_seeds: int = opt(8, "seeds per null family (0..N-1), pooled for the test and reported as mean and spread",
                          ge=1)
    null_directions: int | None = opt(None, "directions per null seed (default: as many as features)", gt=0)
    null_tokens: int = opt(32768, "activation vectors read from --data for the covariance and activations nulls "
                                  "(each seed of the activations null draws its directions from them without "
                                  "replacement, so keep it above --null-directions)", ge=2)
    level: float = opt(0.05, "false discovery rate of the calibrated test (Benjamini-Hochberg across features)",
                       gt=0, le=0.5)
    context: int = opt(128, "tokens per context when reading activations for the nulls", gt=1)
    chunk: int = opt(512, "features per chunk", gt=0)
    device: str = opt("auto", "cpu, cuda, cuda:N or auto")
    force: bool = opt(False, "use the SAE with a model other than the one it was trained on")


def write_tsea(model, tokenizer, hook: str, W_dec: torch.Tensor, sets: Sequence, out: str | Path, *,
               p: float = 0.0, threshold: float | None = None, scale: str = "log",
               pair: Sequence[str] | None = None, chunk: int = 512, null: Sequence[str] = FAMILIES,
               null_seeds: int = 8, null_directions: int | None = None, activations: torch.Tensor | None = None,
               sae_seed: int | None = None, level: float = 0.05, source: dict | None = None) -> dict:
    """Score every token set for every feature and write the tables: tsea.parquet/.csv, sets.json and, for a
    pair of sets (x, y), the calibrated test of each feature's gap y - x against each `null` family
    (calibrated.parquet, null.parquet); meta.json last. Figures are drawn from these by `report.tsea`.
    `sets` are `token_sets.TokenSet`s; `activations` [m, d] in the SAE's input space feed the covariance and
    activations nulls."""
    from babelscope.analysis.logits import folded_unembedding, iter_logit_weights
    from babelscope.errors import UserError
    from babelscope.files import write_json_atomic
    from babelscope.progress import progress

    if scale not in SCALE_NOTE:
        raise UserError(f"unknown scale '{scale}'; expected log or raw")
    families = check_families([f for f in null if f != "none"])
    threshold = DEFAULT_THRESHOLD[scale] if threshold is None else threshold
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = len(tokenizer)
    names = [s.name for s in sets]
    if pair is None and len(names) >= 2:
        pair = [names[1], names[0]]  # x, y: the first set on the vertical axis, as Study A's English names
    if pair and (len(pair) != 2 or any(n not in names for n in pair)):
        raise UserError(f"--scatter needs two of the sets {names}, got {list(pair)}")
    need = sorted(NEEDS_ACTIVATIONS & set(families))
    if pair and need and activations is None:
        raise UserError(f"the null famil{'ies' if len(need) > 1 else 'y'} {', '.join(need)} need activations of "
                        "the hook on a corpus: give --data, or choose --null untrained isotropic")
    members = [[i for i in s.ids if i < vocab] for s in sets]
    F = W_dec.shape[0]
    chunks = progress(iter_logit_weights(model, hook, W_dec, chunk=chunk, vocab_size=vocab),
                      total=-(-F // chunk), desc="tsea", unit="chunk")
    res = tsea(chunks, members, p=p, vocab_size=vocab)
    res["log_score"] = log_score(res["score"])
    _, fold_note = folded_unembedding(model)
    _write_table(out, names, res, [len(m) for m in members])
    write_json_atomic(out / "sets.json", {"sets": [{**s.coverage(), "ids": list(map(int, m))}
                                                   for s, m in zip(sets, members, strict=True)]})
    meta = {**(source or {}), "hook": hook, "n_features": int(F), "vocab_size": vocab, "sets": names,
            "weight_p": p, "form": "unweighted (KS)" if p == 0 else f"weighted |logit|^{p:g}",
            "logit_weights": f"W_U W_dec[f] through the hook's output map; {fold_note}",
            "score": "signed running-sum extreme (GSEA), in [-1, 1]", "ks_p_value": KS_NOTE,
            "plot_scale": scale, "plot_scale_note": SCALE_NOTE[scale], "threshold": threshold,
            "empty_sets": [n for n, m in zip(names, members, strict=True) if not m]}
    if pair:
        a, b = names.index(pair[0]), names.index(pair[1])
        shown = res["log_score"] if scale == "log" else res["score"]
        gap = shown[:, b] - shown[:, a]
        meta.update(scatter_pair=list(pair), gap=f"{pair[1]} - {pair[0]} on the plot scale",
                    beyond_threshold=beyond(shown[:, a], shown[:, b], threshold))
        empty = [n for n, m in zip(pair, (members[a], members[b]), strict=True) if not 0 < len(m) < vocab]
        if families and empty:
            meta["null_skipped"] = f"no null: the set(s) {', '.join(empty)} cover no token or every token"
        elif families:
            meta["null"] = _null_tests(model, hook, W_dec, [members[a], members[b]], gap,
                                       res["score"][:, b] - res["score"][:, a], list(pair), out, families=families,
                                       seeds=range(null_seeds), n=null_directions or F, activations=activations,
                                       sae_seed=sae_seed, scale=scale, p=p, threshold=threshold, level=level,
                                       chunk=chunk, vocab=vocab, bar=progress)
    write_json_atomic(out / "meta.json", meta)
    return meta


def _null_tests(model, hook: str, W_dec: torch.Tensor, pair_members: list, gap: np.ndarray, raw_gap: np.ndarray,
                pair: list[str], out: Path, *, families: list[str], seeds: Iterable[int], n: int,
                activations: torch.Tensor | None, sae_seed: int | None, scale: str, p: float, threshold: float,
                level: float, chunk: int, vocab: int, bar) -> dict:
    """Score each family's null directions on the pair, test every feature's gap against them, write
    null.parquet (every null direction's gap) and calibrated.parquet (every feature's test, per family)."""
    import pyarrow as pa

    from babelscope.analysis.logits import iter_logit_weights
    from babelscope.files import write_table_atomic

    seeds = list(seeds)
    x, y = pair
    d = W_dec.shape[1]
    F = len(gap)
    null_cols: dict[str, list] = {"family": [], "seed": [], "direction": [], "gap": [], "raw_gap": []}
    feat_cols: dict[str, list] = {k: [] for k in ("feature", "family", "gap", "raw_gap", "p_upper", "p_lower",
                                                  "p_value", "q_value", "favours")}
    result: dict = {"families": {}, "order": families, "primary": families[0], "test": TEST_NOTE, "level": level,
                    "directions_per_seed": n, "seeds": seeds}
    todo = bar([(f, s) for f in families for s in seeds], desc="tsea null", unit="draw")
    gaps: dict[str, list[np.ndarray]] = {f: [] for f in families}
    for family, seed in todo:
        R = null_directions(family, n, d, seed, activations=activations, sae_seed=sae_seed).to(W_dec)
        score = tsea(iter_logit_weights(model, hook, R, chunk=chunk, vocab_size=vocab), pair_members, p=p,
                     vocab_size=vocab)["score"]
        shown = log_score(score) if scale == "log" else score
        gaps[family].append(shown[:, 1] - shown[:, 0])
        null_cols["family"] += [family] * n
        null_cols["seed"] += [seed] * n
        null_cols["direction"] += list(range(n))
        null_cols["gap"] += gaps[family][-1].tolist()
        null_cols["raw_gap"] += (score[:, 1] - score[:, 0]).tolist()
    for family in families:
        summary, test = family_result(gap, gaps[family], (y, x), level=level, threshold=threshold)
        summary["draw"] = DESCRIPTION[family]
        if family == "untrained":
            summary["trainer_seeds"] = [untrained_seed(s) for s in seeds]
        if family in NEEDS_ACTIVATIONS:
            summary["activation_vectors"] = len(activations)
        result["families"][family] = summary
        feat_cols["feature"] += list(range(F))
        feat_cols["family"] += [family] * F
        feat_cols["gap"] += gap.tolist()
        feat_cols["raw_gap"] += raw_gap.tolist()
        for k in ("p_upper", "p_lower", "p_value", "q_value"):
            feat_cols[k] += test[k].tolist()
        feat_cols["favours"] += [{1: y, -1: x}.get(int(s), "") for s in test["side"]]
    write_table_atomic(out / "null", pa.table({**null_cols, "seed": pa.array(null_cols["seed"], pa.int32()),
                                               "direction": pa.array(null_cols["direction"], pa.int32())}))
    write_table_atomic(out / "calibrated", pa.table({**feat_cols,
                                                     "feature": pa.array(feat_cols["feature"], pa.int32())}))
    return result


def beyond(x: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, int]:
    """How many rows lie more than `threshold` above the diagonal (y - x > t) and below it (x - y > t)."""
    gap = np.asarray(y, dtype=np.float64) - np.asarray(x, dtype=np.float64)
    return {"above": int((gap > threshold).sum()), "below": int((gap < -threshold).sum())}


def _write_table(out: Path, names: list[str], res: dict[str, np.ndarray], sizes: list[int]) -> None:
    import pyarrow as pa

    from babelscope.files import write_table_atomic

    F, S = res["score"].shape
    table = pa.table({
        "feature": pa.array(np.repeat(np.arange(F, dtype=np.int32), S)),
        "set": pa.array(np.tile(np.array(names, dtype=object), F).tolist(), type=pa.string()),
        "score": res["score"].ravel(), "log_score": res["log_score"].ravel(), "ks": res["ks"].ravel(),
        "ks_p_value": res["ks_p_value"].ravel(), "ks_q_value": res["ks_q_value"].ravel(),
        "set_size": pa.array(np.tile(np.array(sizes, dtype=np.int32), F)),
    })
    write_table_atomic(out / "tsea", table)


def hook_activations(model, tokenizer, hook: str, records: Iterable[dict], tokens: int, *, context: int = 128,
                     batch_size: int = 16) -> torch.Tensor:
    """The first `tokens` activation vectors [m, d] (float32, CPU) at `hook` over `records`, BOS left out."""
    from babelscope.models.contexts import iter_contexts

    parts, got = [], 0
    for batch in iter_contexts(model, tokenizer, records, [hook], max_tokens=context, batch_size=batch_size):
        acts = batch.acts[hook][batch.valid.to(batch.acts[hook].device)].float().cpu()
        parts.append(acts[:tokens - got])
        got += len(parts[-1])
        if got >= tokens:
            break
    d = parts[0].shape[1] if parts else 0
    return torch.cat(parts) if parts else torch.zeros(0, d)


def analyze_tsea(cfg: TseaConfig, *, command_args: dict | None = None) -> dict:
    """`babelscope analyze tsea`: token sets from the model's tokenizer, activations for the nulls from
    `cfg.data`, then `write_tsea`."""
    import itertools

    from babelscope.analysis.token_sets import build_sets, parse_specs
    from babelscope.corpus import iter_corpus
    from babelscope.files import check_output
    from babelscope.manifest import manifest
    from babelscope.sae.pairing import load_pair
    from babelscope.settings import as_dict

    families = check_families([f for f in cfg.null if f != "none"])
    texts = None
    if cfg.data:
        texts = (r["text"] for r in itertools.islice(iter_corpus(cfg.data, cfg.text_field), cfg.max_docs))
    check_output(cfg.out, directory=True)
    model, tokenizer, sae, hook = load_pair(cfg.model, cfg.sae, device=cfg.device, force=cfg.force)
    sets = build_sets(parse_specs(cfg.sets), tokenizer, texts=texts, multi=cfg.multi, min_count=cfg.min_count)
    device = next(model.parameters()).device
    activations = None
    if cfg.data and NEEDS_ACTIVATIONS & set(families):
        records = iter_corpus(cfg.data, cfg.text_field)
        raw = hook_activations(model, tokenizer, hook, records, cfg.null_tokens, context=cfg.context)
        activations = sae.normalize(raw.to(sae.W_dec.device)).detach().float().cpu()  # the SAE's input space
    source = {"model": str(Path(cfg.model).resolve()), "sae": str(Path(cfg.sae).resolve()),
              "data": [str(d) for d in cfg.data],
              "manifest": manifest("analyze tsea", command_args if command_args is not None else as_dict(cfg))}
    W_dec = sae.W_dec.detach().float().to(device)
    pair = parse_specs([cfg.scatter]) if cfg.scatter else None
    return write_tsea(model, tokenizer, hook, W_dec, sets, cfg.out, p=cfg.weight,
                      threshold=cfg.threshold, scale=cfg.scale, pair=pair, chunk=cfg.chunk, null=families,
                      null_seeds=cfg.null_seeds, null_directions=cfg.null_directions, activations=activations,
                      sae_seed=(sae.cfg.extra or {}).get("seed"), level=cfg.level, source=source)

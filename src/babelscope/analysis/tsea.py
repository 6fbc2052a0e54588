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
Benjamini-Hochberg correction runs across every (feature, set) pair.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

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

    Returns arrays [F, S]: `score` (signed, in the chosen form), `ks` (unweighted KS statistic), `p_value`
    (two-sided KS) and `q_value` (Benjamini-Hochberg across all features x sets).
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
    return {"score": score, "ks": ks, "p_value": pv, "q_value": benjamini_hochberg(pv)}


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


def write_tsea(model, tokenizer, hook: str, W_dec: torch.Tensor, sets: Sequence, out: str | Path, *,
               p: float = 0.0, threshold: float | None = None, scale: str = "log",
               pair: Sequence[str] | None = None, chunk: int = 512, null: int | None = None, seed: int = 0,
               source: dict | None = None) -> dict:
    """Score every token set for every feature and write tsea.parquet/.csv, sets.json, the scatter and
    Manhattan plots (PNG + HTML) and meta.json (last). `sets` are `token_sets.TokenSet`s. `null` random unit
    directions (default: as many as features; 0: none) are scored the same way, as the baseline count of
    "biased" directions that the model's unembedding alone produces."""
    from babelscope.analysis.logits import folded_unembedding, iter_logit_weights
    from babelscope.errors import UserError
    from babelscope.files import write_json_atomic
    from babelscope.progress import progress

    if scale not in SCALE_NOTE:
        raise UserError(f"unknown scale '{scale}'; expected log or raw")
    threshold = DEFAULT_THRESHOLD[scale] if threshold is None else threshold
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = len(tokenizer)
    names = [s.name for s in sets]
    if pair is None and len(names) >= 2:
        pair = [names[1], names[0]]  # x, y: the first set on the vertical axis, as Study A's English names
    if pair and (len(pair) != 2 or any(n not in names for n in pair)):
        raise UserError(f"--scatter needs two of the sets {names}, got {list(pair)}")
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
    shown = res["log_score"] if scale == "log" else res["score"]
    counts: dict = {}
    if pair:
        a, b = names.index(pair[0]), names.index(pair[1])
        counts["beyond_threshold"] = beyond(shown[:, a], shown[:, b], threshold)
        n_null = F if null is None else null
        if n_null:
            g = torch.Generator().manual_seed(seed)
            R = torch.randn(n_null, W_dec.shape[1], generator=g).to(W_dec)
            R = R / R.norm(dim=1, keepdim=True)
            rnd = tsea(iter_logit_weights(model, hook, R, chunk=chunk, vocab_size=vocab), [members[a], members[b]],
                       p=p, vocab_size=vocab)["score"]
            rnd = log_score(rnd) if scale == "log" else rnd
            counts["null"] = {"directions": n_null, "seed": seed, "beyond_threshold": beyond(rnd[:, 0], rnd[:, 1],
                                                                                            threshold)}
    figures = _figures(out, names, shown, scale, threshold, pair, counts.get("null"))
    meta = {**(source or {}), "hook": hook, "n_features": int(F), "vocab_size": vocab, "sets": names,
            "weight_p": p, "form": "unweighted (KS)" if p == 0 else f"weighted |logit|^{p:g}",
            "logit_weights": f"W_U W_dec[f] through the hook's output map; {fold_note}",
            "score": "signed running-sum extreme (GSEA), in [-1, 1]",
            "p_value": "two-sided two-sample KS of the set's logit weights vs the rest (Kolmogorov limit with "
                       "Stephens' correction); q_value: Benjamini-Hochberg over all features x sets",
            "plot_scale": scale, "plot_scale_note": SCALE_NOTE[scale], "threshold": threshold,
            "empty_sets": [n for n, m in zip(names, members, strict=True) if not m], **counts, **figures}
    write_json_atomic(out / "meta.json", meta)
    return meta


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
        "p_value": res["p_value"].ravel(), "q_value": res["q_value"].ravel(),
        "set_size": pa.array(np.tile(np.array(sizes, dtype=np.int32), F)),
    })
    write_table_atomic(out / "tsea", table)


def _figures(out: Path, names: list[str], shown: np.ndarray, scale: str, threshold: float,
             pair: Sequence[str] | None, null: dict | None) -> dict:
    from babelscope.files import write_text_atomic
    from babelscope.report.dashboard import figure_html
    from babelscope.report.plots import manhattan, tsea_scatter

    label = "log-scale enrichment" if scale == "log" else "enrichment score"
    result: dict = {}
    manhattan({n: shown[:, j] for j, n in enumerate(names)}, out / "manhattan.png", axis_label=label)
    top = []
    for j, n in enumerate(names):
        col = shown[:, j]
        ok = np.flatnonzero(~np.isnan(col))
        top += [[int(i), n, f"{col[i]:.3f}"] for i in ok[np.argsort(-col[ok], kind="stable")][:10]]
    write_text_atomic(out / "manhattan.html", figure_html(
        "TSEA Manhattan plot", (out / "manhattan.png").read_bytes(), note=f"score shown: {SCALE_NOTE[scale]}",
        table={"caption": "top 10 features per set", "header": ["feature", "set", label], "rows": top},
        feature_href="feature-{}.html"))
    result["manhattan"] = ["manhattan.png", "manhattan.html"]
    if pair:
        a, b = names.index(pair[0]), names.index(pair[1])
        stem = f"scatter_{_slug(pair[1])}_vs_{_slug(pair[0])}"
        marked = tsea_scatter(shown[:, a], shown[:, b], pair[0], pair[1], out / f"{stem}.png", threshold=threshold,
                              axis_label=label)
        rows = [[f, f"{shown[f, a]:.3f}", f"{shown[f, b]:.3f}", f"{shown[f, b] - shown[f, a]:+.3f}"] for f in marked]
        write_text_atomic(out / f"{stem}.html", figure_html(
            f"TSEA: {pair[1]} vs {pair[0]}", (out / f"{stem}.png").read_bytes(),
            note=f"score shown: {SCALE_NOTE[scale]}; marked: |{pair[1]} - {pair[0]}| > {threshold:g}" + (
                "" if not null else f"; baseline: of {null['directions']} random unit directions, "
                f"{null['beyond_threshold']['above']} lie above and {null['beyond_threshold']['below']} below"),
            table={"caption": f"{len(marked)} features beyond the threshold (largest gap first)",
                   "header": ["feature", pair[0], pair[1], "gap"], "rows": rows},
            feature_href="feature-{}.html"))
        result.update(scatter=[f"{stem}.png", f"{stem}.html"], scatter_pair=list(pair), marked=marked)
    return result


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^\w.-]+", "_", name).strip("_")[:60] or "set"


def analyze_tsea(model_dir: str | Path, sae_dir: str | Path, specs: Sequence[str], out: str | Path, *,
                 data: Sequence[str | Path] | None = None, text_field: str = "text", max_docs: int | None = 10_000,
                 multi: str = "drop", min_count: int = 1, device: str = "cpu", command_args: dict | None = None,
                 **kwargs) -> dict:
    """`babelscope analyze tsea`: token sets from the model's tokenizer, then `write_tsea`."""
    import itertools

    from babelscope.analysis.token_sets import build_sets
    from babelscope.manifest import manifest
    from babelscope.models import load_model
    from babelscope.sae.io import load_sae

    model, tokenizer = load_model(model_dir, device=device)
    sae = load_sae(sae_dir)
    texts = None
    if data:
        from babelscope.corpus import iter_corpus

        texts = (r["text"] for r in itertools.islice(iter_corpus(data, text_field), max_docs))
    sets = build_sets(specs, tokenizer, texts=texts, multi=multi, min_count=min_count)
    source = {"model": str(Path(model_dir).resolve()), "sae": str(Path(sae_dir).resolve()),
              "data": [str(d) for d in data or []], "manifest": manifest("analyze tsea", command_args or {})}
    W_dec = sae.W_dec.detach().float().to(next(model.parameters()).device)
    return write_tsea(model, tokenizer, sae.cfg.hook_name, W_dec, sets, out, source=source, **kwargs)

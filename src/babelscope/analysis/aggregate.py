"""Stage 2 of the feature store: exact per-feature statistics from the sparse shards, one shard in memory at a
time (see `babelscope.analysis.store` for the design and the tables).

Pass A: active count, sum, max, spans and the top-k activations (ties: the earlier token). Pass B, with the
final max: the histogram over [0, max], the occurrences at >= threshold x max per (feature, token, label)
and their spans, and per equal-width interval of (0, max] the examples with the smallest `sample_priority`.
Pass C: the token windows of the chosen examples and their contexts. Every buffer is features x a constant,
except the attribution counts (one entry per distinct (feature, token, label) above threshold) and, for
records with ground-truth spans, the active entries on the planted concepts' tokens (`analysis.groundtruth`,
whose `DetectorPass` rides along passes A and B).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from babelscope.analysis.shards import Shard, global_token, iter_shards, shard_meta, shard_paths
from babelscope.errors import UserError

if TYPE_CHECKING:
    from babelscope.analysis.store import StoreConfig

_LOW32 = np.int64(0xFFFFFFFF)


# ---- pure helpers (shared with the brute-force reference in the tests) ----------------------------------------

def hist_bin(val: np.ndarray, vmax: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each activation over [0, vmax]; the maximum falls in the last bin."""
    ratio = np.asarray(val, dtype=np.float64) / np.asarray(vmax, dtype=np.float64)
    return np.minimum((ratio * bins).astype(np.int64), bins - 1)


def is_above(val: np.ndarray, vmax: np.ndarray, frac: float) -> np.ndarray:
    """Whether an activation reaches `frac` of its feature's maximum (compared in float64)."""
    return np.asarray(val, dtype=np.float64) >= frac * np.asarray(vmax, dtype=np.float64)


def sample_priority(g: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """A reproducible pseudo-random uint64 per (token position, feature): splitmix64 of both."""
    x = (np.asarray(g, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.asarray(feature, dtype=np.uint64)
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def span_starts(feature: np.ndarray, tok: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """For entries sorted by (feature, token), whether each one starts a run of consecutive active tokens."""
    start = np.ones(len(feature), dtype=bool)
    if len(feature) > 1:
        start[1:] = (feature[1:] != feature[:-1]) | (tok[1:] != tok[:-1] + 1) | (ctx[1:] != ctx[:-1])
    return start


def group_rank(group: np.ndarray) -> np.ndarray:
    """0-based rank of each element within its run of equal values of a sorted `group` array."""
    n = len(group)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.ones(n, dtype=bool)
    first[1:] = group[1:] != group[:-1]
    idx = np.arange(n)
    return idx - np.maximum.accumulate(np.where(first, idx, 0))


# ---- the passes ------------------------------------------------------------------------------------------------

def _merge_best(buf_key: np.ndarray, buf_g: np.ndarray, cand_key: np.ndarray, cand_g: np.ndarray,
                keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the `keep` smallest keys per row of [rows, keep] buffers and [rows, keep] candidates (ties: buffer
    first, then candidate order, i.e. corpus order)."""
    key = np.concatenate([buf_key, cand_key], axis=1)
    g = np.concatenate([buf_g, cand_g], axis=1)
    order = np.argsort(key, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(key, order, axis=1), np.take_along_axis(g, order, axis=1)


def _candidates(group: np.ndarray, key: np.ndarray, g: np.ndarray, rows: int, keep: int, fill) -> tuple:
    """[rows, keep] arrays of each group's `keep` smallest keys (ties by g) from flat (group, key, g) entries
    given in increasing g (lexsort is stable, so ties keep that order)."""
    order = np.lexsort((key, group))
    group, key, g = group[order], key[order], g[order]
    rank = group_rank(group)
    sel = rank < keep
    out_key = np.full((rows, keep), fill, dtype=key.dtype)
    out_g = np.full((rows, keep), -1, dtype=np.int64)
    out_key[group[sel], rank[sel]] = key[sel]
    out_g[group[sel], rank[sel]] = g[sel]
    return out_key, out_g


class _Counter:
    """Counts of int64 keys, merged in batches so the work stays proportional to the distinct keys."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.pending: list[np.ndarray] = []
        self.n_pending = 0

    def add(self, keys: np.ndarray) -> None:
        if len(keys):
            self.pending.append(keys)
            self.n_pending += len(keys)
            if self.n_pending > max(len(self.keys), 1 << 20):
                self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        new_keys, new_counts = np.unique(np.concatenate(self.pending), return_counts=True)
        keys = np.concatenate([self.keys, new_keys])
        counts = np.concatenate([self.counts, new_counts])
        self.keys, inverse = np.unique(keys, return_inverse=True)
        self.counts = np.bincount(inverse, weights=counts, minlength=len(self.keys)).astype(np.int64)
        self.pending, self.n_pending = [], 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._flush()
        return self.keys, self.counts


@dataclass
class _Corpus:
    """What one look at every shard says: sizes, labels and the vocabulary bound."""

    paths: list[Path]
    F: int
    V: int
    labels: list[str]
    tokens: int
    n_contexts: int
    n_docs: int


@dataclass
class _Counts:
    """Pass A's per-feature results."""

    n_active: np.ndarray
    total: np.ndarray
    vmax: np.ndarray
    n_spans: np.ndarray
    top_g: np.ndarray  # [F, top_k] corpus positions of the top activations (-1: none)


@dataclass
class _Thresholds:
    """Pass B's per-feature results."""

    hist: np.ndarray
    n_above: np.ndarray
    n_spans_above: np.ndarray
    attributions: dict[str, np.ndarray]
    iv_g: np.ndarray  # [F * n_intervals, per_interval] corpus positions of the interval samples


def aggregate(cache: str | Path, cfg: StoreConfig, *, n_features: int | None = None,
              vocab_size: int | None = None) -> dict[str, Any]:
    """Stage 2: exact per-feature statistics, attributions, examples and (for records with ground-truth spans)
    the detector table, from the shards (see module docstring).

    Returns {"features": columns, "attributions": columns, "examples": columns, "contexts": columns,
    "detectors": columns or None, "detectors_meta", "labels", "tokens", "n_docs", "n_contexts", "vocab_size"};
    columns are numpy arrays, list columns `Ragged`.
    """
    from babelscope.analysis.groundtruth import DetectorPass

    corpus = _scan(Path(cache), n_features, vocab_size)
    truth = DetectorPass(corpus.F)
    counts = _pass_counts(corpus, cfg, truth)
    thresholds = _pass_thresholds(corpus, cfg, counts.vmax, truth)
    examples, contexts = _pass_examples(corpus, cfg, counts.top_g, thresholds.iv_g)
    table = truth.table()
    F, n = corpus.F, counts.n_active
    return {
        "features": {
            "feature": np.arange(F, dtype=np.int32), "n_active": n,
            "frequency": n / max(corpus.tokens, 1), "max_act": counts.vmax.astype(np.float32),
            "mean_act": np.divide(counts.total, n, out=np.zeros(F), where=n > 0),
            "n_above": thresholds.n_above, "n_spans": counts.n_spans, "span_tokens": n.copy(),
            "n_spans_above": thresholds.n_spans_above, "span_tokens_above": thresholds.n_above.copy(),
            "hist": thresholds.hist, "hist_max": counts.vmax.astype(np.float32),
        },
        "attributions": thresholds.attributions,
        "examples": examples,
        "contexts": contexts,
        "detectors": table,
        "detectors_meta": truth.meta() if table is not None else None,
        "labels": corpus.labels,
        "tokens": corpus.tokens,
        "n_docs": corpus.n_docs,
        "n_contexts": corpus.n_contexts,
        "vocab_size": corpus.V,
    }


def _scan(cache: Path, n_features: int | None, vocab_size: int | None) -> _Corpus:
    """Sizes, labels and the largest token id of the cache."""
    paths = shard_paths(cache)
    if not paths:
        raise UserError("the feature cache holds no shards (was the corpus empty?)", path=cache)
    metas = [shard_meta(p) for p in paths]
    labels: set[str] = set()
    n_tokens = n_contexts = n_docs = max_token = 0
    for p in paths:
        with np.load(p) as z:
            labels.update(z["ctx_label"].tolist())
            n_tokens += int(z["valid"].sum())
            n_contexts += len(z["ctx_doc"])
            n_docs += len(np.unique(z["ctx_doc"]))  # documents never span shards
            if len(z["tokens"]):
                max_token = max(max_token, int(z["tokens"].max()))
    return _Corpus(paths, int(n_features or metas[0]["n_features"]), max(int(vocab_size or 0), max_token + 1),
                   sorted(labels), n_tokens, n_contexts, n_docs)


def _pass_counts(corpus: _Corpus, cfg: StoreConfig, truth: Any) -> _Counts:
    """Pass A: active counts, sums, max, spans and the top-k activations (and the ground truth's positives)."""
    F, k = corpus.F, cfg.top_k
    n_active = np.zeros(F, dtype=np.int64)
    total = np.zeros(F, dtype=np.float64)
    vmax = np.zeros(F, dtype=np.float32)
    n_spans = np.zeros(F, dtype=np.int64)
    top_key = np.full((F, k), np.inf, dtype=np.float64)  # key = -activation (smallest first)
    top_g = np.full((F, k), -1, dtype=np.int64)
    for sh in iter_shards(corpus.paths, "features: counts"):
        if not len(sh.tok):
            continue
        n_active += np.bincount(sh.feat, minlength=F)
        total += np.bincount(sh.feat, weights=sh.val, minlength=F)
        np.maximum.at(vmax, sh.feat, sh.val)
        order = np.lexsort((sh.tok, sh.feat))
        f, t = sh.feat[order], sh.tok[order]
        starts = span_starts(f, t, sh.ctx_of[order])
        n_spans += np.bincount(f[starts], minlength=F)
        g = global_token(sh.index, sh.tok)
        ck, cg = _candidates(sh.feat, -sh.val.astype(np.float64), g, F, k, np.inf)
        top_key, top_g = _merge_best(top_key, top_g, ck, cg, k)
        truth.count(sh)
    return _Counts(n_active, total, vmax, n_spans, top_g)


def _pass_thresholds(corpus: _Corpus, cfg: StoreConfig, vmax: np.ndarray, truth: Any) -> _Thresholds:
    """Pass B, with the final max: histogram, >= threshold counts, attributions and their spans, interval
    samples (and the ground truth's comparisons of negatives with the positives)."""
    F, V = corpus.F, corpus.V
    L = max(len(corpus.labels), 1)
    n_int, m, bins = cfg.n_intervals, cfg.per_interval, cfg.hist_bins
    hist = np.zeros((F, bins), dtype=np.int64)
    n_above = np.zeros(F, dtype=np.int64)
    n_spans_above = np.zeros(F, dtype=np.int64)
    attr = _Counter()
    iv_key = np.full((F * n_int, m), np.iinfo(np.uint64).max, dtype=np.uint64)
    iv_g = np.full((F * n_int, m), -1, dtype=np.int64)
    label_code = {name: i for i, name in enumerate(corpus.labels)}
    for sh in iter_shards(corpus.paths, "features: thresholds"):
        if not len(sh.tok):
            continue
        mx = vmax[sh.feat]
        hist += np.bincount(sh.feat * bins + hist_bin(sh.val, mx, bins), minlength=F * bins).reshape(F, bins)
        above = is_above(sh.val, mx, cfg.threshold_frac)
        fa, ta = sh.feat[above], sh.tok[above]
        n_above += np.bincount(fa, minlength=F)
        codes = np.array([label_code[x] for x in sh.ctx_label.tolist()], dtype=np.int64)
        ctx = sh.ctx_of
        token_id = sh.tokens[ta].astype(np.int64)
        attr.add((fa * V + token_id) * L + codes[ctx[above]])
        order = np.lexsort((ta, fa))
        n_spans_above += np.bincount(fa[order][span_starts(fa[order], ta[order], ctx[above][order])], minlength=F)
        g = global_token(sh.index, sh.tok)
        group = sh.feat * n_int + hist_bin(sh.val, mx, n_int)
        ck, cg = _candidates(group, sample_priority(g, sh.feat), g, F * n_int, m, np.iinfo(np.uint64).max)
        iv_key, iv_g = _merge_best(iv_key, iv_g, ck, cg, m)
        truth.compare(sh, vmax, cfg.threshold_frac)
    keys, counts = attr.result()
    lab, tokv, featv = keys % L, (keys // L) % V, keys // L // V
    attributions = {"feature": featv.astype(np.int32), "token_id": tokv.astype(np.int32),
                    "label": np.array(corpus.labels or [""], dtype=object)[lab], "count": counts}
    return _Thresholds(hist, n_above, n_spans_above, attributions, iv_g)


def _pass_examples(corpus: _Corpus, cfg: StoreConfig, top_g: np.ndarray, iv_g: np.ndarray) -> tuple[dict, dict]:
    """Pass C: the windows of the chosen examples (top and interval samples) and the contexts they come from."""
    F, k, n_int, m = corpus.F, cfg.top_k, cfg.n_intervals, cfg.per_interval
    ex_feat = np.concatenate([np.repeat(np.arange(F), k), np.repeat(np.arange(F), n_int * m)])
    ex_kind = np.concatenate([np.zeros(F * k, dtype=np.int8), np.ones(F * n_int * m, dtype=np.int8)])
    ex_interval = np.concatenate([np.full(F * k, -1), np.tile(np.repeat(np.arange(n_int), m), F)])
    ex_rank = np.concatenate([np.tile(np.arange(k), F), np.tile(np.arange(m), F * n_int)])
    ex_g = np.concatenate([top_g.ravel(), iv_g.ravel()])
    chosen = ex_g >= 0
    ex_feat, ex_kind, ex_interval, ex_rank, ex_g = (a[chosen] for a in (ex_feat, ex_kind, ex_interval, ex_rank, ex_g))
    ex_shard = ex_g >> np.int64(32)
    ex_parts, ctx_parts = [], []
    for sh in iter_shards(corpus.paths, "features: examples"):
        sel = np.flatnonzero(ex_shard == sh.index)
        if len(sel):
            ex, cx = _extract(sh, F, cfg.window, ex_feat[sel], ex_kind[sel], ex_interval[sel], ex_rank[sel],
                              ex_g[sel] & _LOW32)
            ex_parts.append(ex)
            ctx_parts.append(cx)
    examples = _concat(ex_parts, _EXAMPLE_COLUMNS)
    contexts = _concat(ctx_parts, _CONTEXT_COLUMNS)
    order = np.lexsort((examples["rank"], examples["interval"], examples["kind_code"], examples["feature"]))
    examples = {key: col[order] for key, col in examples.items()}
    examples["kind"] = np.where(examples.pop("kind_code") == 0, "top", "interval").astype(object)
    return examples, contexts


class Ragged:
    """Variable-length rows stored flat: row i is values[offsets[i]:offsets[i + 1]] (a numpy view)."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_lengths(cls, values: np.ndarray, lengths: np.ndarray) -> Ragged:
        return cls(values, np.concatenate([[0], np.cumsum(lengths)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index):
        if isinstance(index, int | np.integer):
            return self.values[self.offsets[index]:self.offsets[index + 1]]
        return self.take(np.arange(len(self))[index])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows: np.ndarray) -> Ragged:
        """The rows `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths()[rows]
        starts = np.repeat(self.offsets[rows], lengths)
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return Ragged.from_lengths(self.values[starts + within], lengths)

    @staticmethod
    def concat(parts: list[Ragged], dtype) -> Ragged:
        if not parts:
            return Ragged(np.zeros(0, dtype=dtype), np.zeros(1, dtype=np.int64))
        return Ragged.from_lengths(np.concatenate([p.values for p in parts]).astype(dtype),
                                   np.concatenate([p.lengths() for p in parts]))

    def tolist(self) -> list[list]:
        return [self[i].tolist() for i in range(len(self))]


_EXAMPLE_COLUMNS = {"feature": np.int32, "kind_code": np.int8, "interval": np.int16, "rank": np.int32,
                    "doc": np.int64, "record_id": object, "label": object, "tokens": np.int32, "acts": np.float32,
                    "pos": np.int32, "act": np.float32, "ctx": np.int64, "ctx_pos": np.int32,
                    "window_start": np.int32}
_CONTEXT_COLUMNS = {"ctx": np.int64, "doc": np.int64, "record_id": object, "label": object, "start": np.int64,
                    "tokens": np.int32}
_RAGGED = ("tokens", "acts")


def _concat(parts: list[dict], columns: dict) -> dict:
    out = {}
    for name, dtype in columns.items():
        if name in _RAGGED:
            out[name] = Ragged.concat([p[name] for p in parts], dtype)
        else:
            out[name] = (np.concatenate([np.asarray(p[name]) for p in parts]) if parts
                         else np.zeros(0, dtype=dtype)).astype(dtype)
    return out


def _extract(sh: Shard, F: int, window: int, feat: np.ndarray, kind: np.ndarray, interval: np.ndarray,
             rank: np.ndarray, local: np.ndarray) -> tuple[dict, dict]:
    """The windows (tokens, per-token activations of the example's feature) of one shard's examples, and the
    contexts they come from, as columns."""
    ctx = np.searchsorted(sh.ctx_offsets, local, side="right") - 1
    valid_idx = np.flatnonzero(sh.valid)
    # real tokens of a context are contiguous: [first valid index >= ctx start, ctx end)
    c0 = sh.ctx_offsets[ctx]
    c1 = sh.ctx_offsets[ctx + 1]
    v0 = valid_idx[np.searchsorted(valid_idx, c0)]
    lo = np.maximum(v0, local - window)
    hi = np.minimum(c1, local + window + 1)
    lengths = hi - lo
    owner = np.repeat(np.arange(len(local)), lengths)
    tok = np.repeat(lo, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    ent_key = sh.tok * F + sh.feat
    want = tok * F + feat[owner]
    if len(ent_key):
        at = np.minimum(np.searchsorted(ent_key, want), len(ent_key) - 1)
        acts = np.where(ent_key[at] == want, sh.val[at], 0.0).astype(np.float32)
    else:
        acts = np.zeros(len(want), dtype=np.float32)
    acts_r = Ragged.from_lengths(acts, lengths)
    pos = local - lo
    examples = {
        "feature": feat, "kind_code": kind, "interval": interval, "rank": rank, "doc": sh.ctx_doc[ctx],
        "record_id": sh.ctx_record[ctx].astype(object), "label": sh.ctx_label[ctx].astype(object),
        "tokens": Ragged.from_lengths(sh.tokens[tok], lengths), "acts": acts_r, "pos": pos,
        "act": acts[acts_r.offsets[:-1] + pos], "ctx": global_token(sh.index, ctx), "ctx_pos": local - c0,
        "window_start": lo - c0,
    }
    uctx = np.unique(ctx)
    ctx_tokens = Ragged(sh.tokens, sh.ctx_offsets).take(uctx)
    contexts = {"ctx": global_token(sh.index, uctx), "doc": sh.ctx_doc[uctx],
                "record_id": sh.ctx_record[uctx].astype(object), "label": sh.ctx_label[uctx].astype(object),
                "start": sh.ctx_start[uctx], "tokens": ctx_tokens}
    return examples, contexts

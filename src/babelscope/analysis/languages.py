"""Language selectivity of SAE features and the per-feature bilingual measures (Study B, method.md 6).

From the feature store's token attributions (activating occurrences: activation >= 70% of the feature's
maximum, counted per token id and document label) this computes, per feature:
- the language distribution p_i(lang): the share of activating occurrences whose *document* carries that
  label (a digit in an Arabic document counts as Arabic, as in the study);
- the class: the language whose share is >= tau, else "mixed" (tau = 0.9 by default; tau must exceed 0.5 so at
  most one language can qualify); "insufficient" when the feature has fewer than `min_activations` activating
  occurrences (default 10: a feature split 50/50 between two languages looks monolingual with probability
  1, 0.5, 0.25 and 0.06 at 1, 2, 3 and 5 occurrences). Insufficient features keep their row but are left out
  of every share and mean of the summary, which counts them. The mixed share is also reported at 0.8, 0.9
  and 0.95;
- token entropy, semantic entropy, monosemanticity (`babelscope.analysis.entropy`);
- the mean span length: span_tokens / n_spans from the store, a span being a run of consecutive tokens on
  which the feature is active (selected by TopK, activation > 0); `mean_span_above` counts only tokens at
  >= 70% of the maximum.

Only features with at least one activating occurrence get a row; dead features are counted in the summary.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.analysis.entropy import feature_entropies, pair_link_rate, resolve_threshold
from babelscope.errors import UserError
from babelscope.settings import Settings, opt

MIXED = "mixed"
INSUFFICIENT = "insufficient"
MIN_ACTIVATIONS = 10


def parse_threshold(value: str) -> float | str:
    """`study`, `zmatch` or a cosine (the parser of --sim-threshold)."""
    if value in ("study", "zmatch"):
        return value
    try:
        return float(value)
    except ValueError:
        hint = " ('auto' was replaced by 'zmatch')" if value == "auto" else ""
        raise ValueError(f"expected a cosine, 'study' or 'zmatch', got {value!r}{hint}") from None


@dataclass(kw_only=True)
class LanguagesConfig(Settings):
    """`babelscope analyze languages`: the per-feature bilingual measures of one feature store."""

    features: str = opt(help="feature store directory")
    out: str = opt(help="output directory")
    tau: float = opt(0.9, "language threshold (the mixed share is also reported at 0.8/0.9/0.95)", gt=0.5, le=1.0)
    embeddings: str = opt("model", "token embeddings for semantic clusters: 'model' (the store's model), an HF "
                                   "model dir with the same tokenizer, or a .npy [vocab, d] matrix")
    sim_threshold: float | str = opt(0.1, "cosine similarity that links two tokens: a number (0.1, the study's), "
                                          "'study', or 'zmatch': 0.1 x sqrt(3072 / d), the cosine with the study's "
                                          "z-score at embedding width d", parse=parse_threshold,
                                     ge=-1.0, le=1.0)
    min_activations: int = opt(MIN_ACTIVATIONS, "activating occurrences a feature needs to be classified; below it "
                                                "the feature is 'insufficient' and left out of shares and means", ge=1)
REPORT_TAUS = (0.8, 0.9, 0.95)
MEASURES = "measures"  # measures.parquet + measures.csv
SUMMARY = "summary.json"


# ---- pure functions -------------------------------------------------------------------------------------------

def language_counts(feature: np.ndarray, label: Sequence[str], count: np.ndarray,
                    labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(features [F], counts [F, L]): activating occurrences per feature and document label, in `labels` order."""
    keep = np.asarray(count) > 0
    feature = np.asarray(feature, dtype=np.int64)[keep]
    label = np.asarray(label, dtype=object)[keep]
    count = np.asarray(count)[keep]
    unknown = sorted({str(x) for x in set(label.tolist()) - set(labels)})
    if unknown:
        raise UserError(f"attributions carry labels {unknown} that are not among the store's labels {list(labels)}")
    feats, inverse = np.unique(feature, return_inverse=True)
    out = np.zeros((len(feats), len(labels)), dtype=np.int64)
    for j, name in enumerate(labels):
        sel = label == name
        out[:, j] = np.bincount(inverse[sel], weights=count[sel], minlength=len(feats)).round()
    return feats, out


def language_shares(counts: np.ndarray) -> np.ndarray:
    """Row-normalised counts: p_i(lang) for each feature; a row with no occurrences stays zero."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def classify(shares: np.ndarray, labels: Sequence[str], tau: float = 0.9) -> np.ndarray:
    """Class per feature: the label whose share is >= tau, else "mixed"."""
    if not 0.5 < tau <= 1.0:
        raise UserError(f"tau must be in (0.5, 1] so that at most one language can reach it, got {tau}")
    shares = np.asarray(shares, dtype=np.float64)
    out = np.full(len(shares), MIXED, dtype=object)
    if len(shares) == 0:
        return out
    best = shares.argmax(axis=1)
    # A tiny tolerance so that a share of exactly tau (e.g. 9 of 10) is not lost to rounding.
    ok = shares[np.arange(len(shares)), best] >= tau - 1e-12
    out[ok] = np.asarray(labels, dtype=object)[best[ok]]
    return out


def classify_counts(counts: np.ndarray, labels: Sequence[str], tau: float = 0.9, *,
                    min_activations: int = MIN_ACTIVATIONS) -> np.ndarray:
    """Class per feature from its activating occurrences per label [F, L]: "insufficient" below
    `min_activations` occurrences, else `classify` of its shares."""
    counts = np.asarray(counts)
    out = classify(language_shares(counts), labels, tau)
    out[counts.sum(axis=1) < min_activations] = INSUFFICIENT
    return out


def mixed_share(shares: np.ndarray, labels: Sequence[str], tau: float) -> float:
    """The share of features classified mixed at threshold `tau` (NaN with no features)."""
    if len(shares) == 0:
        return float("nan")
    return float((classify(shares, labels, tau) == MIXED).mean())


def mean_span_length(n_spans: np.ndarray, span_tokens: np.ndarray) -> np.ndarray:
    """Mean length of a feature's runs of consecutive active tokens; NaN for a feature that never fired."""
    n_spans = np.asarray(n_spans, dtype=np.float64)
    span_tokens = np.asarray(span_tokens, dtype=np.float64)
    return np.divide(span_tokens, n_spans, out=np.full_like(span_tokens, np.nan), where=n_spans > 0)


def check_labels(records: Iterable[dict], field: str = "lang", *, min_labels: int = 2) -> list[str]:
    """The sorted document labels; a document without one, or fewer than `min_labels` labels, is a UserError."""
    seen: set[str] = set()
    for i, r in enumerate(records):
        value = r.get(field)
        if value is None or value == "":
            rid = f" (id {r['id']})" if "id" in r else ""
            raise UserError(f"document {i}{rid} has no '{field}' label; every document of the bilingual study "
                            f"needs one (e.g. \"{field}\": \"en\")")
        seen.add(str(value))
    if len(seen) < min_labels:
        raise UserError(f"the documents carry {len(seen)} '{field}' label(s) {sorted(seen)}; the bilingual study "
                        f"needs at least {min_labels} languages")
    return sorted(seen)


def _tau_key(tau: float) -> str:
    return f"mixed_share_t{round(tau * 100):03d}"


def feature_measures(attributions: dict[str, Any], features: dict[str, Any], embeddings: np.ndarray,
                     labels: Sequence[str], *, tau: float = 0.9, sim_threshold: float = 0.1,
                     min_activations: int = MIN_ACTIVATIONS) -> dict[str, np.ndarray]:
    """The per-feature table as columns, from attribution columns (feature, token_id, label, count) and the
    store's feature columns (feature, frequency, n_spans, span_tokens); `class` is "insufficient" for features
    with fewer than `min_activations` activating occurrences."""
    ent = feature_entropies(attributions["feature"], attributions["token_id"], attributions["count"], embeddings,
                            sim_threshold)
    feats, lang_counts = language_counts(attributions["feature"], attributions["label"], attributions["count"],
                                         labels)
    assert np.array_equal(feats, ent["feature"]), "feature sets of the two groupings differ"
    shares = language_shares(lang_counts)
    cols: dict[str, np.ndarray] = {"feature": feats}
    for j, name in enumerate(labels):
        cols[f"p_{name}"] = shares[:, j]
    cols["class"] = classify_counts(lang_counts, labels, tau, min_activations=min_activations)
    for key in ("n_act", "n_tokens", "n_clusters", "h_tok", "h_sem", "r_mono", "single_token"):
        cols[key] = ent[key]
    index = {int(f): i for i, f in enumerate(np.asarray(features["feature"]))}
    rows = np.array([index.get(int(f), -1) for f in feats], dtype=np.int64)
    if (rows < 0).any():
        raise UserError("the store's attributions name features that its feature table lacks")

    def take(name: str, fill: float = np.nan) -> np.ndarray:
        if name not in features:
            return np.full(len(feats), fill)
        return np.asarray(features[name], dtype=np.float64)[rows]

    cols["frequency"] = take("frequency")
    cols["n_spans"] = take("n_spans", 0).astype(np.int64)
    cols["span_tokens"] = take("span_tokens", 0).astype(np.int64)
    cols["mean_span"] = mean_span_length(cols["n_spans"], cols["span_tokens"])
    cols["mean_span_above"] = mean_span_length(take("n_spans_above", 0), take("span_tokens_above", 0))
    return cols


def summarize(cols: dict[str, np.ndarray], labels: Sequence[str], *, tau: float, n_features: int,
              taus: Sequence[float] = REPORT_TAUS, min_activations: int | None = None) -> dict[str, Any]:
    """One summary row: counts per class (insufficient included), then over the features with enough evidence
    (class not "insufficient"): mixed share at each tau, mean R_mono with and without single-token features,
    mean entropies and mean span length (unweighted means)."""
    n = len(cols["feature"])
    ok = np.asarray(cols["class"], dtype=object) != INSUFFICIENT
    shares = np.stack([cols[f"p_{name}"] for name in labels], axis=1)[ok] if n else np.zeros((0, len(labels)))
    single = np.asarray(cols["single_token"], dtype=bool)[ok]
    r = np.asarray(cols["r_mono"], dtype=np.float64)[ok]
    span = np.asarray(cols["mean_span"], dtype=np.float64)[ok]

    def mean(x: np.ndarray) -> float:
        return float(x.mean()) if x.size else float("nan")

    row: dict[str, Any] = {"n_features": int(n_features), "n_alive": n, "n_dead": int(n_features) - n, "tau": tau}
    if min_activations is not None:
        row["min_activations"] = int(min_activations)
    row["n_insufficient"] = int((~ok).sum())
    row["n_classified"] = int(ok.sum())
    for name in [*labels, MIXED]:
        row[f"n_{name}"] = int((cols["class"] == name).sum())
    row["mixed_share"] = mixed_share(shares, labels, tau)
    for t in taus:
        row[_tau_key(t)] = mixed_share(shares, labels, t)
    row["n_single_token"] = int(single.sum())
    row["mean_r_mono"] = mean(r)
    row["mean_r_mono_multi"] = mean(r[~single])
    row["mean_h_tok"] = mean(np.asarray(cols["h_tok"], dtype=np.float64)[ok])
    row["mean_h_sem"] = mean(np.asarray(cols["h_sem"], dtype=np.float64)[ok])
    row["mean_span"] = mean(span[~np.isnan(span)])
    return row


# ---- I/O ------------------------------------------------------------------------------------------------------

def read_store(features_dir: str | Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(meta, feature columns, attribution columns) of a feature store, checking that documents had labels."""
    from babelscope.analysis.store import FeatureStore

    d = Path(features_dir)
    for name in ("features.parquet", "attributions.parquet"):
        if not (d / name).exists():
            raise UserError(f"not a feature store (no {name}); build one with `babelscope analyze features`", path=d)
    store = FeatureStore(d)
    meta = dict(store.meta)
    feats, attr = store.features(), store.attributions()
    field = meta.get("label_field", "lang")
    raw = list(meta.get("labels") or [])
    labels = [str(x) for x in raw if x not in (None, "")]
    if not labels or len(labels) != len(raw) or any(x in (None, "") for x in attr["label"]):
        raise UserError(f"documents without a '{field}' label in the store (every document needs one, e.g. "
                        f"\"{field}\": \"en\"); rebuild it from labelled data", path=d)
    meta["labels"] = labels
    return meta, feats, attr


def load_embeddings(spec: str | Path, *, model_dir: str | Path | None = None,
                    tokenizer_dir: str | Path | None = None) -> tuple[np.ndarray, str]:
    """An input-embedding matrix [vocab, d] and a description: `model` (the store's model), an HF model dir
    (its input embeddings, its tokenizer checked against ours), or a `.npy` file."""
    spec = str(spec)
    if spec == "model":
        if model_dir is None:
            raise UserError("--embeddings model needs the store's model directory (meta.json 'model')")
        spec = str(model_dir)
    path = Path(spec)
    if path.suffix == ".npy":
        from babelscope.inputs import load_npy

        emb = load_npy(path)
        if emb.ndim != 2:
            raise UserError(f"expected a [vocab, d] matrix, got shape {tuple(emb.shape)}", path=path)
        return emb.astype(np.float32), str(path)
    from babelscope.models import load_model

    model, tok = load_model(path, device="cpu")
    if tokenizer_dir is not None and Path(tokenizer_dir).resolve() != path.resolve():
        from babelscope.tokenizer import load_tokenizer

        ours = load_tokenizer(tokenizer_dir)
        if ours.get_vocab() != tok.get_vocab():
            raise UserError("its tokenizer differs from the feature store's, so token ids would index the wrong "
                            "embedding rows; pass a model trained with the same tokenizer", path=path)
    return model.get_input_embeddings().weight.detach().float().cpu().numpy(), str(path)


def measures_from_store(features_dir: str | Path, *, tau: float = 0.9, embeddings: str | Path = "model",
                        embedding_matrix: np.ndarray | None = None, sim_threshold: float | str = 0.1,
                        min_activations: int = MIN_ACTIVATIONS) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(per-feature columns, summary row) for one feature store. `sim_threshold` is a cosine, `study` (0.1) or
    `zmatch` (0.1 x sqrt(3072 / d), see entropy.py); the summary names the rule and the value. Features with
    fewer than `min_activations` activating occurrences are "insufficient" and left out of shares and means."""
    meta, feats, attr = read_store(features_dir)
    labels = meta["labels"]
    if embedding_matrix is None:
        embedding_matrix, source = load_embeddings(embeddings, model_dir=meta.get("model"),
                                                   tokenizer_dir=meta.get("tokenizer") or meta.get("model"))
    else:
        source = str(embeddings)
    if attr["token_id"].size and int(attr["token_id"].max()) >= len(embedding_matrix):
        raise UserError(f"token id {int(attr['token_id'].max())} is outside the embedding matrix "
                        f"({len(embedding_matrix)} rows): the embeddings belong to another tokenizer")
    threshold, rule, rule_note = resolve_threshold(sim_threshold, int(embedding_matrix.shape[1]))
    cols = feature_measures(attr, feats, embedding_matrix, labels, tau=tau, sim_threshold=threshold,
                            min_activations=min_activations)
    n_features = int(meta.get("n_features") or len(feats["feature"]))
    summary = {
        "model": meta.get("model"), "sae": meta.get("sae"), "hook": meta.get("hook"),
        "layer": _layer_of(meta.get("hook")), "tokens": meta.get("tokens"), "labels": labels,
        **summarize(cols, labels, tau=tau, n_features=n_features, min_activations=min_activations),
        "sim_threshold": threshold, "sim_threshold_rule": rule, "sim_threshold_note": rule_note,
        "embedding_dim": int(embedding_matrix.shape[1]),
        "pair_link_rate": pair_link_rate(embedding_matrix, threshold), "embeddings": source,
    }
    return cols, summary


def _layer_of(hook: str | None) -> int | None:
    """The layer of a hook name in either spelling (None for a name that is not a hook point)."""
    from babelscope.models.hooks import HookPoint

    try:
        return HookPoint.parse(hook or "").layer
    except UserError:
        return None


def write_measures(out: str | Path, cols: dict[str, np.ndarray], summary: dict[str, Any]) -> Path:
    """Write measures.parquet, measures.csv, summary.csv and summary.json (last, the cell's completion marker) atomically."""
    import pyarrow as pa

    from babelscope.files import write_json_atomic, write_table_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = pa.table({k: pa.array(np.asarray(v).tolist() if np.asarray(v).dtype == object else v)
                      for k, v in cols.items()})
    write_table_atomic(out / MEASURES, table)
    flat = {k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in summary.items()}
    write_table_atomic(out / "summary", pa.Table.from_pylist([flat]), formats=("csv",))
    write_json_atomic(out / SUMMARY, summary)
    return out


def analyze_languages(features_dir: str | Path, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """`babelscope analyze languages`: measures for one store, written to `out`; returns the summary row."""
    from babelscope.files import check_output

    check_output(out, directory=True)
    cols, summary = measures_from_store(features_dir, **kwargs)
    summary["features_dir"] = str(features_dir)
    write_measures(out, cols, summary)
    return summary

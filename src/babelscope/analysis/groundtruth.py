"""storyworld as the referee: how well each SAE feature, by its activation, detects what the generator planted.

storyworld records carry character `spans` of every name (with its origin), quote and dialogue tag (with its
order). The feature pass maps them to tokens (the fast tokenizer's offsets) and labels every token of such a
record with the CONCEPTS below (a bit each). For every feature f and concept c, over all labelled tokens
(activation = score, an inactive token scores 0):

    AUROC(f, c)     = P(a positive token outscores a negative one), ties counting one half (Mann-Whitney U / PQ);
                      the many inactive tokens are one exact tie at 0
    precision(f, c) = share of the tokens at >= 70% of the feature's max activation that are positives of c
    recall(f, c)    = share of c's positives at >= 70% of the feature's max

Two definitions of "feature f detects c" (DEFINITIONS), both needing >= 10 tokens at the threshold (the
minimum sample the language classification uses; below it a precision is noise):
    selective   precision >= 0.8: its strong activations, the ones dashboards and Study B's analysis read, are
                on the concept, at 16x the base rate of English names in the demo's store; it may cover only
                part of the concept (one name, say: SAEs split concepts into many narrow features)
    broad       AUROC >= 0.9 and precision >= 0.5: it also ranks a random positive above a random negative nine
                times in ten, i.e. it fires on most of the concept
Two controls say how many detectors carry no learned structure (TRACKS): `shuffled`, the same features with
labels rolled within each context (same counts and runs of positives, no link to the text), and `random`,
random directions read in the SAE's input space and thresholded to fire as often as its features
(RandomDirections, encoded in the same model pass). The second is the one that matters: name tokens stand out
in the activations, so random directions already "detect" names at the top of their range.

Streaming: pass A keeps every active entry on a positive token (features x positives, a small share of the
corpus); pass B compares each active entry on a negative token with them by binary search, so the U statistic
is exact without holding the negatives. The random directions' entries ride in the same shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CONCEPTS = {
    "name_english": "tokens overlapping a name of English origin",
    "name_arabic": "tokens overlapping a name of Arabic origin",
    "name": "tokens overlapping any name",
    "quote_end_tag_after": "the token holding a quote's closing quotation mark when its tag follows (where the "
                           "model anticipates the English-order tag)",
    "quote_end_tag_before": "the token holding a quote's closing quotation mark when its tag came before",
    "tag_after": "tokens overlapping a dialogue tag (speech verb and speaker) that follows its quote",
    "tag_before": "tokens overlapping a dialogue tag that precedes its quote",
}
CONCEPT_BITS = {name: 1 << i for i, name in enumerate(CONCEPTS)}
DEFINITIONS = {
    "selective": {"auroc_min": 0.0, "precision_min": 0.8, "min_above": 10},
    "broad": {"auroc_min": 0.9, "precision_min": 0.5, "min_above": 10},
}
MIN_POSITIVES = 20  # a concept with fewer positive tokens in the store is not scored


# ---- spans to tokens ---------------------------------------------------------------------------------------------

def _overlapping(offsets: np.ndarray, start: int, end: int) -> np.ndarray:
    return (offsets[:, 0] < end) & (offsets[:, 1] > start)


def token_concepts(offsets: np.ndarray | list, spans: dict[str, list]) -> np.ndarray:
    """uint8 concept bits per token from the tokens' character offsets [n, 2] and a record's `spans`."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    bits = np.zeros(len(offsets), dtype=np.uint8)
    for start, end, origin in spans.get("names", []):
        hit = _overlapping(offsets, start, end)
        bits[hit] |= CONCEPT_BITS["name"]
        if f"name_{origin}" in CONCEPT_BITS:
            bits[hit] |= CONCEPT_BITS[f"name_{origin}"]
    for (_, qe), (_, _, order) in zip(spans.get("quotes", []), spans.get("tags", []), strict=False):
        # the closing mark is the character at qe; the token holding it
        holder = np.flatnonzero((offsets[:, 0] <= qe) & (offsets[:, 1] > qe))[:1]
        bits[holder] |= CONCEPT_BITS[f"quote_end_tag_{order}"]
    for start, end, order in spans.get("tags", []):
        bits[_overlapping(offsets, start, end)] |= CONCEPT_BITS[f"tag_{order}"]
    return bits


def doc_concepts(tokenizer: Any, records: list[dict]) -> list[np.ndarray | None]:
    """Per record, the concept bits of each of its tokens, or None when the record has no `spans` or the
    tokenizer gives no offsets (a slow one). The tokens are those of `tokenizer.encode_batch`: the same call."""
    out: list[np.ndarray | None] = [None] * len(records)
    which = [i for i, r in enumerate(records) if isinstance(r.get("spans"), dict)]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not which or backend is None:
        return out
    encoded = backend.encode_batch([records[i]["text"] for i in which], add_special_tokens=False)
    for i, enc in zip(which, encoded, strict=True):
        out[i] = token_concepts(np.asarray(enc.offsets, dtype=np.int64), records[i]["spans"])
    return out


def rolled(bits: np.ndarray, labelled: np.ndarray, ctx_offsets: np.ndarray, ctx_doc: np.ndarray) -> np.ndarray:
    """The control labels: each context's labelled tokens' bits rolled by an offset drawn from its document."""
    out = bits.copy()
    for c in range(len(ctx_offsets) - 1):
        idx = ctx_offsets[c] + np.flatnonzero(labelled[ctx_offsets[c]:ctx_offsets[c + 1]])
        if len(idx) > 1:
            shift = 1 + int(np.random.default_rng([int(ctx_doc[c]), 7]).integers(len(idx) - 1))
            out[idx] = np.roll(bits[idx], shift)
    return out


# ---- the statistics (pure) ---------------------------------------------------------------------------------------

def value_keys(feature: np.ndarray, value: np.ndarray) -> np.ndarray:
    """uint64 keys ordered like (feature, value) for non-negative float32 values (their bits keep the order)."""
    bits = np.ascontiguousarray(value, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return (np.asarray(feature, dtype=np.uint64) << np.uint64(32)) | bits


def pair_wins(pos_keys: np.ndarray, neg_keys: np.ndarray, neg_feature: np.ndarray, n_features: int) -> np.ndarray:
    """Per feature, the sum over active negatives of (#active positives above it + half those equal to it);
    `pos_keys` are the sorted `value_keys` of the active positives, `neg_keys` those of the negatives."""
    if not len(neg_keys) or not len(pos_keys):
        return np.zeros(n_features)
    lo = np.searchsorted(pos_keys, neg_keys, side="left")
    hi = np.searchsorted(pos_keys, neg_keys, side="right")
    end = np.searchsorted(pos_keys, (np.asarray(neg_feature, dtype=np.uint64) + np.uint64(1)) << np.uint64(32))
    wins = (end - hi) + 0.5 * (hi - lo)
    return np.bincount(neg_feature, weights=wins, minlength=n_features)


def auroc_from_counts(active_wins: np.ndarray, pos_active: np.ndarray, neg_active: np.ndarray, n_pos: int,
                      n_neg: int) -> np.ndarray:
    """AUROC per feature from the U statistic's parts: wins among active pairs, and the active positives and
    negatives; an active positive beats every inactive negative, two inactive tokens tie."""
    pos0, neg0 = n_pos - pos_active, n_neg - neg_active
    u = active_wins + pos_active * neg0 + 0.5 * pos0 * neg0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos * n_neg > 0, u / max(n_pos * n_neg, 1), np.nan)


def auroc_sparse(feature: np.ndarray, token: np.ndarray, value: np.ndarray, positive: np.ndarray,
                 n_features: int) -> np.ndarray:
    """AUROC of every feature as a detector of `positive` [n_tokens] bool, from sparse active entries
    (feature, token, value > 0); every token absent from the entries scores 0."""
    positive = np.asarray(positive, dtype=bool)
    is_pos = positive[token]
    pos_keys = np.sort(value_keys(feature[is_pos], value[is_pos]))
    wins = pair_wins(pos_keys, value_keys(feature[~is_pos], value[~is_pos]), feature[~is_pos], n_features)
    pos_active = np.bincount(feature[is_pos], minlength=n_features)
    neg_active = np.bincount(feature[~is_pos], minlength=n_features)
    return auroc_from_counts(wins, pos_active, neg_active, int(positive.sum()), int((~positive).sum()))


def precision_recall(above: np.ndarray, positive_above: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) per feature from the tokens at threshold and those of them that are positives."""
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(above > 0, positive_above / np.maximum(above, 1), np.nan)
        recall = np.where(n_pos > 0, positive_above / max(n_pos, 1), np.nan)
    return precision, recall


def threshold_counts(feature: np.ndarray, token: np.ndarray, value: np.ndarray, positive: np.ndarray,
                     vmax: np.ndarray, frac: float, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens at >= frac x max, positives among them) per feature, from sparse entries."""
    from babelscope.analysis.aggregate import is_above

    above = is_above(value, vmax[feature], frac)
    hit = above & np.asarray(positive, dtype=bool)[token]
    return np.bincount(feature[above], minlength=n_features), np.bincount(feature[hit], minlength=n_features)


# ---- the random-direction control --------------------------------------------------------------------------------

CONTROL_SEED = 20250611  # numpy's generator: a stream no SAE init (torch.randn from a seed) ever draws


@dataclass
class RandomDirections:
    """The SAE with its learned directions replaced by random ones: unit rows drawn from their own stream, read
    in the SAE's input space (normalised, b_dec subtracted), each thresholded to fire as often as the SAE's
    features do on average (calibrated on the first batch of labelled tokens)."""

    directions: np.ndarray  # [n, d_in] float32
    thresholds: np.ndarray  # [n] float32

    @classmethod
    def calibrate(cls, sae: Any, x: Any, rate: float, n: int, seed: int = CONTROL_SEED) -> RandomDirections:
        """`n` directions whose thresholds let each fire on a share `rate` of the raw activations `x`."""
        d = np.random.default_rng(seed).standard_normal((n, x.shape[1])).astype(np.float32)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        scores = _centred(sae, x) @ d.T
        q = min(max(1.0 - rate, 0.0), 1.0)
        return cls(d, np.quantile(scores, q, axis=0).astype(np.float32))

    def encode(self, sae: Any, x: Any, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, direction, value > 0) entries of ReLU(score - threshold) for raw activations x."""
        rows, dirs, vals = [], [], []
        for start in range(0, x.shape[0], chunk):
            z = _centred(sae, x[start:start + chunk]) @ self.directions.T - self.thresholds
            r, c = np.nonzero(z > 0)
            rows.append(r + start)
            dirs.append(c.astype(np.int32))
            vals.append(z[r, c].astype(np.float32))
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
        return np.concatenate(rows).astype(np.int64), np.concatenate(dirs), np.concatenate(vals)

    def save(self, path: Any) -> None:
        from babelscope.files import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, directions=self.directions, thresholds=self.thresholds)

    @classmethod
    def load(cls, path: Any) -> RandomDirections:
        with np.load(path) as z:
            return cls(z["directions"], z["thresholds"])


def _centred(sae: Any, x: Any) -> np.ndarray:
    """Raw activations in the SAE's encoder input space, u - b_dec (x itself for a stand-in without them)."""
    import torch

    with torch.no_grad():
        x = torch.as_tensor(x)
        if callable(getattr(sae, "normalize", None)) and isinstance(getattr(sae, "b_dec", None), torch.Tensor):
            x = sae.normalize(x.to(sae.b_dec.device)) - sae.b_dec
        return x.float().cpu().numpy()


# ---- the streaming pass ------------------------------------------------------------------------------------------

TRACKS = {"none": "the SAE's features, planted labels",
          "shuffled": "the SAE's features, labels rolled within each context (same positives, no link to text)",
          "random": "random directions in the SAE's input space, as sparse as its features, planted labels"}


class _Track:
    """The detector statistics of one (scores, labels) pair over every concept."""

    def __init__(self, n_features: int):
        C = len(CONCEPTS)
        self.F = n_features
        self.n_pos = np.zeros(C, dtype=np.int64)
        self.active = np.zeros(n_features, dtype=np.int64)  # active entries on labelled tokens
        self.vmax = np.zeros(n_features, dtype=np.float32)  # over every token, labelled or not
        self.pos_active = np.zeros((C, n_features), dtype=np.int64)
        self.wins = np.zeros((C, n_features))
        self.above = np.zeros(n_features, dtype=np.int64)
        self.pos_above = np.zeros((C, n_features), dtype=np.int64)
        self._pos: list[list[np.ndarray]] = [[] for _ in CONCEPTS]
        self._keys: list[np.ndarray] | None = None

    def count(self, feat: np.ndarray, tok: np.ndarray, val: np.ndarray, bits: np.ndarray,
              labelled: np.ndarray) -> None:
        np.maximum.at(self.vmax, feat, val)
        lab = labelled[tok]
        feat, tok, val = feat[lab], tok[lab], val[lab]
        self.active += np.bincount(feat, minlength=self.F)
        for c, bit in enumerate(CONCEPT_BITS.values()):
            positive = (bits & bit).astype(bool) & labelled
            self.n_pos[c] += int(positive.sum())
            hit = positive[tok]
            self.pos_active[c] += np.bincount(feat[hit], minlength=self.F)
            self._pos[c].append(value_keys(feat[hit], val[hit]))

    def compare(self, feat: np.ndarray, tok: np.ndarray, val: np.ndarray, bits: np.ndarray, labelled: np.ndarray,
                vmax: np.ndarray, frac: float) -> None:
        from babelscope.analysis.aggregate import is_above

        if self._keys is None:
            self._keys = [np.sort(np.concatenate(p)) if p else np.zeros(0, np.uint64) for p in self._pos]
            self._pos = []
        lab = labelled[tok]
        feat, tok, val = feat[lab], tok[lab], val[lab]
        keys = value_keys(feat, val)
        above = is_above(val, vmax[feat], frac)
        self.above += np.bincount(feat[above], minlength=self.F)
        for c, bit in enumerate(CONCEPT_BITS.values()):
            pos = (bits[tok] & bit).astype(bool)
            self.wins[c] += pair_wins(self._keys[c], keys[~pos], feat[~pos], self.F)
            self.pos_above[c] += np.bincount(feat[above & pos], minlength=self.F)

    def columns(self, n_labelled: int, control: str) -> dict[str, np.ndarray]:
        cols: dict[str, list] = {k: [] for k in ("feature", "concept", "control", "n_pos", "auroc", "precision",
                                                 "recall", "n_above", "pos_above")}
        for c, concept in enumerate(CONCEPTS):
            n_pos = int(self.n_pos[c])
            auroc = auroc_from_counts(self.wins[c], self.pos_active[c], self.active - self.pos_active[c], n_pos,
                                      n_labelled - n_pos)
            precision, recall = precision_recall(self.above, self.pos_above[c], n_pos)
            cols["feature"].append(np.arange(self.F, dtype=np.int32))
            cols["concept"].append(np.full(self.F, concept, dtype=object))
            cols["control"].append(np.full(self.F, control, dtype=object))
            cols["n_pos"].append(np.full(self.F, n_pos, dtype=np.int64))
            cols["auroc"].append(auroc)
            cols["precision"].append(precision)
            cols["recall"].append(recall)
            cols["n_above"].append(self.above.copy())
            cols["pos_above"].append(self.pos_above[c].copy())
        return {k: np.concatenate(v) for k, v in cols.items()}


class DetectorPass:
    """Accumulates the detector statistics over the feature store's shards, for the SAE's features and the two
    controls (TRACKS): `count` in pass A (positives, and the random directions' max), `compare` in pass B
    (negatives against the positives, and the counts at threshold), then `table()`."""

    def __init__(self, n_features: int):
        self.F = n_features
        self.tracks = {name: _Track(n_features) for name in TRACKS}
        self.n_labelled = 0

    def _inputs(self, sh: Any) -> dict[str, tuple]:
        """Per track: its entries (feature, token, value) and its labels (bits, labelled) in this shard."""
        sae = (sh.feat, sh.tok, sh.val)
        out = {"none": (*sae, sh.concepts, sh.labelled),
               "shuffled": (*sae, rolled(sh.concepts, sh.labelled, sh.ctx_offsets, sh.ctx_doc), sh.labelled)}
        if sh.ctl_feat is not None:
            out["random"] = (sh.ctl_feat, sh.ctl_tok, sh.ctl_val, sh.concepts, sh.labelled)
        return out

    def count(self, sh: Any) -> None:
        """Pass A: labelled tokens, positives per concept, the active entries on positives."""
        if sh.concepts is None or not sh.labelled.any():
            return
        self.n_labelled += int(sh.labelled.sum())
        for name, args in self._inputs(sh).items():
            self.tracks[name].count(*args)

    def compare(self, sh: Any, vmax: np.ndarray, frac: float) -> None:
        """Pass B: wins of the positives over each active negative, and the counts at threshold (`vmax`: the
        SAE features' maxima over the whole store; the random directions keep their own)."""
        if sh.concepts is None or not sh.labelled.any():
            return
        for name, args in self._inputs(sh).items():
            self.tracks[name].compare(*args, vmax if name != "random" else self.tracks[name].vmax, frac)

    def table(self) -> dict[str, np.ndarray] | None:
        """Columns feature, concept, control (none | shuffled | random), n_pos, auroc, precision, recall,
        n_above, pos_above; None when no token was labelled (no record had spans)."""
        if self.n_labelled == 0:
            return None
        parts = [t.columns(self.n_labelled, name) for name, t in self.tracks.items()
                 if name != "random" or t.active.any() or t.vmax.any()]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def meta(self) -> dict[str, Any]:
        """What meta.json records about the detector table."""
        return {"concepts": CONCEPTS, "score": "the feature's activation (inactive = 0, ties count one half)",
                "threshold": "precision and recall at >= threshold_frac x the feature's max activation",
                "labelled_tokens": self.n_labelled,
                "positives": {c: int(n) for c, n in zip(CONCEPTS, self.tracks["none"].n_pos, strict=True)},
                "controls": TRACKS, "definitions": DEFINITIONS, "min_positives": MIN_POSITIVES}


# ---- reading the table: detector counts and the agreement of a selection ---------------------------------------

def detectors(table: dict[str, np.ndarray], concept: str, definition: str = "selective", *, control: str = "none",
              min_positives: int = MIN_POSITIVES, **cuts: float) -> np.ndarray:
    """The features (or, for a control of TRACKS, its directions) that detect `concept` under a DEFINITIONS entry
    (`cuts` override its auroc_min, precision_min, min_above), sorted; none when the concept has fewer than
    `min_positives` positive tokens."""
    cut = {**DEFINITIONS[definition], **cuts}
    rows = (np.asarray(table["concept"]) == concept) & (np.asarray(table["control"]) == control)
    ok = rows & (np.asarray(table["n_pos"]) >= min_positives) & (np.asarray(table["n_above"]) >= cut["min_above"])
    ok &= np.nan_to_num(np.asarray(table["auroc"], dtype=float), nan=0.0) >= cut["auroc_min"]
    ok &= np.nan_to_num(np.asarray(table["precision"], dtype=float), nan=0.0) >= cut["precision_min"]
    return np.sort(np.asarray(table["feature"])[ok].astype(np.int64))


def detector_counts(table: dict[str, np.ndarray], n_features: int, *, min_positives: int = MIN_POSITIVES,
                    listed: int = 50) -> dict[str, Any]:
    """Per concept: its positive tokens; per definition, how many features detect it, the same count for each
    control (shuffled labels, random directions), and the first `listed` detectors; and the best feature by
    AUROC and by precision (among those with enough tokens at threshold)."""
    out: dict[str, Any] = {}
    concept_col, control_col = np.asarray(table["concept"]), np.asarray(table["control"])
    controls = [c for c in TRACKS if c != "none" and (control_col == c).any()]
    for concept in CONCEPTS:
        rows = np.flatnonzero((concept_col == concept) & (control_col == "none"))
        if not len(rows):
            continue
        entry: dict[str, Any] = {"n_pos": int(table["n_pos"][rows[0]])}
        for name in DEFINITIONS:
            found = detectors(table, concept, name, min_positives=min_positives)
            entry[name] = {"detectors": len(found), "features": found[:listed].tolist(),
                           **{c: len(detectors(table, concept, name, control=c, min_positives=min_positives))
                              for c in controls}}
        enough = rows[np.asarray(table["n_above"])[rows] >= DEFINITIONS["selective"]["min_above"]]
        for key, col in (("best_auroc", "auroc"), ("best_precision", "precision")):
            pool = rows if col == "auroc" or not len(enough) else enough
            best = pool[int(np.argmax(np.nan_to_num(np.asarray(table[col], dtype=float)[pool], nan=-1.0)))]
            entry[key] = {"feature": int(table["feature"][best]), "auroc": _num(table["auroc"][best]),
                          "precision": _num(table["precision"][best]), "recall": _num(table["recall"][best]),
                          "n_above": int(table["n_above"][best])}
        out[concept] = entry
    return {"n_features": n_features, "definitions": DEFINITIONS, "min_positives": min_positives,
            "controls": {c: TRACKS[c] for c in controls}, "concepts": out}


def agreement(selected: Any, detector_ids: Any, n_features: int) -> dict[str, Any]:
    """How well a feature selection (e.g. TSEA's English-biased features) agrees with the ground-truth
    detectors: precision, recall, the precision a random selection of that size expects, and the
    hypergeometric p-value of an overlap at least this large (None where undefined: JSON has no NaN)."""
    from scipy.stats import hypergeom

    sel = {int(f) for f in selected}
    det = {int(f) for f in detector_ids}
    both = len(sel & det)
    p = float(hypergeom.sf(both - 1, n_features, len(det), len(sel))) if sel and det else None
    return {"selected": len(sel), "detectors": len(det), "overlap": both,
            "precision": both / len(sel) if sel else None, "recall": both / len(det) if det else None,
            "chance_precision": len(det) / n_features if n_features else None, "p_value": p}


def _num(x: Any) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


def store_detectors(store_dir: Any) -> dict[str, Any] | None:
    """`detector_counts` of a feature store (None when its records carried no spans)."""
    from babelscope.analysis.store import FeatureStore

    store = FeatureStore(store_dir)
    table = store.detectors()
    return None if table is None else detector_counts(table, store.n_features)


def selection_agreement(store_dir: Any, selected: Any, concept: str = "name_english",
                        definition: str = "selective") -> dict[str, Any] | None:
    """`agreement` of a feature selection (e.g. TSEA's English-biased ids) with a store's detectors of
    `concept`; None without a detector table."""
    from babelscope.analysis.store import FeatureStore

    store = FeatureStore(store_dir)
    table = store.detectors()
    if table is None:
        return None
    real = agreement(selected, detectors(table, concept, definition), store.n_features)
    return {"concept": concept, "definition": definition, **real}

"""Token entropy, semantic entropy and monosemanticity of SAE features (Study B, section 3.4; method.md 6).

For feature i with activating occurrences (activation >= 70% of its maximum) caused by tokens t:
    p_i(t) = count(t) / sum count,   H_tok(i) = -sum_t p_i(t) ln p_i(t)
    H_sem(i) = -sum_c p_i(c) ln p_i(c)   over clusters c of the distinct activating tokens
    R_mono(i) = 1 - H_sem(i) / H_tok(i),   and R_mono = 0 when one token alone activates i (H_tok = 0).
Entropies are in nats; R_mono is a ratio, so the base cancels. Because a clustering only merges tokens,
H_sem <= H_tok and R_mono lies in [0, 1].

Clustering rule (the study says only "tokens with cosine similarity above 0.1 are grouped"; that relation is
not transitive, so a rule must be chosen): **connected components of the similarity graph** (single linkage),
an edge joining two distinct activating tokens whose cosine similarity is strictly above the threshold.
Consequences, stated so a reader can weigh the numbers:
- chaining: a-b and b-c similar puts a and c in one cluster even when a-c is not, so H_sem is the lowest
  (and R_mono the highest) of the natural rules; complete linkage or a greedy leader rule would give more
  clusters;
- the result is independent of token order and deterministic, but adding one token to a feature can merge
  two clusters (a bridge), so H_sem is not monotone in the token set;
- the threshold's meaning depends on the embedding dimension: two random directions in R^d have cosine
  similarity of standard deviation ~1/sqrt(d), so 0.1 is ~5.5 sigma in the study's 3072-d embeddings but
  ~0.6 sigma in a 32-d toy model, where most token pairs link and almost every feature becomes one
  cluster (R_mono near 1 for any multi-token feature);
- a token whose embedding is the zero vector (e.g. a padded row) links to nothing and is its own cluster.

Threshold rules (`resolve_threshold`), one of:
- `study`, or a number: the cosine as given (the study's 0.1);
- `zmatch`: the cosine with the same z-score as 0.1 at the study's width, 0.1 x sqrt(3072 / d), so that a
  random pair links about as rarely as in the study (a ~5.5 sigma event, ~1e-8 for Gaussian-like cosines).
  At d < 31 it exceeds 1 and no pair links: such embeddings cannot separate meaning at the study's confidence.
`pair_link_rate` (the share of random token pairs that link) is reported beside either rule as a diagnostic;
it is not a rule.
"""

from __future__ import annotations

import math

import numpy as np

from babelscope.errors import UserError


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of the distribution proportional to non-negative `counts`; 0 for one outcome."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    total = c.sum()
    if total <= 0:
        return 0.0
    p = c / total
    return float(max(0.0, -(p * np.log(p)).sum()))


def token_entropy(counts: np.ndarray) -> float:
    """H_tok: entropy of the token attribution p_i(t), from activating-occurrence counts per distinct token."""
    return entropy(counts)


def cosine_matrix(embeddings: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity [m, m] of the rows; rows of zero norm get similarity 0 to everything."""
    e = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    unit = np.divide(e, norms, out=np.zeros_like(e), where=norms > 0)
    return unit @ unit.T


def cluster_tokens(embeddings: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Cluster id per row: connected components of the graph linking rows with cosine > `threshold`.

    Ids are 0, 1, ... in order of each cluster's first row, so the output is deterministic.
    """
    m = len(embeddings)
    labels = np.full(m, -1, dtype=np.int64)
    if m == 0:
        return labels
    adjacent = cosine_matrix(embeddings) > threshold
    np.fill_diagonal(adjacent, False)
    next_id = 0
    for start in range(m):
        if labels[start] >= 0:
            continue
        labels[start] = next_id
        frontier = np.array([start])
        while frontier.size:  # breadth-first over the component, one matrix slice per level
            reach = adjacent[frontier].any(axis=0) & (labels < 0)
            frontier = np.flatnonzero(reach)
            labels[frontier] = next_id
        next_id += 1
    return labels


def semantic_entropy(counts: np.ndarray, clusters: np.ndarray) -> float:
    """H_sem: entropy over clusters, each weighted by the activating occurrences of its tokens."""
    counts = np.asarray(counts, dtype=np.float64)
    clusters = np.asarray(clusters)
    if counts.size == 0:
        return 0.0
    _, inverse = np.unique(clusters, return_inverse=True)
    return entropy(np.bincount(inverse, weights=counts))


def monosemanticity(h_tok: float, h_sem: float, n_tokens: int) -> float:
    """R_mono = 1 - H_sem / H_tok; 0 for a single-token feature (H_tok = 0), as method.md defines it."""
    if n_tokens <= 1 or h_tok <= 0:
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - h_sem / h_tok)))


def pair_link_rate(embeddings: np.ndarray, threshold: float, *, n_pairs: int = 20000, seed: int = 0) -> float:
    """Share of random pairs of distinct rows whose cosine similarity is above `threshold`."""
    sims = _random_pair_sims(embeddings, n_pairs, seed)
    return float((sims > threshold).mean()) if sims.size else 0.0


STUDY_THRESHOLD = 0.1
STUDY_WIDTH = 3072  # the width of the embeddings the study clustered (its largest model)
RULES = ("study", "zmatch")


def zmatch_threshold(d: int) -> float:
    """0.1 x sqrt(3072 / d): the cosine with the z-score 0.1 has at the study's width (cosines of random
    directions in R^d have standard deviation ~1/sqrt(d))."""
    return STUDY_THRESHOLD * math.sqrt(STUDY_WIDTH / d)


def resolve_threshold(rule: float | str, d: int) -> tuple[float, str, str]:
    """(cosine threshold, rule name, how it was set) for a rule: a number, `study` (0.1) or `zmatch`."""
    if isinstance(rule, str) and rule not in RULES:
        try:
            rule = float(rule)
        except ValueError:
            hint = " ('auto' was replaced by 'zmatch')" if rule == "auto" else ""
            raise UserError(f"unknown similarity threshold rule '{rule}'; give a cosine, study or zmatch"
                            f"{hint}") from None
    if rule == "zmatch":
        value = zmatch_threshold(d)
        return value, "zmatch", (f"zmatch: 0.1 x sqrt({STUDY_WIDTH} / {d}) = {value:.4g}, the cosine with the "
                                 f"z-score of the study's 0.1 at width {STUDY_WIDTH}")
    value = STUDY_THRESHOLD if rule == "study" else float(rule)
    name = "study" if value == STUDY_THRESHOLD else "fixed"
    return value, name, f"{name}: cosine > {value:g}" + (" as in the study" if name == "study" else "")


def _random_pair_sims(embeddings: np.ndarray, n_pairs: int, seed: int) -> np.ndarray:
    e = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(e, axis=1)
    e = e[norms > 0] / norms[norms > 0, None]
    if len(e) < 2:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(e), n_pairs)
    b = (a + rng.integers(1, len(e), n_pairs)) % len(e)  # never the same row
    return (e[a] * e[b]).sum(axis=1)


def feature_entropies(feature: np.ndarray, token_id: np.ndarray, count: np.ndarray, embeddings: np.ndarray,
                      threshold: float = 0.1) -> dict[str, np.ndarray]:
    """Per-feature H_tok, H_sem, R_mono from attribution rows (feature, token_id, count; repeats are summed).

    Returns columns sorted by feature: feature, n_act, n_tokens, n_clusters, h_tok, h_sem, r_mono,
    single_token. `embeddings` is [vocab, d], indexed by token id.
    """
    feature = np.asarray(feature, dtype=np.int64)
    token_id = np.asarray(token_id, dtype=np.int64)
    count = np.asarray(count, dtype=np.float64)
    keep = count > 0
    feature, token_id, count = feature[keep], token_id[keep], count[keep]
    # Sum counts per (feature, token): rows may repeat a pair once per document label.
    pairs, inverse = np.unique(np.stack([feature, token_id], axis=1), axis=0, return_inverse=True)
    pair_counts = np.bincount(inverse.reshape(-1), weights=count, minlength=len(pairs))
    feats, starts = np.unique(pairs[:, 0].astype(np.int64), return_index=True)
    ends = np.append(starts[1:], len(pairs)).astype(np.int64)
    n = len(feats)
    out = {
        "feature": feats.astype(np.int64), "n_act": np.zeros(n, np.int64), "n_tokens": np.zeros(n, np.int64),
        "n_clusters": np.zeros(n, np.int64), "h_tok": np.zeros(n), "h_sem": np.zeros(n), "r_mono": np.zeros(n),
        "single_token": np.zeros(n, bool),
    }
    for j, (s, e) in enumerate(zip(starts, ends, strict=True)):
        tokens, c = pairs[s:e, 1], pair_counts[s:e]
        clusters = cluster_tokens(embeddings[tokens], threshold)
        h_tok, h_sem = token_entropy(c), semantic_entropy(c, clusters)
        out["n_act"][j] = round(float(c.sum()))
        out["n_tokens"][j] = len(tokens)
        out["n_clusters"][j] = int(clusters.max()) + 1
        out["h_tok"][j], out["h_sem"][j] = h_tok, h_sem
        out["r_mono"][j] = monosemanticity(h_tok, h_sem, len(tokens))
        out["single_token"][j] = len(tokens) == 1
    return out

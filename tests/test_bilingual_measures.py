"""Per-feature bilingual measures against hand-worked examples (method.md 6)."""

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelscope.analysis.entropy import (
    cluster_tokens,
    entropy,
    feature_entropies,
    monosemanticity,
    pair_link_rate,
    resolve_threshold,
    semantic_entropy,
    zmatch_threshold,
)
from babelscope.analysis.languages import (
    classify,
    classify_counts,
    feature_measures,
    language_counts,
    language_shares,
    mean_span_length,
    measures_from_store,
    summarize,
)
from babelscope.analysis.store import span_starts
from babelscope.errors import UserError

LABELS = ["ar", "en"]


def _embeddings() -> np.ndarray:
    """Vocabulary of 8: 1-3 are synonyms (cat, kitten, قطة), 4 and 5 unrelated, 6 a zero row."""
    e = np.zeros((8, 4))
    e[0] = [1, 1, 1, 1]
    e[1] = [1.0, 0.1, 0, 0]
    e[2] = [1.0, 0.2, 0, 0]
    e[3] = [0.9, 0.0, 0.1, 0]
    e[4] = [0, 1, 0, 0]
    e[5] = [0, 0, 0, 1]
    e[7] = [0, 0, 1, 0]
    return e


# Feature 0: only token 5, only in English documents. Feature 1: three synonyms across both languages.
# Feature 2: two unrelated tokens in Arabic documents, one of them also once in English.
ATTR = {
    "feature": np.array([0, 1, 1, 1, 1, 2, 2, 2]),
    "token_id": np.array([5, 1, 2, 3, 1, 4, 7, 4]),
    "label": np.array(["en", "en", "en", "ar", "ar", "ar", "ar", "en"], dtype=object),
    "count": np.array([4, 1, 1, 2, 0, 5, 4, 1]),
}
FEATS = {"feature": np.arange(4), "frequency": np.array([0.1, 0.3, 0.2, 0.0]),
         "n_spans": np.array([4, 2, 5, 0]), "span_tokens": np.array([4, 6, 5, 0]), "hist": [[1, 2]] * 4}


def test_entropy_and_monosemanticity_hand_worked():
    assert entropy(np.array([4])) == 0.0
    assert entropy(np.array([1, 1])) == pytest.approx(math.log(2))
    # a, b similar (cos 0.6), c orthogonal; counts 2, 1, 1.
    emb = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]])
    clusters = cluster_tokens(emb, 0.1)
    assert clusters.tolist() == [0, 0, 1]
    h_tok = entropy(np.array([2, 1, 1]))
    assert h_tok == pytest.approx(1.5 * math.log(2))
    h_sem = semantic_entropy(np.array([2, 1, 1]), clusters)
    assert h_sem == pytest.approx(0.75 * math.log(4 / 3) + 0.25 * math.log(4))
    assert monosemanticity(h_tok, h_sem, 3) == pytest.approx(1 - h_sem / h_tok)
    assert monosemanticity(0.0, 0.0, 1) == 0.0


def test_clustering_is_connected_components_of_the_similarity_graph():
    a, b, c = [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]  # cos(a,b) = cos(b,c) = 0.71, cos(a,c) = 0
    assert cluster_tokens(np.array([a, c]), 0.1).tolist() == [0, 1]
    # The non-transitive triple: b bridges a and c, so single linkage puts all three together.
    assert cluster_tokens(np.array([a, c, b]), 0.1).tolist() == [0, 0, 0]
    # "Above" is strict: a pair at exactly the threshold does not link.
    x, y = np.array([1.0, 0.0]), np.array([0.1, math.sqrt(1 - 0.01)])
    assert cluster_tokens(np.stack([x, y]), 0.1 + 1e-9).tolist() == [0, 1]
    assert cluster_tokens(np.stack([x, y]), 0.1 - 1e-9).tolist() == [0, 0]
    # A zero row links to nothing, not even another zero row; ids follow first appearance.
    assert cluster_tokens(np.array([[0.0, 0], [1, 0], [0, 0], [2, 0]]), 0.1).tolist() == [0, 1, 2, 1]
    assert cluster_tokens(np.zeros((0, 3))).tolist() == []


def test_link_rate_shows_the_threshold_depends_on_dimension():
    rng = np.random.default_rng(0)
    low, high = rng.normal(size=(500, 16)), rng.normal(size=(500, 1024))
    assert pair_link_rate(low, 0.1) > 0.3  # 0.1 is under half a standard deviation in 16 dimensions
    assert pair_link_rate(high, 0.1) < 0.01


def test_zmatch_gives_the_studys_threshold_its_z_score():
    assert zmatch_threshold(3072) == pytest.approx(0.1)
    assert zmatch_threshold(768) == pytest.approx(0.2) and zmatch_threshold(48) == pytest.approx(0.8)
    # the same z-score means about the same (tiny) link rate for random embeddings of any width
    rng = np.random.default_rng(0)
    for d in (64, 256, 1024):
        e = rng.normal(size=(400, d))
        assert pair_link_rate(e, zmatch_threshold(d), n_pairs=50_000) < 1e-3
        assert pair_link_rate(e, 0.1, n_pairs=50_000) > (0.01 if d <= 256 else 0.0)
    value, rule, note = resolve_threshold("zmatch", 192)
    assert value == pytest.approx(0.4) and rule == "zmatch" and "sqrt(3072 / 192)" in note
    assert resolve_threshold("study", 32)[:2] == (0.1, "study") and resolve_threshold(0.1, 32)[1] == "study"
    assert resolve_threshold("0.3", 32)[:2] == (0.3, "fixed")
    with pytest.raises(UserError, match="replaced by 'zmatch'"):
        resolve_threshold("auto", 32)


@pytest.mark.parametrize("n, expected", [(1, "insufficient"), (2, "insufficient"), (3, "insufficient"),
                                         (5, "insufficient"), (9, "insufficient"), (40, "mixed")])
def test_features_with_few_activations_are_insufficient(n, expected):
    # A feature whose activations split 50/50 between the languages: with 1-5 draws it often looks monolingual
    # (1 of 1 is 100% Arabic), so below the minimum it is labelled, not classified.
    ar = (n + 1) // 2 if n > 1 else 1
    counts = np.array([[ar, n - ar]])
    assert classify_counts(counts, LABELS, 0.9)[0] == expected
    assert classify_counts(counts, LABELS, 0.9, min_activations=1)[0] in ("ar", "mixed")
    assert classify_counts(np.array([[40, 0]]), LABELS, 0.9)[0] == "ar"


def test_feature_entropies_hand_worked():
    out = feature_entropies(ATTR["feature"], ATTR["token_id"], ATTR["count"], _embeddings(), 0.1)
    assert out["feature"].tolist() == [0, 1, 2]
    # Feature 0: one token: H_tok = 0, R_mono = 0, counted single-token.
    assert (out["h_tok"][0], out["r_mono"][0], bool(out["single_token"][0])) == (0.0, 0.0, True)
    # Feature 1: synonyms with counts 1, 1, 2 (the zero-count row is ignored) in one cluster: R_mono = 1.
    assert out["n_tokens"][1] == 3 and out["n_clusters"][1] == 1
    assert out["h_tok"][1] == pytest.approx(1.5 * math.log(2))
    assert out["h_sem"][1] == 0.0 and out["r_mono"][1] == 1.0
    # Feature 2: two orthogonal tokens (6 and 4 occurrences): H_sem = H_tok, R_mono = 0, not single-token.
    assert out["n_act"][2] == 10 and out["n_clusters"][2] == 2
    assert out["h_sem"][2] == pytest.approx(out["h_tok"][2]) and out["r_mono"][2] == pytest.approx(0.0)
    assert not out["single_token"][2]


def test_language_distribution_and_classification():
    feats, counts = language_counts(ATTR["feature"], ATTR["label"], ATTR["count"], LABELS)
    assert feats.tolist() == [0, 1, 2]
    assert counts.tolist() == [[0, 4], [2, 2], [9, 1]]
    shares = language_shares(counts)
    assert classify(shares, LABELS, 0.9).tolist() == ["en", "mixed", "ar"]  # 9 of 10 is exactly tau
    assert classify(shares, LABELS, 0.95).tolist() == ["en", "mixed", "mixed"]
    with pytest.raises(UserError, match="tau"):
        classify(shares, LABELS, 0.5)
    with pytest.raises(UserError, match="not among"):
        language_counts(ATTR["feature"], np.array(["en"] * 7 + ["ja"], dtype=object), ATTR["count"], LABELS)


def test_span_length_on_a_constructed_activation_sequence():
    # One feature over two contexts: active at 0-2, 5, 7-8 in the first and 0-1 in the second -> spans 3, 1, 2, 2.
    active = {0: [0, 1, 2, 5, 7, 8], 1: [0, 1]}
    ctx = np.array([c for c, pos in active.items() for _ in pos])
    tok = np.array([c * 100 + p for c, pos in active.items() for p in pos])  # flat token index, contexts apart
    starts = span_starts(np.zeros(len(tok), dtype=np.int64), tok, ctx)
    assert starts.tolist() == [True, False, False, True, True, False, True, False]
    assert mean_span_length(np.array([starts.sum()]), np.array([len(tok)]))[0] == 2.0
    # The last token of one context and the first of the next are adjacent in the flat index, not one span.
    assert span_starts(np.zeros(2, np.int64), np.array([9, 10]), np.array([0, 1])).tolist() == [True, True]


def test_span_length_and_summary():
    assert mean_span_length(np.array([2, 0]), np.array([6, 0]))[0] == 3.0
    assert math.isnan(mean_span_length(np.array([2, 0]), np.array([6, 0]))[1])
    # with the default minimum of 10 activating occurrences, features 0 and 1 (4 each) are insufficient and
    # only feature 2 (10) is classified; the summary counts them and leaves them out of shares and means
    cols = feature_measures(ATTR, FEATS, _embeddings(), LABELS, tau=0.9)
    assert cols["class"].tolist() == ["insufficient", "insufficient", "ar"]
    s = summarize(cols, LABELS, tau=0.9, n_features=4, min_activations=10)
    assert (s["n_alive"], s["n_insufficient"], s["n_classified"], s["n_ar"], s["n_mixed"]) == (3, 2, 1, 1, 0)
    assert s["mixed_share"] == 0.0 and s["mean_r_mono"] == 0.0 and s["mean_span"] == 1.0
    # the measures themselves, every feature classified
    cols = feature_measures(ATTR, FEATS, _embeddings(), LABELS, tau=0.9, min_activations=1)
    assert cols["class"].tolist() == ["en", "mixed", "ar"]
    assert cols["mean_span"].tolist() == [1.0, 3.0, 1.0]
    assert cols["p_en"].tolist() == [1.0, 0.5, 0.1]
    s = summarize(cols, LABELS, tau=0.9, n_features=4)
    assert (s["n_alive"], s["n_dead"], s["n_en"], s["n_ar"], s["n_mixed"]) == (3, 1, 1, 1, 1)
    assert s["mixed_share"] == pytest.approx(1 / 3)
    assert s["mixed_share_t095"] == pytest.approx(2 / 3)
    assert s["mixed_share_t080"] == pytest.approx(1 / 3)
    assert s["n_single_token"] == 1
    assert s["mean_r_mono"] == pytest.approx(1 / 3)  # (0 + 1 + 0) / 3, the single-token feature counted as 0
    assert s["mean_r_mono_multi"] == pytest.approx(1 / 2)  # (1 + 0) / 2
    assert s["mean_span"] == pytest.approx(5 / 3)


def _write_store(d, labels=("ar", "en"), attr=ATTR):
    d.mkdir(parents=True, exist_ok=True)
    meta = {"model": None, "sae": "sae", "hook": "layers.1.resid_post", "tokens": 100, "n_features": 4,
            "label_field": "lang", "labels": list(labels), "threshold_frac": 0.7}
    (d / "meta.json").write_text(json.dumps(meta))
    pq.write_table(pa.table({k: list(v) for k, v in attr.items()}), d / "attributions.parquet")
    pq.write_table(pa.table({k: list(v) for k, v in FEATS.items()}), d / "features.parquet")
    return d


def test_measures_from_a_store_and_the_cli(tmp_path):
    from babelscope.cli import main

    store = _write_store(tmp_path / "store")
    np.save(tmp_path / "emb.npy", _embeddings())
    _, summary = measures_from_store(store, embeddings=tmp_path / "emb.npy", min_activations=1)
    assert summary["layer"] == 1 and summary["n_mixed"] == 1 and summary["n_insufficient"] == 0
    assert summary["sim_threshold_rule"] == "study" and summary["sim_threshold"] == 0.1
    _, summary = measures_from_store(store, embeddings=tmp_path / "emb.npy", sim_threshold="zmatch")
    assert summary["n_insufficient"] == 2 and summary["min_activations"] == 10
    assert summary["sim_threshold_rule"] == "zmatch" and summary["sim_threshold"] == pytest.approx(0.1 * 768**0.5)
    assert "sqrt(3072 / 4)" in summary["sim_threshold_note"] and summary["embedding_dim"] == 4
    with pytest.raises(SystemExit) as e:
        main(["analyze", "languages", "--features", str(store), "--out", str(tmp_path / "out"),
              "--embeddings", str(tmp_path / "emb.npy"), "--tau", "0.95", "--min-activations", "1"])
    assert e.value.code == 0
    table = pq.read_table(tmp_path / "out" / "measures.parquet")
    assert table.column("class").to_pylist() == ["en", "mixed", "mixed"]
    assert (tmp_path / "out" / "measures.csv").exists()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["mixed_share"] == pytest.approx(2 / 3)


def test_unlabelled_documents_and_foreign_embeddings_are_one_line_errors(tmp_path):
    np.save(tmp_path / "emb.npy", _embeddings())
    store = _write_store(tmp_path / "nolabel", labels=())
    with pytest.raises(UserError, match="without a 'lang' label"):
        measures_from_store(store, embeddings=tmp_path / "emb.npy")
    np.save(tmp_path / "small.npy", _embeddings()[:4])
    with pytest.raises(UserError, match="outside the embedding matrix"):
        measures_from_store(_write_store(tmp_path / "ok"), embeddings=tmp_path / "small.npy")

"""storyworld as the referee: spans to tokens, AUROC and precision of every feature, and the store's table."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from babelscope.analysis.groundtruth import (
    CONCEPT_BITS,
    CONCEPTS,
    RandomDirections,
    agreement,
    auroc_sparse,
    detector_counts,
    detectors,
    precision_recall,
    rolled,
    selection_agreement,
    store_detectors,
    threshold_counts,
    token_concepts,
)
from babelscope.analysis.store import FeatureStore, StoreConfig, aggregate, build_store, write_shards
from babelscope.models import load_model
from babelscope.models.hooks import capture


def dense_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUROC from mid-ranks (ties count one half): the textbook reference."""
    ranks = rankdata(scores)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def sparse(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tok, feat = np.nonzero(A > 0)
    return feat, tok, A[tok, feat].astype(np.float32)


# ---- the pure statistics -------------------------------------------------------------------------------------

def test_auroc_is_one_for_an_exact_name_detector_and_about_half_for_a_random_feature():
    rng = np.random.default_rng(0)
    n = 5000
    name = rng.random(n) < 0.05
    A = np.zeros((n, 4), dtype=np.float32)
    A[name, 0] = rng.uniform(0.5, 2.0, name.sum())  # fires exactly on the name tokens
    A[:, 1] = np.where(rng.random(n) < 0.3, rng.exponential(1.0, n), 0)  # fires at random
    A[~name, 2] = 1.0  # fires on everything but names: the worst detector
    feat, tok, val = sparse(A)  # feature 3 never fires
    auroc = auroc_sparse(feat, tok, val, name, 4)
    assert auroc[0] == 1.0 and auroc[2] == 0.0 and auroc[3] == 0.5
    assert abs(auroc[1] - 0.5) < 0.05


def test_auroc_handles_ties_exactly_as_the_rank_formula():
    rng = np.random.default_rng(1)
    n, F = 700, 12
    positive = rng.random(n) < 0.2
    # few distinct values, so ties among active tokens too, and many zeros; positives score a little higher
    A = np.round(rng.exponential(1.0, (n, F)) * (rng.random((n, F)) < 0.25) * 4) / 4
    A[positive] *= 1.5
    feat, tok, val = sparse(A)
    got = auroc_sparse(feat, tok, val, positive, F)
    want = [dense_auroc(A[:, f], positive) for f in range(F)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_precision_and_recall_at_seventy_percent_of_max_by_hand():
    # feature 0: max 10, so tokens at >= 7 count: tokens 0 (10, positive), 1 (7, negative), 3 (8, positive);
    # token 2 (6.9, positive) is below. Feature 1 never reaches a positive.
    A = np.array([[10, 0], [7, 5], [6.9, 0], [8, 0], [0, 4]], dtype=np.float32)
    positive = np.array([True, False, True, True, False])
    feat, tok, val = sparse(A)
    above, hit = threshold_counts(feat, tok, val, positive, A.max(0), 0.7, 2)
    assert above.tolist() == [3, 2] and hit.tolist() == [2, 0]
    precision, recall = precision_recall(above, hit, int(positive.sum()))
    np.testing.assert_allclose(precision, [2 / 3, 0.0])
    np.testing.assert_allclose(recall, [2 / 3, 0.0])


def test_detector_definitions_controls_and_agreement():
    table = {
        "feature": np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]),
        "concept": np.array(["name_english"] * 10, dtype=object),
        "control": np.array(["none"] * 5 + ["random"] * 5, dtype=object),
        "n_pos": np.full(10, 100),
        "auroc": np.array([0.95, 0.95, 0.6, np.nan, 0.97, 0.6, 0.5, 0.5, 0.5, 0.5]),
        "precision": np.array([0.6, 0.4, 0.9, np.nan, 0.95, 0.9, 0.0, 0.0, 0.0, 0.0]),
        "recall": np.full(10, 0.5),
        "n_above": np.array([50, 50, 50, 0, 9, 50, 50, 50, 0, 0]),
    }
    # broad: AUROC >= 0.9 and precision >= 0.5; selective: precision >= 0.8; both need >= 10 tokens at threshold
    assert detectors(table, "name_english", "broad").tolist() == [0]
    assert detectors(table, "name_english", "selective").tolist() == [2]
    assert detectors(table, "name_english", "selective", min_above=5).tolist() == [2, 4]
    assert detectors(table, "name_english", "selective", control="random").tolist() == [0]
    assert detectors(table, "name_english", "broad", min_positives=101).tolist() == []
    counts = detector_counts(table, 5)["concepts"]["name_english"]
    assert counts["broad"]["detectors"] == 1 and counts["broad"]["random"] == 0 and "shuffled" not in counts["broad"]
    assert counts["selective"] == {"detectors": 1, "features": [2], "random": 1}
    assert counts["best_auroc"]["feature"] == 4 and counts["best_precision"]["feature"] == 2
    a = agreement([0, 1, 5], [0, 2], 100)
    assert (a["overlap"], a["precision"], a["recall"], a["chance_precision"]) == (1, 1 / 3, 0.5, 0.02)
    assert 0 < a["p_value"] < 0.1
    none = agreement([1, 2], [], 100)  # nothing to agree with: undefined, and still valid JSON
    assert none["recall"] is None and none["p_value"] is None and none["precision"] == 0.0
    json.dumps(none, allow_nan=False)
    json.dumps(detector_counts(table, 5), allow_nan=False)


def test_token_concepts_from_hand_made_offsets():
    text = 'Tim said, "Hi Sam." "Go," said Sue.'
    # tokens: "Tim" " said" "," ' "' "Hi" " Sam" '."' ' "' "Go" ',"' " said" " Sue" "."
    offsets = [(0, 3), (3, 8), (8, 9), (9, 11), (11, 13), (13, 17), (17, 19), (19, 21), (21, 23), (23, 25),
               (25, 30), (30, 34), (34, 35)]
    spans = {"names": [[0, 3, "english"], [14, 17, "english"], [31, 34, "arabic"]],
             "quotes": [[11, 18], [21, 24]], "tags": [[0, 8, "before"], [26, 34, "after"]]}
    assert text[18] == '"' and text[24] == '"' and text[31:34] == "Sue"
    bits = token_concepts(offsets, spans)

    def where(concept):
        return np.flatnonzero(bits & CONCEPT_BITS[concept]).tolist()

    assert where("name_english") == [0, 5] and where("name_arabic") == [11] and where("name") == [0, 5, 11]
    assert where("quote_end_tag_before") == [6] and where("quote_end_tag_after") == [9]
    assert where("tag_before") == [0, 1] and where("tag_after") == [10, 11]


def test_rolled_control_keeps_each_context_positives():
    bits = np.array([0, 1, 1, 0, 0, 0, 2, 0, 0], dtype=np.uint8)
    labelled = np.array([False, True, True, True, True, False, True, True, True])
    out = rolled(bits, labelled, np.array([0, 5, 9]), np.array([3, 4]))
    assert sorted(out[:5].tolist()) == sorted(bits[:5].tolist()) and out[0] == 0
    assert sorted(out[5:].tolist()) == sorted(bits[5:].tolist()) and out[5] == 0
    assert not np.array_equal(out, bits)


# ---- the store pass --------------------------------------------------------------------------------------------

HOOK = "layers.1.mlp.act"


class ToySAE:
    def __init__(self, d_in: int, d_sae: int, seed: int = 3):
        g = torch.Generator().manual_seed(seed)
        self.W_enc = torch.randn(d_in, d_sae, generator=g) * 30
        self.b_enc = torch.full((d_sae,), -0.5)
        self.cfg = types.SimpleNamespace(hook_name=HOOK, d_sae=d_sae, d_in=d_in)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W_enc + self.b_enc)


@pytest.fixture(scope="module")
def stories() -> list[dict]:
    from babelscope.corpus.storyworld import generate_stories

    talk = [r for r in generate_stories(40, langs=("ar",), style="translated", seed=4) if r["quotes"]][:3]
    native = [r for r in generate_stories(40, langs=("ar",), style="native", seed=5) if r["quotes"]][:3]
    plain = {"id": "plain", "lang": "ar", "text": "كان هناك ولد صغير اسمه نور"}  # no spans: not scored
    return [*talk, plain, *native]


def test_store_detector_table_equals_brute_force(tiny_model_dir, stories, tmp_path):
    model, tok = load_model(tiny_model_dir)
    sae = ToySAE(64, 16)
    # long documents cut into several contexts: later windows start inside the document, BOS only in the first
    cfg = StoreConfig(tokens=100_000, context=96, batch_size=1, docs_per_shard=3, split_long=True)
    write_shards(model, tok, sae, HOOK, stories, tmp_path / "cache", cfg)
    res = aggregate(tmp_path / "cache", cfg, n_features=16, vocab_size=len(tok))
    table = res["detectors"]
    assert res["detectors_meta"]["concepts"] == CONCEPTS

    # brute force: dense activations per window, labels from the slow path (offsets from the tokenizer call)
    acts, labels, raw = [], [], []
    for r in stories:
        enc = tok(r["text"], add_special_tokens=False, return_offsets_mapping=True)
        ids = [tok.bos_token_id, *enc["input_ids"]]
        doc_bits = token_concepts(enc["offset_mapping"], r["spans"]) if "spans" in r else None
        for a, b, _ in (r.get("spans") or {}).get("names", []):  # a name's tokens decode to the name
            hit = [t for t, (s, e) in zip(enc["input_ids"], enc["offset_mapping"], strict=True) if s < b and e > a]
            assert tok.decode(hit).strip() == r["text"][a:b]
        for start in range(0, len(ids), cfg.context):
            window = ids[start:start + cfg.context]
            with torch.no_grad():
                x = capture(model, [HOOK], torch.tensor([window]))[HOOK][0]
                a = sae.encode(x).numpy()
            first = 1 if start == 0 else 0  # BOS is never scored
            acts.append((a[first:], doc_bits is not None))
            raw.append((x[first:].numpy(), doc_bits is not None))
            if doc_bits is not None:
                labels.append(doc_bits[start + first - 1:start + len(window) - 1])
    A = np.concatenate([a for a, has in acts if has])
    bits = np.concatenate(labels)
    assert len(A) == len(bits)
    assert res["detectors_meta"]["labelled_tokens"] == len(A)
    # the random-direction control: the saved directions and thresholds, applied densely to the same tokens
    control = RandomDirections.load(tmp_path / "cache" / "control.npz")
    assert control.directions.shape == (16, 64) and not np.allclose(control.directions[0], control.directions[1])
    X = np.concatenate([x for x, has in raw if has])
    R = np.maximum(X @ control.directions.T - control.thresholds, 0)
    R_all = np.maximum(np.concatenate([x for x, _ in raw]) @ control.directions.T - control.thresholds, 0)
    for track, scores, everything in (("none", A, np.concatenate([a for a, _ in acts])), ("random", R, R_all)):
        vmax = everything.max(0)  # the 70% threshold uses the max over every token of the store
        for concept, bit in CONCEPT_BITS.items():
            positive = (bits & bit).astype(bool)
            assert 0 < positive.sum() < len(A), concept  # every concept is exercised
            rows = np.flatnonzero((table["control"] == track) & (table["concept"] == concept))
            assert len(rows) == 16 and (table["n_pos"][rows] == positive.sum()).all()
            want = [dense_auroc(scores[:, f], positive) for f in range(16)]
            # the random scores are float32 products summed in another order here: a near tie may flip a pair
            np.testing.assert_allclose(table["auroc"][rows], want, rtol=1e-9, atol=0 if track == "none" else 1e-5,
                                       err_msg=f"{track} {concept}")
            above = (0.7 * vmax[None, :].astype(np.float64) <= scores) & (scores > 0)
            np.testing.assert_array_equal(table["n_above"][rows], above.sum(0))
            np.testing.assert_array_equal(table["pos_above"][rows], (above & positive[:, None]).sum(0))
            np.testing.assert_allclose(table["recall"][rows], (above & positive[:, None]).sum(0) / positive.sum())
    # the shuffled control has the same positives as the planted labels
    for concept in CONCEPTS:
        n = table["n_pos"][(table["control"] == "none") & (table["concept"] == concept)]
        assert (table["n_pos"][(table["control"] == "shuffled") & (table["concept"] == concept)] == n[0]).all()


def test_build_store_writes_the_table_only_for_records_with_spans(tiny_model_dir, stories, tmp_path):
    import json

    from babelscope.sae.base import SAE, SAEConfig
    from babelscope.sae.io import save_sae

    sae = SAE(SAEConfig(arch="relu", d_in=64, d_sae=8, hook_name=HOOK))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(64, 8, generator=torch.Generator().manual_seed(0)))
        sae.W_dec.copy_(sae.W_enc.T)
    save_sae(sae, tmp_path / "sae")
    plain = [r for r in stories if "spans" not in r]
    for name, records in (("story", stories), ("plain", plain * 5)):
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        meta = build_store(tiny_model_dir, tmp_path / "sae", [data], tmp_path / name, StoreConfig(tokens=5000))
        store = FeatureStore(tmp_path / name)
        if name == "story":
            assert meta["detectors"]["positives"]["name_english"] > 0
            assert len(store.detectors()["feature"]) == 3 * 8 * len(CONCEPTS)
            counts = store_detectors(tmp_path / name)
            assert counts["concepts"]["name_english"]["n_pos"] == meta["detectors"]["positives"]["name_english"]
            agree = selection_agreement(tmp_path / name, [0, 1, 2])
            assert agree["selected"] == 3 and agree["concept"] == "name_english"
            assert set(store.detectors()["control"]) == {"none", "shuffled", "random"}
        else:
            assert meta["detectors"] is None and store.detectors() is None
            assert store_detectors(tmp_path / name) is None and selection_agreement(tmp_path / name, [1]) is None

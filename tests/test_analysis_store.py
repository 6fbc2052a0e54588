"""The feature store against a brute-force pass, its memory bound, resume and read-back."""

import tracemalloc
import types
from collections import Counter

import numpy as np
import pytest
import torch

from babelscope.analysis.shards import ShardWriter
from babelscope.analysis.store import (
    FeatureStore,
    Ragged,
    StoreConfig,
    aggregate,
    sample_priority,
    write_shards,
    write_tables,
)
from babelscope.errors import UserError
from babelscope.models import load_model
from babelscope.models.hooks import capture

HOOK = "layers.1.mlp.act"


class ToySAE:
    """A ReLU SAE stand-in (the store only needs `encode` and `cfg`); counts the rows it encodes."""

    def __init__(self, d_in: int, d_sae: int, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        self.W_enc = torch.randn(d_in, d_sae, generator=g) * 30
        self.b_enc = torch.full((d_sae,), -0.5)
        self.cfg = types.SimpleNamespace(hook_name=HOOK, d_sae=d_sae, d_in=d_in)
        self.rows = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return torch.relu(x @ self.W_enc + self.b_enc)


def real_sae(arch: str, d_in: int = 64, d_sae: int = 24, seed: int = 2):
    """babelscope's SAE (unit-norm inputs, as Study B) with random weights that fire on a fair share of tokens."""
    from babelscope.sae.base import SAE, SAEConfig

    sae = SAE(SAEConfig(arch=arch, d_in=d_in, d_sae=d_sae, k=4 if arch == "topk" else None, hook_name=HOOK,
                        normalize="l2"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) * 3)
        sae.b_enc.fill_(-1.0 if arch == "relu" else 0.0)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g))
        sae.b_dec.copy_(torch.randn(d_in, generator=g) * 0.01)
    return sae


@pytest.fixture(scope="module")
def setup(tiny_model_dir, bilingual_records):
    model, tok = load_model(tiny_model_dir)
    return model, tok, ToySAE(64, 24), bilingual_records[:120]


def brute_force(model, tok, sae, records, cfg):
    """Every statistic from dense activations, one document at a time (no shards, no streaming)."""
    F = sae.cfg.d_sae
    acts, token_ids, labels, docs, ctx_pos, gs, ctx_id = [], [], [], [], [], [], []
    done, flat_in_shard = 0, Counter()
    for d, r in enumerate(records):
        ids = [tok.bos_token_id, *tok.encode(r["text"], add_special_tokens=False)][: cfg.context]
        take = min(len(ids) - 1, cfg.tokens - done)
        if take <= 0:
            break
        x = capture(model, [HOOK], torch.tensor([ids]))[HOOK][0, 1 : 1 + take]
        with torch.no_grad():
            acts.append(sae.encode(x).numpy())
        shard = d // cfg.docs_per_shard
        gs.append((shard << 32) | (flat_in_shard[shard] + 1 + np.arange(take)))
        flat_in_shard[shard] += take + 1
        token_ids += ids[1 : 1 + take]
        labels += [r["lang"]] * take
        docs += [d] * take
        ctx_pos += list(range(1, 1 + take))
        ctx_id += [d] * take
        done += take
        if done >= cfg.tokens:
            break
    A = np.concatenate(acts)
    return A, np.array(token_ids), np.array(labels), np.array(docs), np.array(ctx_pos), np.concatenate(gs), F


@pytest.mark.parametrize("arch", ["toy", "relu", "topk"])
def test_store_equals_brute_force(setup, tmp_path, arch):
    model, tok, sae, records = setup
    if arch != "toy":
        sae = real_sae(arch)  # the real SAE: dense ReLU path and sparse TopK path (encode_topk)
    cfg = StoreConfig(tokens=1500, context=24, batch_size=1, docs_per_shard=17, top_k=6, n_intervals=4,
                      per_interval=3, window=3)
    write_shards(model, tok, sae, HOOK, records, tmp_path / "cache", cfg)
    res = aggregate(tmp_path / "cache", cfg, n_features=24, vocab_size=len(tok))
    A, token_ids, labels, docs, ctx_pos, g, F = brute_force(model, tok, sae, records, cfg)
    feats = res["features"]
    active = A > 0
    n = active.sum(0)
    assert res["tokens"] == len(A) == 1500
    np.testing.assert_array_equal(feats["n_active"], n)
    np.testing.assert_allclose(feats["frequency"], n / len(A))
    vmax = A.max(0)
    np.testing.assert_allclose(feats["max_act"], vmax, rtol=1e-6)
    np.testing.assert_allclose(feats["mean_act"], A.sum(0) / np.maximum(n, 1), rtol=1e-5)
    # spans: runs of consecutive active tokens within a document's context
    spans = np.zeros(F, dtype=int)
    for f in range(F):
        prev = False
        for i in range(len(A)):
            new_ctx = i == 0 or docs[i] != docs[i - 1]
            if active[i, f] and (new_ctx or not prev):
                spans[f] += 1
            prev = active[i, f]
    np.testing.assert_array_equal(feats["n_spans"], spans)
    np.testing.assert_array_equal(feats["span_tokens"], n)
    assert (feats["n_spans"] < feats["span_tokens"]).any()  # some spans are longer than one token
    # histogram, >= 70% counts and attributions
    for f in range(F):
        v = A[active[:, f], f]
        bins = np.minimum(np.floor(v.astype(np.float64) / float(vmax[f]) * 50), 49).astype(int)
        np.testing.assert_array_equal(feats["hist"][f], np.bincount(bins, minlength=50))
    above = (A.astype(np.float64) >= 0.7 * vmax.astype(np.float64)[None, :]) & active
    np.testing.assert_array_equal(feats["n_above"], above.sum(0))
    expected = Counter()
    for i, f in zip(*np.nonzero(above), strict=True):
        expected[(int(f), int(token_ids[i]), str(labels[i]))] += 1
    at = res["attributions"]
    got = {(int(f), int(t), str(lab)): int(c) for f, t, lab, c in
           zip(at["feature"], at["token_id"], at["label"], at["count"], strict=True)}
    assert got == dict(expected) and sum(got.values()) == above.sum()
    assert {"en", "ar"} <= {k[2] for k in got}
    # top examples: activation descending, ties by corpus order; windows carry the feature's activations
    ex = res["examples"]
    kinds = np.asarray(ex["kind"])
    for f in range(F):
        rows = [i for i in range(len(kinds)) if ex["feature"][i] == f and kinds[i] == "top"]
        order = np.lexsort((np.arange(len(A)), -A[:, f]))
        want = [i for i in order if active[i, f]][: cfg.top_k]
        assert [ex["doc"][i] for i in rows] == [int(docs[j]) for j in want]
        assert [ex["ctx_pos"][i] for i in rows] == [int(ctx_pos[j]) for j in want]
        for i, j in zip(rows, want, strict=True):
            p = ex["pos"][i]
            assert ex["tokens"][i][p] == token_ids[j]
            np.testing.assert_allclose(ex["act"][i], A[j, f], rtol=1e-6)
            lo = j - p
            np.testing.assert_allclose(ex["acts"][i], A[lo : lo + len(ex["acts"][i]), f], rtol=1e-6, atol=1e-7)
            assert set(docs[lo : lo + len(ex["acts"][i])]) == {docs[j]}  # the window stays in its context
        # interval examples: the per_interval smallest sample priorities among tokens in each interval
        for k in range(cfg.n_intervals):
            interval = np.minimum(np.floor(A[:, f].astype(np.float64) / float(vmax[f]) * cfg.n_intervals),
                                  cfg.n_intervals - 1)
            members = np.flatnonzero(active[:, f] & (interval == k))
            pick = members[np.argsort(sample_priority(g[members], np.full(len(members), f)), kind="stable")]
            rows = [i for i in range(len(kinds)) if ex["feature"][i] == f and ex["interval"][i] == k]
            assert [(ex["doc"][i], ex["ctx_pos"][i]) for i in rows] == \
                [(int(docs[j]), int(ctx_pos[j])) for j in pick[: cfg.per_interval]]
    # contexts hold the model input (BOS first) of every example
    ctx = dict(zip(res["contexts"]["ctx"], res["contexts"]["tokens"], strict=True))
    for i in range(len(kinds)):
        c = ctx[ex["ctx"][i]]
        assert c[0] == tok.bos_token_id
        assert c[ex["ctx_pos"][i]] == ex["tokens"][i][ex["pos"][i]]


def test_batching_does_not_change_the_statistics(setup, tmp_path):
    model, tok, sae, records = setup
    out = []
    for bs in (1, 5):
        cfg = StoreConfig(tokens=800, context=24, batch_size=bs, docs_per_shard=10)
        write_shards(model, tok, sae, HOOK, records, tmp_path / f"c{bs}", cfg)
        out.append(aggregate(tmp_path / f"c{bs}", cfg, n_features=24)["features"])
    np.testing.assert_allclose(out[0]["max_act"], out[1]["max_act"], rtol=1e-4)
    assert np.abs(out[0]["n_active"] - out[1]["n_active"]).max() <= 1


def test_resume_after_kill_equals_uninterrupted_run(setup, tmp_path):
    model, tok, _, records = setup
    cfg = StoreConfig(tokens=2000, context=24, batch_size=4, docs_per_shard=15, top_k=5)

    def killed(n):
        for i, r in enumerate(records):
            if i == n:
                raise KeyboardInterrupt  # the process dies in the middle of a shard
            yield r

    whole_sae = ToySAE(64, 24)
    write_shards(model, tok, whole_sae, HOOK, records, tmp_path / "whole", cfg)
    sae = ToySAE(64, 24)
    with pytest.raises(KeyboardInterrupt):
        write_shards(model, tok, sae, HOOK, killed(40), tmp_path / "resumed", cfg)
    assert len(list((tmp_path / "resumed").glob("shard-*.npz"))) == 2  # 30 documents' shards are complete
    with np.load(tmp_path / "resumed" / "shard-000001.npz") as z:
        done_before = int(z["tokens_end"])
    sae.rows = 0
    state = write_shards(model, tok, sae, HOOK, records, tmp_path / "resumed", cfg)
    assert state["complete"] and state["tokens"] == 2000
    # the resumed run encoded only the tokens after the complete shards (nothing done twice)
    assert sae.rows == whole_sae.rows - done_before
    a = aggregate(tmp_path / "whole", cfg, n_features=24)
    b = aggregate(tmp_path / "resumed", cfg, n_features=24)
    for table in ("features", "attributions", "examples", "contexts"):
        for col in a[table]:
            x, y = a[table][col], b[table][col]
            if isinstance(x, Ragged):
                np.testing.assert_array_equal(x.offsets, y.offsets, err_msg=f"{table}.{col}")
                x, y = x.values, y.values
            np.testing.assert_array_equal(x, y, err_msg=f"{table}.{col}")
    # a second call on a complete cache runs nothing
    sae.rows = 0
    write_shards(model, tok, sae, HOOK, records, tmp_path / "resumed", cfg)
    assert sae.rows == 0
    with pytest.raises(UserError, match="other settings"):
        write_shards(model, tok, sae, HOOK, records, tmp_path / "resumed", StoreConfig(tokens=999, context=24))


def _synthetic_shards(path, n_shards, F=128, V=60, seed=0):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    tokens_end = 0
    for s in range(n_shards):
        w = ShardWriter()
        for c in range(40):
            ids = rng.integers(3, V, 50)
            ids[0] = 1
            valid = np.ones(50, dtype=bool)
            valid[0] = False
            off = w.add_context(ids, valid, s * 40 + c, 0, "ar" if c % 2 else "en", f"r{c}")
            n_ent = 49 * 8
            w.ent_tok.append(off + 1 + np.repeat(np.arange(49), 8))
            w.ent_feat.append(rng.integers(0, F, n_ent).astype(np.int32))
            w.ent_val.append(rng.exponential(1.0, n_ent).astype(np.float32))
        tokens_end += 40 * 49
        w.save(path / f"shard-{s:06d}.npz", docs_end=(s + 1) * 40, tokens_end=tokens_end, budget_hit=False,
               n_features=F, shard=s)


def test_aggregation_memory_is_bounded_when_the_corpus_grows_10x(tmp_path):
    cfg = StoreConfig(top_k=10, n_intervals=5, per_interval=3)
    peaks = []
    for n in (6, 60):
        _synthetic_shards(tmp_path / f"s{n}", n)
        tracemalloc.start()
        res = aggregate(tmp_path / f"s{n}", cfg, n_features=128, vocab_size=60)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert res["tokens"] == n * 40 * 49
    # 10x the tokens (and 10x the sparse entries) may not grow the aggregation's peak memory by more than 30%
    assert peaks[1] < 1.3 * peaks[0], peaks


def test_tables_round_trip_through_feature_store(setup, tmp_path):
    model, tok, sae, records = setup
    cfg = StoreConfig(tokens=600, context=24, batch_size=4, docs_per_shard=20)
    write_shards(model, tok, sae, HOOK, records, tmp_path / "cache", cfg)
    res = aggregate(tmp_path / "cache", cfg, n_features=24, vocab_size=len(tok))
    write_tables(tmp_path, res, {"n_features": 24, "labels": res["labels"], "threshold_frac": 0.7})
    store = FeatureStore(tmp_path)
    feats = store.features()
    assert feats["hist"].shape == (24, 50)
    np.testing.assert_array_equal(feats["n_active"], res["features"]["n_active"])
    np.testing.assert_array_equal(feats["hist"].sum(1), feats["n_active"])
    attr = store.attributions()
    assert set(attr) == {"feature", "token_id", "label", "count"}
    assert attr["count"].sum() == feats["n_above"].sum()
    f = int(np.argmax(feats["n_active"]))
    top = store.examples(f, kind="top")
    assert [r["rank"] for r in top] == list(range(len(top))) and top[0]["act"] == pytest.approx(feats["max_act"][f])
    ctxs = store.contexts([top[0]["ctx"]])
    assert ctxs[top[0]["ctx"]]["tokens"][top[0]["ctx_pos"]] == top[0]["tokens"][top[0]["pos"]]
    assert store.examples(10_000) == []

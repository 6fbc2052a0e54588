"""The TSEA null: its own random stream, its four families, the calibrated per-feature test (hand-worked p-values,
a planted direction found, random directions not), the intervals against published values, and Study A's
verdict from hand-made outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babelscope.analysis.intervals import wilson
from babelscope.analysis.name_bias import model_findings, name_bias_findings
from babelscope.analysis.null import (
    calibrated_test,
    empirical_pvalues,
    family_result,
    min_detectable,
    null_directions,
    share_difference,
    untrained_seed,
)
from babelscope.analysis.tsea import log_score, tsea
from babelscope.errors import UserError
from babelscope.sae.base import SAEConfig
from babelscope.sae.trainable import TrainableSAE, initial_decoder


@pytest.mark.parametrize("family", ["isotropic", "untrained", "covariance", "activations"])
def test_null_stream_never_repeats_the_sae_initialisation(family):
    acts = torch.randn(300, 16, generator=torch.Generator().manual_seed(99))
    for seed in range(12):
        null = null_directions(family, 64, 16, seed, activations=acts)
        init = TrainableSAE(SAEConfig(arch="relu", d_in=16, d_sae=64), seed=seed).W_dec.detach()
        assert not torch.equal(null, init), (family, seed)
        # no row of the null is (nearly) the matching row of the trainer's draw
        assert (null * init).sum(dim=1).abs().max() < 0.95, (family, seed)
        assert torch.allclose(null.norm(dim=1), torch.ones(64), atol=1e-5)
        # a null seed gives the same directions twice, and another seed other directions
        assert torch.equal(null, null_directions(family, 64, 16, seed, activations=acts))
        assert not torch.equal(null, null_directions(family, 64, 16, seed + 1, activations=acts))


def test_untrained_family_is_the_trainers_init_for_a_seed_nobody_uses():
    for seed in range(8):
        s = untrained_seed(seed)
        assert s >= 2**32
        torch.testing.assert_close(null_directions("untrained", 32, 8, seed), initial_decoder(32, 8, s))
    assert len({untrained_seed(s) for s in range(100)}) == 100
    # the trainer itself starts from initial_decoder, so the family follows any change to it
    torch.testing.assert_close(TrainableSAE(SAEConfig(arch="relu", d_in=8, d_sae=32), seed=5).W_dec.detach(),
                               initial_decoder(32, 8, 5))


def test_covariance_and_activation_families_follow_the_data():
    g = torch.Generator().manual_seed(0)
    axis = torch.zeros(12)
    axis[3] = 1.0
    acts = torch.randn(2000, 12, generator=g) * 0.1 + torch.randn(2000, 1, generator=g) * 3.0 * axis + 5.0
    cov = null_directions("covariance", 400, 12, 0, activations=acts)
    iso = null_directions("isotropic", 400, 12, 0)
    assert (cov @ axis).abs().mean() > 0.9 > 0.5 > (iso @ axis).abs().mean()
    real = null_directions("activations", 50, 12, 0, activations=acts)
    centred = acts - acts.mean(dim=0)
    unit = centred / centred.norm(dim=1, keepdim=True)
    assert ((real @ unit.T).max(dim=1).values > 1 - 1e-5).all()  # every row is a centred activation vector
    assert len({tuple(r) for r in real.numpy().round(5)}) == 50  # drawn without replacement
    other = null_directions("activations", 50, 12, 1, activations=acts)
    assert not torch.equal(real, other)  # another seed, another subset
    with pytest.raises(UserError, match="more activation vectors"):
        null_directions("activations", 2000, 12, 0, activations=acts)
    with pytest.raises(UserError, match="needs activations"):
        null_directions("covariance", 4, 12, 0)
    with pytest.raises(UserError, match="unknown null family"):
        null_directions("uniform", 4, 12, 0)


def test_empirical_pvalues_by_hand():
    null = np.array([1.0, 2.0, 3.0, 4.0])
    # 3: 2 null values >= 3 -> p_upper (1 + 2) / 5; 3 values <= 3 -> p_lower 4 / 5; two-sided min(1, 2 x 0.6) = 1
    # 5: none >= 5 -> 1/5, two-sided 0.4; 0: none <= 0 -> 1/5; NaN stays NaN
    out = empirical_pvalues(np.array([3.0, 5.0, 0.0, np.nan]), null)
    np.testing.assert_allclose(out["p_upper"][:3], [0.6, 0.2, 1.0])
    np.testing.assert_allclose(out["p_lower"][:3], [0.8, 1.0, 0.2])
    np.testing.assert_allclose(out["p_value"][:3], [1.0, 0.4, 0.4])
    assert np.isnan(out["p_value"][3])
    # BH over features: 10 features far above a null of 999 values and 90 inside it
    rng = np.random.default_rng(0)
    ref = rng.normal(size=999)
    gap = np.concatenate([np.full(10, 10.0), np.full(5, -10.0), rng.normal(size=85) * 0.5])
    test = calibrated_test(gap, ref, level=0.05)
    assert (test["side"][:10] == 1).all() and (test["side"][10:15] == -1).all() and not test["side"][15:].any()
    assert test["p_value"][0] == pytest.approx(2 / 1000)
    # BH: 15 p-values of 0.002 among 100 -> q = 0.002 x 100 / 15
    assert test["q_value"][0] == pytest.approx(0.002 * 100 / 15)
    assert min_detectable(999, 100) == 4 and min_detectable(10**6, 100) == 1


def test_wilson_and_newcombe_reproduce_published_values():
    # Newcombe (1998), Statistics in Medicine 17: 81/263 (Wilson score interval), and method 10 (hybrid score)
    # for the difference of two independent proportions, Table II examples.
    lo, hi = wilson(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    for (k1, n1, k2, n2), expected in [((56, 70, 48, 80), (0.0524, 0.3339)), ((9, 10, 3, 10), (0.1705, 0.8090)),
                                       ((5, 56, 0, 29), (-0.0381, 0.1926)), ((0, 10, 0, 20), (-0.1611, 0.2775))]:
        d = share_difference(k1, n1, k2, n2)
        assert tuple(round(v, 4) for v in d["interval"]) == expected
        assert d["distinguishable"] == (expected[0] > 0)
    assert wilson(0, 4096)[0] == 0.0 and 0 < wilson(0, 4096)[1] < 0.001
    assert share_difference(0, 4096, 0, 4096)["reading"].startswith("not distinguishable")


def _planted_unembedding(V=500, d=24, n_set=25, alpha=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    W_U = torch.randn(V, d, generator=g)
    u = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    english, arabic = torch.arange(0, n_set), torch.arange(n_set, 2 * n_set)
    W_U[english] += alpha * u
    W_U[arabic] -= alpha * u
    return W_U, u, english.tolist(), arabic.tolist()


def _gaps(directions, W_U, sets):
    s = log_score(tsea([directions @ W_U.T], sets)["score"])
    return s[:, 0] - s[:, 1]  # english - arabic


def test_planted_direction_is_flagged_and_random_directions_are_not():
    W_U, u, en, ar = _planted_unembedding()
    d = W_U.shape[1]
    g = torch.Generator().manual_seed(1234)
    planted = torch.nn.functional.normalize(u + 0.3 * torch.randn(10, d, generator=g) / d**0.5, dim=1)
    anti = torch.nn.functional.normalize(-u + 0.3 * torch.randn(5, d, generator=g) / d**0.5, dim=1)
    random = torch.nn.functional.normalize(torch.randn(485, d, generator=g), dim=1)
    feats = torch.cat([planted, anti, random])
    null = [_gaps(null_directions("isotropic", 500, d, s), W_U, [en, ar]) for s in range(8)]
    summary, test = family_result(_gaps(feats, W_U, [en, ar]), null, ("english", "arabic"), threshold=2.0)
    assert (test["side"][:10] == 1).all() and (test["q_value"][:10] < 0.05).all()
    assert (test["side"][10:15] == -1).all()
    # random directions are what the null is made of: at FDR 5% about none of them is flagged (here 0 of 485;
    # 0 of 2000 in each of three larger trials), while their raw p-values are uniform (5% below 0.05)
    assert (test["side"][15:] != 0).sum() <= 5
    assert 0.02 < (test["p_value"][15:] < 0.05).mean() < 0.09
    assert summary["calibrated"]["english"]["count"] >= 10 and summary["null_flagged"]["mean"] <= 2
    # the study's rule counts random directions too: the null's own count beyond 2 is what it must be read against
    assert summary["threshold_count"]["english"]["mean"] > 0


def test_an_sae_that_never_left_its_initialisation_is_not_flagged():
    """The issue's failure: features that are the trainer's random init look 'biased' by the study's count,
    but the calibrated test against an untrained-SAE null flags (almost) none of them."""
    W_U, _, en, ar = _planted_unembedding(alpha=1.5)
    d = W_U.shape[1]
    features = initial_decoder(500, d, 0)  # an SAE trained with seed 0 that barely moved
    null = [_gaps(null_directions("untrained", 500, d, s), W_U, [en, ar]) for s in range(8)]
    gap = _gaps(features, W_U, [en, ar])
    summary, test = family_result(gap, null, ("english", "arabic"), threshold=0.5)
    marked = (np.abs(gap) > 0.5).sum()
    assert marked > 10  # the study's rule marks many of them, about as many as it marks null directions
    null_marked = summary["threshold_count"]["english"]["mean"] + summary["threshold_count"]["arabic"]["mean"]
    assert 0.5 < marked / null_marked < 2
    assert (test["side"] != 0).sum() <= 5


def _meta(counts_en, counts_ar, F=1000, families=("untrained", "covariance")):
    fam = {}
    for f, ke, ka in zip(families, counts_en, counts_ar, strict=True):
        fam[f] = {"calibrated": {"english_names": {"count": ke, "of": F, "count_interval": [0, ke + 5]},
                                 "arabic_names": {"count": ka, "of": F, "count_interval": [0, ka + 5]}},
                  "threshold_count": {"english_names": {"mean": 100.0, "sd": 5.0},
                                      "arabic_names": {"mean": 90.0, "sd": 4.0}},
                  "min_detectable": 5, "level": 0.05, "null_flagged": {"mean": 0.0}}
    return {"n_features": F, "hook": "layers.7.mlp.act", "threshold": 2.0, "scatter_pair": ["arabic_names",
                                                                                           "english_names"],
            "beyond_threshold": {"above": 120, "below": 80},
            "null": {"order": list(families), "level": 0.05, "families": fam}}


def test_name_bias_verdicts_from_hand_made_outputs(tmp_path):
    import json

    def write(name, meta):
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text(json.dumps(meta))
        return tmp_path / name

    m = model_findings(_meta([40, 0], [3, 2]), name="base")
    assert m["threshold_count"] == {"english": 120, "arabic": 80}
    assert m["families"]["untrained"]["verdict"] == "supported"
    assert m["families"]["covariance"]["verdict"] == "not supported"
    # base 40/1000 vs cp 2/1000 under the untrained null: distinguishable -> supported; under covariance the
    # base model has none -> not supported; families disagree -> inconclusive overall
    f = name_bias_findings({"base": write("b", _meta([40, 0], [3, 2])), "cp": write("c", _meta([2, 0], [1, 1]))})
    assert f["comparison"]["untrained"]["verdict"] == "supported"
    assert f["comparison"]["untrained"]["distinguishable"] is True
    assert f["comparison"]["covariance"]["verdict"] == "not supported"
    assert f["verdict"] == "inconclusive at this scale" and "depends on the null" in f["line"]
    # 5 vs 3 of 1000: not distinguishable from zero -> inconclusive
    f = name_bias_findings({"base": write("b2", _meta([5, 5], [0, 0])), "cp": write("c2", _meta([3, 3], [0, 0]))})
    assert f["verdict"] == "inconclusive at this scale"
    assert not f["comparison"]["untrained"]["distinguishable"]
    json.dumps(f)  # JSON-ready
    with pytest.raises(UserError, match="no TSEA output"):
        name_bias_findings({"base": tmp_path / "missing"})

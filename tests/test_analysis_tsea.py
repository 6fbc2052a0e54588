import numpy as np
import pytest
import torch

from babelscope.analysis.tsea import (
    benjamini_hochberg,
    enrichment_scores,
    kolmogorov_sf,
    ks_pvalue,
    ks_statistic,
    log_score,
    running_sum,
    signed_extreme,
    tsea,
)


def test_hand_worked_example():
    # Vocabulary of 6 tokens, logits give the order t0 > t1 > ... > t5; set S = {t0, t1} (|S| = 2, N - |S| = 4).
    w = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    # Walk: +1/2, +1/2 -> 1.0 at the top, then -1/4 four times back to 0. Score = +1.
    # S at the bottom {t4, t5}: -1/4 x4 -> -1.0, then +1/2 x2 -> 0. Score = -1.
    # S = {t1, t4}: -1/4, +1/2 (0.25), -1/4, -1/4 (-0.25), +1/2 (0.25), -1/4 (0): max 0.25, min -0.25 -> tie -> +0.25.
    # S = {t0, t3}: +1/2, -1/4, -1/4 (0), +1/2 (0.5), -1/4, -1/4 -> 0.5.
    score, ks = enrichment_scores(w, [[0, 1], [4, 5], [1, 4], [3, 0]])
    torch.testing.assert_close(score[0], torch.tensor([1.0, -1.0, 0.25, 0.5], dtype=torch.float64))
    torch.testing.assert_close(ks[0], torch.tensor([1.0, 1.0, 0.25, 0.5], dtype=torch.float64))


def test_top_high_bottom_low_random_near_zero():
    rng = np.random.default_rng(0)
    w = torch.tensor(rng.normal(size=(64, 2000)), dtype=torch.float32)
    top = torch.argsort(w[0], descending=True)[:50]
    bottom = torch.argsort(w[0])[:50]
    rand = rng.choice(2000, 50, replace=False)
    score, _ = enrichment_scores(w, [top, bottom, rand])
    assert score[0, 0] > 0.95 and score[0, 1] < -0.95
    assert abs(score[0, 2]) < 0.3
    assert score[1:, 2].abs().mean() < 0.15  # a random set on random features stays near zero on average


@pytest.mark.parametrize("p", [0.0, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vectorised_equals_brute_force_running_sum(p, dtype):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(20, 150)).astype(np.float32)
    w[3] = 0.0  # all ties: the stable order must decide
    w[4, ::3] = 1.0
    sets = [rng.choice(150, 12, replace=False), rng.choice(150, 3, replace=False), np.arange(10)]
    score, _ = enrichment_scores(torch.tensor(w, dtype=dtype), sets, p=p)
    for f in range(20):
        for j, s in enumerate(sets):
            ref = signed_extreme(running_sum(w[f], s, p))
            if np.isnan(ref):
                assert torch.isnan(score[f, j])
            else:
                assert abs(score[f, j].item() - ref) < 1e-12, (f, j)


def test_unweighted_score_is_the_ks_statistic():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(30, 400))
    sets = [rng.choice(400, 25, replace=False), rng.choice(400, 60, replace=False)]
    score, ks = enrichment_scores(torch.tensor(w), sets)
    for f in range(30):
        for j, s in enumerate(sets):
            mask = np.zeros(400, dtype=bool)
            mask[s] = True
            expected = ks_statistic(w[f, mask], w[f, ~mask])
            assert abs(ks[f, j].item() - expected) < 1e-12
            assert abs(abs(score[f, j].item()) - expected) < 1e-12


def test_ks_pvalue_known_values_and_calibration():
    assert abs(kolmogorov_sf(1.358) - 0.05) < 1e-3  # the classic 5% critical value
    assert abs(kolmogorov_sf(1.628) - 0.01) < 1e-3
    # Under the null (random sets, random logits) about 5% of p-values fall below 0.05.
    rng = np.random.default_rng(3)
    out = tsea([torch.tensor(rng.normal(size=(3000, 400)), dtype=torch.float32)], [rng.choice(400, 30, replace=False)])
    frac = (out["ks_p_value"] < 0.05).mean()
    assert 0.025 < frac < 0.075
    # A set at the very top of a ranking is significant.
    assert ks_pvalue(1.0, 30, 370) < 1e-10


def test_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan])
    # m = 4: sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.06, 0.0533, 0.5 -> cummin from the end: 0.04, 0.0533, 0.0533, 0.5
    q = benjamini_hochberg(p)
    np.testing.assert_allclose(q[:4], [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert np.isnan(q[4])


def test_degenerate_sets_are_nan_and_log_score_is_signed():
    score, _ = enrichment_scores(torch.randn(2, 10), [[], list(range(10)), [1]])
    assert torch.isnan(score[:, :2]).all() and not torch.isnan(score[:, 2]).any()
    ls = log_score(np.array([0.5, -0.5, 0.0, 1.0]))
    np.testing.assert_allclose(ls[:3], [np.log(2), -np.log(2), 0.0])
    assert np.isfinite(ls[3]) and ls[3] > 20


def test_chunked_tsea_equals_one_chunk():
    rng = np.random.default_rng(4)
    w = torch.tensor(rng.normal(size=(40, 300)), dtype=torch.float32)
    sets = [rng.choice(300, 20, replace=False), rng.choice(300, 7, replace=False)]
    whole = tsea([w], sets)
    parts = tsea(list(w.split(7)), sets)
    for key in whole:
        np.testing.assert_array_equal(whole[key], parts[key])

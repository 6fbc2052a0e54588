import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from babelscope.analysis.logits import folded_unembedding
from babelscope.analysis.token_sets import TokenSet
from babelscope.analysis.tsea import beyond, log_score, write_tsea
from babelscope.models import load_model
from babelscope.report.dashboard import figure_html
from babelscope.report.plots import biased_features, manhattan, shape, tsea_scatter


def test_shape_joins_arabic_and_leaves_latin_alone():
    assert shape("Tim") == "Tim"
    shaped = shape("قال تيم")
    assert shaped != "قال تيم" and len(shaped) == len("قال تيم")
    assert any(0xFE70 <= ord(c) <= 0xFEFF for c in shaped)  # presentation forms: letters joined


def test_biased_features_and_plots(tmp_path):
    x = np.array([0.1, 2.5, 0.0, -1.0, np.nan])
    y = np.array([0.2, 0.1, 2.6, -1.2, 0.0])
    assert biased_features(np.nan_to_num(x), y, 2.0).tolist() == [1, 2]
    marked = tsea_scatter(x, y, "english_names", "أسماء عربية", tmp_path / "s.png", threshold=2.0)
    assert marked == [2, 1]  # largest gap first
    manhattan({"a": x, "b": y}, tmp_path / "m.png")
    for name in ("s.png", "m.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_html_escapes_and_embeds(tmp_path):
    html = figure_html("t <b>", b"\x89PNG", note="<script>x</script>",
                       table={"caption": "c", "header": ["feature", "v"], "rows": [[3, "<i>"]]},
                       feature_href="feature-{}.html")
    assert "<script>x" not in html and "&lt;script&gt;x" in html and "&lt;i&gt;" in html
    assert 'href="feature-3.html"' in html and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html  # nothing to fetch


def test_write_tsea_outputs_and_marks_a_planted_feature(tiny_model_dir, tmp_path):
    model, tok = load_model(tiny_model_dir)
    W_U, _ = folded_unembedding(model)
    vocab = len(tok)
    g = torch.Generator().manual_seed(0)
    d = torch.randn(W_U.shape[1], generator=g)
    order = torch.argsort(W_U[:vocab] @ d, descending=True).tolist()
    a_ids, b_ids = order[:20], order[-20:]
    # Feature 0 writes a direction whose 20 most promoted tokens are set A and 20 most suppressed are set B: it
    # must score +1 on A, -1 on B, and be marked in the A-vs-B scatter. The other features are random.
    W_dec = torch.randn(12, W_U.shape[1], generator=g)
    W_dec[0] = d
    hook = f"layers.{model.config.num_hidden_layers - 1}.resid_post"
    sets = [TokenSet("set_a", a_ids, "test"), TokenSet("set_b", b_ids, "test")]
    meta = write_tsea(model, tok, hook, W_dec, sets, tmp_path, scale="raw", threshold=1.0)
    t = pq.read_table(tmp_path / "tsea.parquet").to_pydict()
    assert len(t["feature"]) == 12 * 2 and set(t["set"]) == {"set_a", "set_b"}
    score = {(f, s): v for f, s, v in zip(t["feature"], t["set"], t["score"], strict=True)}
    assert score[(0, "set_a")] == pytest.approx(1.0) and score[(0, "set_b")] == pytest.approx(-1.0)
    assert meta["marked"][0] == 0 and meta["scatter_pair"] == ["set_b", "set_a"]  # x = second set, y = first
    np.testing.assert_allclose(t["log_score"], log_score(np.array(t["score"])))
    assert all(0 <= q <= 1 for q in t["q_value"]) and min(t["q_value"]) < 0.05
    for name in ("tsea.csv", "sets.json", "manhattan.png", "manhattan.html", "scatter_set_a_vs_set_b.png",
                 "scatter_set_a_vs_set_b.html", "meta.json"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "meta.json").read_text())
    assert "folded" in saved["logit_weights"] and saved["threshold"] == 1.0 and saved["plot_scale"] == "raw"
    # the default threshold of the log scale is the study's 2 points
    meta = write_tsea(model, tok, hook, W_dec, sets, tmp_path / "log")
    assert meta["threshold"] == 2.0 and meta["plot_scale"] == "log"


def test_null_baseline_scores_random_directions_like_features(tiny_model_dir, tmp_path):
    model, tok = load_model(tiny_model_dir)
    hook = f"layers.{model.config.num_hidden_layers - 1}.resid_post"
    d = model.config.hidden_size
    sets = [TokenSet("a", list(range(10, 60)), "t"), TokenSet("b", list(range(60, 110)), "t")]
    # Features that are exactly the null's random directions (same seed, same shape) must give the null's counts.
    R = torch.randn(64, d, generator=torch.Generator().manual_seed(3))
    R = R / R.norm(dim=1, keepdim=True)
    meta = write_tsea(model, tok, hook, R, sets, tmp_path, scale="raw", threshold=0.3, seed=3)
    assert meta["null"] == {"directions": 64, "seed": 3, "beyond_threshold": meta["beyond_threshold"]}
    assert sum(meta["beyond_threshold"].values()) == len(meta["marked"]) > 0
    assert "null" not in write_tsea(model, tok, hook, R, sets, tmp_path / "off", null=0)
    assert beyond(np.array([0.0, 0.0, 1.0, 0.5]), np.array([3.0, -3.0, 1.5, 0.5]), 2.0) == {"above": 1, "below": 1}


def test_write_tsea_rejects_a_bad_pair(tiny_model_dir, tmp_path):
    from babelscope.errors import UserError

    model, tok = load_model(tiny_model_dir)
    sets = [TokenSet("a", [5, 6], "t"), TokenSet("b", [7, 8], "t")]
    with pytest.raises(UserError, match="--scatter"):
        write_tsea(model, tok, "layers.1.resid_post", torch.randn(3, 32), sets, tmp_path, pair=["a", "zzz"])

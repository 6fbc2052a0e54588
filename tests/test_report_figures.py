import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

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


def _planted_model(tiny_model_dir, alpha=3.0):
    """The tiny model with an unembedding in which one direction u promotes set A and suppresses set B."""
    model, tok = load_model(tiny_model_dir)
    d = model.config.hidden_size
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    a_ids, b_ids = list(range(10, 40)), list(range(40, 70))
    with torch.no_grad():
        W = model.get_output_embeddings().weight
        W.copy_(torch.randn(W.shape, generator=g))
        W[a_ids] += alpha * u
        W[b_ids] -= alpha * u
    return model, tok, u, a_ids, b_ids


def test_write_tsea_tables_and_the_calibrated_test_find_a_planted_feature(tiny_model_dir, tmp_path):
    from babelscope.report.tsea import tsea_figures

    model, tok, u, a_ids, b_ids = _planted_model(tiny_model_dir)
    d = u.shape[0]
    g = torch.Generator().manual_seed(7)
    # Features 0-2 write (nearly) u; the other 29 are random directions.
    W_dec = torch.nn.functional.normalize(torch.randn(32, d, generator=g), dim=1)
    W_dec[:3] = torch.nn.functional.normalize(u + 0.05 * torch.randn(3, d, generator=g), dim=1)
    hook = f"layers.{model.config.num_hidden_layers - 1}.resid_post"
    sets = [TokenSet("set_a", a_ids, "test"), TokenSet("set_b", b_ids, "test")]
    acts = torch.randn(500, d, generator=g)
    meta = write_tsea(model, tok, hook, W_dec, sets, tmp_path, scale="raw", threshold=1.0, null_seeds=3,
                      null_directions=400, activations=acts)
    t = pq.read_table(tmp_path / "tsea.parquet").to_pydict()
    assert len(t["feature"]) == 32 * 2 and set(t["set"]) == {"set_a", "set_b"}
    score = {(f, s): v for f, s, v in zip(t["feature"], t["set"], t["score"], strict=True)}
    assert score[(0, "set_a")] > 0.8 and score[(0, "set_b")] < -0.8
    np.testing.assert_allclose(t["log_score"], log_score(np.array(t["score"])))
    assert "p_value" not in t and min(t["ks_q_value"]) < 0.05 and "Nearly any direction" in meta["ks_p_value"]
    assert meta["scatter_pair"] == ["set_b", "set_a"]  # x = second set, y = first
    null = meta["null"]
    assert null["order"] == ["untrained", "isotropic", "covariance", "activations"] and null["primary"] == "untrained"
    cal = pq.read_table(tmp_path / "calibrated.parquet").to_pydict()
    for family, r in null["families"].items():
        assert r["seeds"] == 3 and r["null_values"] == 1200 and len(r["threshold_count"]["set_a"]["per_seed"]) == 3
        flagged = sorted(f for f, fam, fav in zip(cal["feature"], cal["family"], cal["favours"], strict=True)
                         if fam == family and fav == "set_a")
        assert flagged[:3] == [0, 1, 2] and len(flagged) <= 4, (family, flagged)
        assert r["calibrated"]["set_a"]["count"] == len(flagged)
    nul = pq.read_table(tmp_path / "null.parquet").to_pydict()
    assert len(nul["gap"]) == 4 * 3 * 400
    saved = json.loads((tmp_path / "meta.json").read_text())
    assert "folded" in saved["logit_weights"] and saved["threshold"] == 1.0 and saved["plot_scale"] == "raw"

    figures = tsea_figures(tmp_path)
    assert {0, 1, 2} <= set(figures["marked"]) and "calibrated" in figures["marked_by"]
    for name in ("tsea.csv", "sets.json", "manhattan.png", "manhattan.html", "scatter_set_a_vs_set_b.png",
                 "scatter_set_a_vs_set_b.html", "gap_null.png", "figures.json", "calibrated.csv", "null.csv"):
        assert (tmp_path / name).exists(), name
    html = (tmp_path / "scatter_set_a_vs_set_b.html").read_text()
    assert "against each null family" in html and "covariance" in html and html.count("data:image/png") == 2
    # the default threshold of the log scale is the study's 2 points; no null without asking for one
    meta = write_tsea(model, tok, hook, W_dec, sets, tmp_path / "log", null=[])
    assert meta["threshold"] == 2.0 and meta["plot_scale"] == "log" and "null" not in meta
    assert "marked_by" in tsea_figures(tmp_path / "log")


def test_null_families_that_need_activations_say_so(tiny_model_dir, tmp_path):
    from babelscope.errors import UserError

    model, tok = load_model(tiny_model_dir)
    sets = [TokenSet("a", list(range(10, 60)), "t"), TokenSet("b", list(range(60, 110)), "t")]
    hook = f"layers.{model.config.num_hidden_layers - 1}.resid_post"
    with pytest.raises(UserError, match="activations, covariance need activations"):
        write_tsea(model, tok, hook, torch.randn(8, 32), sets, tmp_path)
    with pytest.raises(UserError, match="unknown null family"):
        write_tsea(model, tok, hook, torch.randn(8, 32), sets, tmp_path, null=["gaussian"])
    assert beyond(np.array([0.0, 0.0, 1.0, 0.5]), np.array([3.0, -3.0, 1.5, 0.5]), 2.0) == {"above": 1, "below": 1}


def test_write_tsea_rejects_a_bad_pair(tiny_model_dir, tmp_path):
    from babelscope.errors import UserError

    model, tok = load_model(tiny_model_dir)
    sets = [TokenSet("a", [5, 6], "t"), TokenSet("b", [7, 8], "t")]
    with pytest.raises(UserError, match="--scatter"):
        write_tsea(model, tok, "layers.1.resid_post", torch.randn(3, 32), sets, tmp_path, pair=["a", "zzz"])

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from babelscope.analysis.token_sets import TokenSet
from babelscope.analysis.tsea import beyond, log_score, write_tsea
from babelscope.models import load_model
from babelscope.report.dashboard import figure_html
from babelscope.report.plots import arabic_font, biased_features, manhattan, shape, tsea_scatter


def _ink(draw) -> np.ndarray:
    """The dark pixels (0-255) of a small Agg figure, cropped to their bounding box."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 1), dpi=100)
    FigureCanvasAgg(fig)
    draw(fig)
    fig.canvas.draw()
    a = 255 - np.asarray(fig.canvas.buffer_rgba())[..., 0].astype(np.float64)
    ys, xs = np.nonzero(a > 40)
    return a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two ink images aligned at their top-left corner (1: the same picture)."""
    h, w = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    A, B = np.zeros((h, w)), np.zeros((h, w))
    A[:a.shape[0], :a.shape[1]], B[:b.shape[0], :b.shape[1]] = a, b
    return float((A * B).sum() / np.sqrt((A * A).sum() * (B * B).sum()))


def _glyph_row(codepoints: list[int], size: float) -> np.ndarray:
    """The reference: the given glyphs drawn one by one, left to right, each at the previous one's advance
    (single glyphs, so no layout engine can join or reorder them)."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font, LoadFlags
    from matplotlib.patches import PathPatch
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D

    prop = FontProperties(family=arabic_font())
    font = FT2Font(findfont(prop))
    font.set_size(size, 72)

    def draw(fig):
        x = 0.0
        for cp in codepoints:
            glyph = font.load_char(cp, LoadFlags.NO_HINTING)
            path = TextPath((0, 0), chr(cp), prop=prop, size=size)
            path = path.transformed(Affine2D().translate(x, 0).scale(fig.dpi / 72).translate(20, 30))
            fig.add_artist(PathPatch(path, transform=None, lw=0, fc="black"))
            x += glyph.linearHoriAdvance / 65536
    return _ink(draw)


def test_arabic_in_figures_is_drawn_joined_and_right_to_left():
    from matplotlib.font_manager import FontProperties

    assert shape("Tim (log-scale enrichment)") == "Tim (log-scale enrichment)"
    word = "جاستن"  # jeem alef seen teh noon
    # Left to right on the page: final noon, medial teh, initial seen, final alef, initial jeem.
    right = [0xFEE6, 0xFE98, 0xFEB3, 0xFE8E, 0xFE9F]
    prop = FontProperties(family=arabic_font())
    drawn = _ink(lambda fig: fig.text(0.05, 0.3, shape(word), fontproperties=prop, fontsize=40))
    assert _similarity(drawn, _glyph_row(right, 40)) > 0.8
    # the two ways it went wrong: reversed (shaped twice) and unjoined letters left to right
    assert _similarity(drawn, _glyph_row(right[::-1], 40)) < 0.6
    assert _similarity(drawn, _glyph_row([ord(c) for c in word], 40)) < 0.6


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

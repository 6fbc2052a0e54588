"""The analysis commands end to end on a saved SAE: analyze features, analyze tsea, dashboard."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from babelscope.cli import main
from babelscope.corpus import write_corpus
from helpers import save_spread_sae

HOOK = "layers.1.mlp.act"
pytestmark = pytest.mark.slow


def _run(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0, argv


@pytest.fixture(scope="module")
def saved(tiny_model_dir, bilingual_records, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    save_spread_sae(tiny_model_dir, out / "sae", HOOK)
    write_corpus(out / "corpus.jsonl", bilingual_records[:80])
    return out


def test_analyze_features_writes_the_interface_tables(saved, tiny_model_dir):
    out = saved / "features"
    _run(["analyze", "features", "--model", str(tiny_model_dir), "--sae", str(saved / "sae"), "--data",
          str(saved / "corpus.jsonl"), "--tokens", "1500", "--out", str(out), "--context", "32",
          "--docs-per-shard", "16", "--device", "cpu"])
    meta = json.loads((out / "meta.json").read_text())
    for key in ("model", "sae", "hook", "data", "tokens", "n_docs", "n_features", "label_field", "labels",
                "threshold_frac", "tokenizer"):
        assert key in meta, key
    assert meta["tokens"] == 1500 and meta["n_features"] == 32 and meta["labels"] == ["ar", "en"]
    assert meta["hook"] == HOOK and meta["threshold_frac"] == 0.7
    assert not (out / "cache").exists()  # removed once the tables are written (--keep-cache keeps it)
    feats = pq.read_table(out / "features.parquet").to_pydict()
    assert {"feature", "n_active", "frequency", "max_act", "mean_act", "n_above", "n_spans", "span_tokens",
            "hist", "hist_max"} <= set(feats)
    assert len(feats["hist"][0]) == 50
    attr = pq.read_table(out / "attributions.parquet").to_pydict()
    assert set(attr) == {"feature", "token_id", "label", "count"} and sum(attr["count"]) == sum(feats["n_above"])
    ex = pq.read_table(out / "examples.parquet").to_pydict()
    assert {"feature", "kind", "interval", "rank", "doc", "record_id", "label", "tokens", "acts", "pos"} <= set(ex)
    # a second run with the same inputs finds the store complete and leaves it alone
    before = (out / "features.parquet").stat().st_mtime_ns
    _run(["analyze", "features", "--model", str(tiny_model_dir), "--sae", str(saved / "sae"), "--data",
          str(saved / "corpus.jsonl"), "--tokens", "1500", "--out", str(out), "--context", "32",
          "--docs-per-shard", "16", "--device", "cpu"])
    assert (out / "features.parquet").stat().st_mtime_ns == before
    # the bilingual analysis reads this store as it is
    from babelscope.analysis.languages import read_store

    m, f, a = read_store(out)
    assert m["labels"] == ["ar", "en"] and len(f["feature"]) == 32 and len(a["count"]) == len(attr["count"])


def test_analyze_tsea_and_dashboard_from_the_cli(saved, tiny_model_dir, tmp_path):
    pytest.importorskip("babelscope.corpus.storyworld")
    words = tmp_path / "animals.txt"
    words.write_text("cat\ndog\n", encoding="utf-8")
    out = saved / "tsea"
    _run(["analyze", "tsea", "--model", str(tiny_model_dir), "--sae", str(saved / "sae"), "--sets",
          f"english_names,arabic_names,name_then_punct,{words}", "re:^ [a-z]+$", "--data",
          str(saved / "corpus.jsonl"), "--out", str(out), "--device", "cpu"])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sets"] == ["english_names", "arabic_names", "name_then_punct", "animals", "re:^ [a-z]+$"]
    assert meta["scatter_pair"] == ["arabic_names", "english_names"] and meta["threshold"] == 2.0
    # the tiny test vocabulary spells no Arabic name as one token: the set is reported empty, not silently NaN
    assert set(meta["empty_sets"]) <= {"arabic_names", "name_then_punct"}
    sets = {s["name"]: s for s in json.loads((out / "sets.json").read_text())["sets"]}
    assert sets["english_names"]["n_covered"] >= 1 and "rule" in sets["name_then_punct"]
    assert "null_skipped" in meta  # an empty set of the pair: no null to test against, and it says so
    t = pq.read_table(out / "tsea.parquet").to_pydict()
    assert len(t["feature"]) == 32 * 5
    # a pair of covered sets: every feature tested against two null families, one of them built from --data
    nulled = saved / "tsea_null"
    _run(["analyze", "tsea", "--model", str(tiny_model_dir), "--sae", str(saved / "sae"), "--sets", "english_names",
          "re:^ [a-z]+$", "--data", str(saved / "corpus.jsonl"), "--out", str(nulled), "--null", "untrained",
          "covariance", "--null-seeds", "2", "--null-tokens", "300", "--device", "cpu"])
    null = json.loads((nulled / "meta.json").read_text())["null"]
    assert null["order"] == ["untrained", "covariance"] and null["families"]["covariance"]["activation_vectors"] == 300
    assert len(pq.read_table(nulled / "calibrated.parquet")) == 32 * 2
    assert (nulled / "gap_null.png").exists() and (nulled / "figures.json").exists()
    site = saved / "site"
    _run(["dashboard", "--features", str(saved / "features"), "--out", str(site), "--tsea", str(out),
          "--limit", "5", "--device", "cpu"])
    pages = sorted(site.glob("feature-*.html"))
    assert len(pages) == 5
    data = json.loads((site / "data" / f"{pages[0].stem}.json").read_text())
    assert data["logits"] and data["has_loss"] and [s["set"] for s in data["tsea"]] == meta["sets"]
    index = json.loads((site / "data" / "index.json").read_text())
    assert index["sets"] == meta["sets"] and len(index["rows"]) == 5
    dens = [r["density"] for r in index["rows"]]
    assert dens == sorted(dens, reverse=True)  # --limit keeps the densest
    assert np.isfinite([r["tsea"]["english_names"] for r in index["rows"]]).all()

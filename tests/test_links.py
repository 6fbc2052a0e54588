"""Every link of every generated page resolves: the crawler, and a small end-to-end run crawled (feature store,
TSEA pages, a dashboard site built for a few features with the TSEA pages copied in, and `browse`)."""

import json
import re

import pytest

from babelscope.corpus import write_corpus
from babelscope.report.links import dead_links, link_features, page_links
from helpers import run_cli, save_spread_sae

HOOK = "layers.1.mlp.act"


def test_dead_links_finds_missing_targets_and_ignores_external_ones(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "sub" / "index.html").write_text("")
    rows = {"rows": [{"feature": 1}, {"feature": 2}]}
    (tmp_path / "feature-1.html").write_text("")
    page = tmp_path / "index.html"
    page.write_text(f'<a href="a.png">ok</a><img src="a.png"><a href="sub/">dir</a><a href="gone.html#x">dead</a>'
                    f'<a href="https://example.org">ext</a><img src="data:image/png;base64,AA"><a href="#top">t</a>'
                    f'<script type="application/json" id="data">{json.dumps(rows)}</script>')
    assert sorted(ref for _, ref in dead_links(tmp_path)) == ["feature-2.html", "gone.html#x"]
    assert "feature-1.html" in page_links(page.read_text())


def test_link_features_links_only_where_a_page_exists():
    html = '<td data-feature="3">#3</td><td data-feature="12"><a href="old.html">#12</a></td><td>#4</td>'
    out = link_features(html, lambda f: f"../feature-{f}.html" if f == 12 else None)
    assert out == '<td data-feature="3">#3</td><td data-feature="12"><a href="../feature-12.html">#12</a></td><td>#4</td>'


@pytest.fixture(scope="module")
def run(tiny_model_dir, bilingual_records, tmp_path_factory):
    """A small end-to-end run of the analysis commands: a saved SAE, a feature store, TSEA and a site built for
    three scattered features with the TSEA pages."""
    out = tmp_path_factory.mktemp("links")
    save_spread_sae(tiny_model_dir, out / "sae", HOOK)
    write_corpus(out / "corpus.jsonl", bilingual_records[:60])
    (out / "animals.txt").write_text("cat\ndog\nsun\nmat\n", encoding="utf-8")
    common = ["--model", tiny_model_dir, "--sae", out / "sae", "--device", "cpu"]
    assert run_cli("analyze", "features", *common, "--data", out / "corpus.jsonl", "--tokens", "1200",
                   "--out", out / "features", "--context", "32") == 0
    # two sets every tiny vocabulary has, so the scatter marks features and both pages list feature ids
    assert run_cli("analyze", "tsea", *common, "--sets", f"{out / 'animals.txt'}", "re:^ [a-z]+$", "--out",
                   out / "tsea", "--scale", "raw", "--threshold", "0.05", "--null", "none") == 0
    feats = json.loads((out / "features" / "meta.json").read_text())
    assert feats["n_features"] == 32
    from babelscope.analysis.store import FeatureStore

    alive = [int(f) for f, n in enumerate(FeatureStore(out / "features").features()["n_active"]) if n > 0]
    pages = alive[::max(1, len(alive) // 3)][:3]
    assert run_cli("dashboard", "--features", out / "features", "--out", out / "site", "--tsea", out / "tsea",
                   "--only", ",".join(map(str, pages)), "--no-loss", "--device", "cpu") == 0
    return out, pages


@pytest.mark.slow
def test_every_generated_page_links_only_to_files_that_exist(run):
    out, pages = run
    html = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    assert {"tsea/manhattan.html", "site/index.html", "site/tsea/manhattan.html"} <= set(html)
    assert any(h.startswith("tsea/scatter_") for h in html) and any(h.startswith("site/tsea/scatter_") for h in html)
    assert dead_links(out) == []
    # prev/next go to the neighbouring pages that were built, not to f - 1 and f + 1
    first, mid, last = (out / "site" / f"feature-{f}.html" for f in pages)
    text = mid.read_text()
    assert f'href="feature-{pages[0]}.html"' in text and f'href="feature-{pages[2]}.html"' in text
    assert "← #" not in first.read_text() and "→" not in last.read_text()
    # the TSEA pages: ids marked in tsea/, linked in the site only where a page was built
    scatter = next((out / "site" / "tsea").glob("scatter_*.html")).read_text()
    linked = {int(m) for m in re.findall(r'href="\.\./feature-(\d+)\.html"', scatter)}
    marked = {int(m) for m in re.findall(r'data-feature="(\d+)"', scatter)}
    assert linked == marked & set(pages) and marked - set(pages)
    assert not re.search(r"<a href=\"feature-", next((out / "tsea").glob("scatter_*.html")).read_text())
    assert 'href="tsea/manhattan.html"' in (out / "site" / "index.html").read_text()


@pytest.mark.slow
def test_browse_with_tsea_links_every_feature(run):
    from fastapi.testclient import TestClient

    from babelscope.report.browse import create_app

    out, _ = run
    client = TestClient(create_app(out / "features", tsea_dir=out / "tsea", use_model=False))
    index = client.get("/")
    tsea_links = re.findall(r'href="(tsea/[^"]+)"', index.text)
    assert "tsea/manhattan.html" in tsea_links
    for link in tsea_links:
        page = client.get(f"/{link}")
        assert page.status_code == 200
        ids = re.findall(r'href="\.\./(feature-\d+\.html)"', page.text)
        assert ids and len(ids) == len(re.findall(r"data-feature=", page.text))  # every id linked
        for target in [*ids, "index.html"]:
            assert client.get(f"/{target}").status_code == 200, target
    page = client.get("/feature-5.html").text
    assert 'href="feature-4.html"' in page and 'href="feature-6.html"' in page

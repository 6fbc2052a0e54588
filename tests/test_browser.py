"""The feature browser in a real browser: headless Chromium (Debian's) drives `babelscope browse`."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_report_dashboard import build_demo_site

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _require_browser():
    if CHROMIUM.exists():
        return
    if os.environ.get("BABELSCOPE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{CHROMIUM} is missing and BABELSCOPE_REQUIRE_BROWSER=1")
    pytest.skip(f"{CHROMIUM} is missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir, bilingual_records, tmp_path_factory):
    _require_browser()
    out = tmp_path_factory.mktemp("browse")
    _, site, _ = build_demo_site(tiny_model_dir, bilingual_records, out)
    port = _free_port()
    env = {**os.environ, "BABELSCOPE_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "babelscope.cli", "browse", str(site), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 30
    while True:
        try:
            if httpx.get(f"{base}/api/meta", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"browse did not start: {proc.stdout.read().decode(errors='replace')}")
        time.sleep(0.2)
    yield base, site
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _feature_with(site: Path, want) -> int:
    for path in sorted((site / "data").glob("feature-*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        examples = data["top_examples"] + [x for iv in data["intervals"] for x in iv["examples"]]
        if any(want(ex) for ex in examples):
            return data["feature"]
    pytest.fail("no feature page has the example this test needs")


def test_index_search_rtl_and_no_script_injection(server, tmp_path):
    from playwright.sync_api import sync_playwright

    base, site = server
    xss_feature = _feature_with(site, lambda ex: "script>" in ex["text"])
    ar_feature = _feature_with(site, lambda ex: ex["label"] == "ar")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))

        page.goto(f"{base}/")
        rows = page.locator("#rows tr")
        total = rows.count()
        assert total > 3
        page.fill("#q", str(ar_feature))
        page.wait_for_function("document.querySelectorAll('#rows tr').length === 1")
        assert rows.first.get_attribute("data-feature") == str(ar_feature)
        page.fill("#q", "")
        page.wait_for_function(f"document.querySelectorAll('#rows tr').length === {total}")
        page.click("th:has-text('density %')")  # sort by density, densest first
        dens = [float(x) for x in page.locator("#rows tr td:nth-child(2)").all_inner_texts()]
        assert dens == sorted(dens, reverse=True)
        page.screenshot(path=str(tmp_path / "index.png"))

        page.goto(f"{base}/feature-{ar_feature}.html")
        assert page.locator(".example[lang=ar]").count() > 0
        ar = page.locator(".example[lang=ar]").first
        assert ar.evaluate("el => getComputedStyle(el).direction") == "rtl"
        en = page.locator(".example[lang=en]")
        if en.count():
            assert en.first.evaluate("el => getComputedStyle(el).direction") == "ltr"
        page.screenshot(path=str(tmp_path / "feature_ar.png"), full_page=True)

        page.goto(f"{base}/feature-{xss_feature}.html")
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("script").count() == 0
        assert "script>" in page.inner_text("body")  # the corpus's markup is shown as text
        page.screenshot(path=str(tmp_path / "feature_xss.png"), full_page=True)

        api = page.request.get(f"{base}/api/search?q={ar_feature}").json()
        assert [r["feature"] for r in api["rows"]] == [ar_feature]
        browser.close()
    assert errors == []
    assert (tmp_path / "index.png").stat().st_size > 1000


def test_report_page_shows_claims_a_figure_and_rtl_samples(tmp_path):
    """The recipe report, opened from disk (offline): the claims tables, a figure that loads, Arabic samples
    right to left, corpus text shown as text."""
    from playwright.sync_api import sync_playwright

    from babelscope.recipes.study_a import claim
    from babelscope.report.plots import _pyplot
    from babelscope.report.report import ReportConfig, write_report

    _require_browser()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "curve.png")
    plt.close(fig)
    summary = {"study": "A", "title": "Study A", "claims": [
        claim("A1", "names <img src=x onerror=alert(1)>", "qualitative", {"value": -0.4, "low": -0.5, "high": -0.3},
              "negative"),
        claim("A2", "tags", "qualitative", None, "negative")]}
    (tmp_path / "a.json").write_text(json.dumps(summary))
    losses = tmp_path / "losses.json"
    losses.write_text(json.dumps({"samples": {"base": ["كان هناك ولد صغير اسمه تيم"]}}, ensure_ascii=False))
    page_path = write_report(ReportConfig(out=str(tmp_path / "report"), studies=[str(tmp_path / "a.json")],
                                          figures={"A": [str(tmp_path / "curve.png")]}, samples=str(losses)))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))
        page.goto(page_path.resolve().as_uri())
        rows = page.locator("table.claims[data-study=A] tr[data-claim]")
        assert rows.count() == 2
        assert rows.first.locator("td.verdict").inner_text() == "reproduced"
        assert "onerror" in rows.first.inner_text()  # shown as text, not run
        img = page.locator("figure img").first
        assert img.evaluate("el => el.complete && el.naturalWidth > 0")
        sample = page.locator("p.example").first
        assert sample.evaluate("el => getComputedStyle(el).direction") == "rtl"
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 1000

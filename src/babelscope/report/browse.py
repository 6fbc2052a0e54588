"""The local feature browser: a site from `babelscope dashboard` (served as files) or a feature store (pages
rendered on demand), plus a small JSON API.

    GET /                          the index (search by id, token or TSEA score; sort by density/enrichment)
    GET /feature-{id}.html         a feature page
    GET /tsea/{page}.html          with --tsea on a feature store: the TSEA figure pages, every id linked
    GET /api/meta                  what the site shows (model, SAE, hook, tokens, number of features)
    GET /api/feature/{id}          a feature's page data as JSON
    GET /api/search?q=...&limit=N  index rows matching q (same rules as the index's search box)

FastAPI + uvicorn rather than http.server: both are already babelscope dependencies (the model server uses
them), routes get typed and validated parameters (a non-integer feature id is a 422, not a crash),
StaticFiles refuses paths outside the site, and the JSON API is a few lines. It binds 127.0.0.1 unless told
otherwise: the pages show corpus text, which should not be published to a network by accident.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from babelscope.errors import UserError
from babelscope.files import dumps
from babelscope.settings import Settings, opt

_FILTER = re.compile(r"^([\w.-]+)\s*([<>])\s*(-?[\d.]+)$")


def search_rows(rows: list[dict], q: str, sets: list[str], limit: int = 50) -> list[dict]:
    """Index rows matching `q`: a feature id, a substring of its tokens / top logits, or `set>x` / `set<x`."""
    q = (q or "").strip()
    m = _FILTER.match(q)
    if m and m.group(1) in sets:
        name, op, x = m.group(1), m.group(2), float(m.group(3))

        def ok(r: dict) -> bool:
            v = (r.get("tsea") or {}).get(name)
            return v is not None and (v > x if op == ">" else v < x)

        hits = sorted((r for r in rows if ok(r)), key=lambda r: -(r["tsea"][name]) if op == ">" else r["tsea"][name])
    elif q.isdigit():
        hits = [r for r in rows if r["feature"] == int(q)]
    else:
        s = q.lower()
        hits = [r for r in rows if s in (r.get("top_tokens") or "").lower() or s in (r.get("top_logits") or "").lower()]
    return hits[:max(limit, 0)]


def create_app(path: str | Path, *, model_dir: str | Path | None = None, sae_dir: str | Path | None = None,
               use_model: bool = True, tsea_dir: str | Path | None = None, device: str = "cpu",
               force: bool = False) -> Any:
    """The FastAPI app for a site directory (has index.html) or a feature store directory (has meta.json)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

    path = Path(path)
    app = FastAPI(title="babelscope feature browser", docs_url=None, redoc_url=None, openapi_url=None)

    if (path / "index.html").exists() and (path / "data" / "index.json").exists():
        from fastapi.staticfiles import StaticFiles

        from babelscope.inputs import read_json

        index = read_json(path / "data" / "index.json", "index.json")

        def feature_json(f: int) -> dict:
            p = path / "data" / f"feature-{f}.json"
            if not p.exists():
                raise HTTPException(404, f"no page for feature {f} in this site")
            return json.loads(p.read_text(encoding="utf-8"))

        rows, sets, meta = index["rows"], index.get("sets", []), index.get("meta", {})
        static = StaticFiles(directory=str(path), html=True)
        dynamic = None
    elif (path / "meta.json").exists():
        from babelscope.report.dashboard import Dashboard, load_for_site, read_tsea

        store, tokenizer, model, sae = load_for_site(path, model_dir=model_dir, sae_dir=sae_dir, device=device,
                                                     need_model=use_model, force=force)
        dash = Dashboard(store, tokenizer, model=model, sae=sae, tsea=read_tsea(tsea_dir))
        rows = dash.index_rows()
        tsea_pages = _tsea_pages(tsea_dir, dash.F)
        sets = dash.tsea["sets"] if dash.tsea else []
        meta = {k: store.meta.get(k) for k in ("model", "sae", "hook", "tokens", "n_features")}

        @lru_cache(maxsize=256)
        def cached(f: int) -> tuple[str, str]:
            data = dash.feature_data(f)
            return dumps(data), dash.feature_html(data)

        def feature_json(f: int) -> dict:
            if not 0 <= f < dash.F:
                raise HTTPException(404, f"no feature {f} (the store has {dash.F})")
            return json.loads(cached(f)[0])

        static = None
        dynamic = (dash, cached)
    else:
        raise UserError("neither a dashboard site (index.html + data/) nor a feature store (meta.json)", path=path)

    @app.get("/api/meta")
    def api_meta() -> dict[str, Any]:
        return {**meta, "sets": sets, "n_pages": len(rows)}

    @app.get("/api/feature/{feature}")
    def api_feature(feature: int) -> JSONResponse:
        return JSONResponse(feature_json(feature))

    @app.get("/api/search")
    def api_search(q: str = "", limit: int = 50) -> dict[str, Any]:
        hits = search_rows(rows, q, sets, limit)
        return {"q": q, "count": len(hits), "rows": hits}

    if dynamic is not None:
        dash, cached = dynamic
        index_html = dash.index_html(rows, [(label, f"tsea/{name}") for name, (label, _) in tsea_pages.items()])

        @app.get("/tsea/{name}", response_class=HTMLResponse)
        def tsea_page(name: str) -> str:
            if name not in tsea_pages:
                raise HTTPException(404, f"no TSEA page {name}")
            return tsea_pages[name][1]

        @app.get("/", response_class=HTMLResponse)
        @app.get("/index.html", response_class=HTMLResponse)
        def index_page() -> str:
            return index_html

        @app.get("/feature-{feature}.html", response_class=HTMLResponse)
        def feature_page(feature: int) -> str:
            if not 0 <= feature < dash.F:
                raise HTTPException(404, f"no feature {feature}")
            return cached(feature)[1]
    else:
        @app.get("/")
        def root() -> RedirectResponse:
            return RedirectResponse("/index.html")

        app.mount("/", static, name="site")
    return app


def _tsea_pages(tsea_dir: str | Path | None, n_features: int) -> dict[str, tuple[str, str]]:
    """{file name: (title, html)} of a TSEA directory's figure pages, every feature id linked to its page."""
    from babelscope.report.links import add_header_link, link_features, page_title

    pages = {}
    for page in sorted(Path(tsea_dir).glob("*.html")) if tsea_dir else []:
        html = link_features(page.read_text(encoding="utf-8"),
                             lambda f: f"../feature-{f}.html" if 0 <= f < n_features else None)
        pages[page.name] = (page_title(page), add_header_link(html, "all features", "../index.html"))
    return pages


@dataclass(kw_only=True)
class BrowseConfig(Settings):
    """`babelscope browse`: a local feature browser (pages + JSON API)."""

    path: str = opt(help="a dashboard site or a feature store directory", positional=True,
                    metavar="SITE_OR_FEATURES_DIR")
    host: str = opt("127.0.0.1", "interface to bind (127.0.0.1: this machine only)")
    port: int = opt(8000, "TCP port", gt=0, le=65535)
    model: str | None = opt(None, "for a feature store: model directory (default: the store's)")
    sae: str | None = opt(None, "for a feature store: SAE directory (default: the store's)")
    tsea: str | None = opt(None, "for a feature store: an `analyze tsea` output directory")
    use_model: bool = opt(True, "for a feature store: no logits or loss underlines", flag="--no-model")
    device: str = opt("cpu", "cpu, cuda or auto")
    force: bool = opt(False, "for a feature store: use the SAE with a model other than the one it was trained on")


def serve(path: str | Path, *, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> None:
    """Run the browser until interrupted."""
    import uvicorn

    app = create_app(path, **kwargs)
    print(f"babelscope browser: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")

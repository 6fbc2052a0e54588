"""Feature dashboards: one static HTML page per feature and a searchable index, from a feature store.

A page follows the layout the field knows (Anthropic's feature browser, SAEDashboard, Study A's Figure 5):
the activation density in the histogram's title, a 50-bin histogram of non-zero activations, the logit-weight
histogram and the 10 most positive and negative logit tokens, the 20 top activating examples (+-5 tokens),
and about 10 equal-width activation intervals with a few examples each. Every token is coloured by the
feature's activation and underlined by the feature's loss effect on it (`analysis.ablation`): blue where the
feature lowers the loss of that (predicted) token, red where it raises it; the colour scale is a page's largest
effect on the tokens of its contexts up to the last one it shows. The effects of many pages' features are
computed side by side (`prepare_losses`), each forward stopping after the last token shown.

Pages work offline (inline CSS and SVG, one small inline script on the index, nothing from a CDN). All corpus
and model text goes through Jinja2's autoescaping; the index's data sits in a <script type="application/json">
block with `<`, `>`, `&` escaped, and the script builds the table with textContent. Tokens are decoded through
the tokenizer (`report.text.TokenText`), and every example carries dir="rtl" or "ltr" from its first strongly
directional character, so Arabic reads right to left beside English.

The site also holds the JSON the browser's API serves: data/index.json and data/feature-N.json.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.analysis.store import FeatureStore
from babelscope.errors import UserError
from babelscope.files import dumps, strict
from babelscope.report.text import TokenText, direction, script_json, visible
from babelscope.settings import Settings, opt

TEMPLATES = Path(__file__).parent / "templates"
PAGES_PER_ABLATION = 64  # features whose ablations share forwards (their contexts' activations are held meanwhile)


def _write(path: Path, text: str) -> None:
    """Write via a temporary name and rename (a page is never seen half-written); no fsync: a site has many
    small files and can always be rebuilt."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=False)


def svg_histogram(counts: Sequence[float], lo: float, hi: float, *, width: int = 340, height: int = 110,
                  color: str = "#ff8c00", split_at_zero: bool = False) -> str:
    """A bar chart as inline SVG (numbers only, no text from the corpus), with min/max ticks."""
    counts = np.asarray(counts, dtype=np.float64)
    n = len(counts)
    top = counts.max() if n and counts.max() > 0 else 1.0
    plot_h = height - 16
    bw = width / max(n, 1)
    bars = []
    for i, c in enumerate(counts):
        h = plot_h * c / top
        x0 = lo + (hi - lo) * i / max(n, 1)
        fill = ("#1f77b4" if x0 >= 0 else "#d62728") if split_at_zero else color
        bars.append(f'<rect x="{i * bw:.2f}" y="{plot_h - h:.2f}" width="{max(bw - 0.5, 0.5):.2f}" '
                    f'height="{h:.2f}" fill="{fill}"><title>{int(c)}</title></rect>')
    ticks = (f'<text x="0" y="{height - 3}">{lo:.3g}</text>'
             f'<text x="{width}" y="{height - 3}" text-anchor="end">{hi:.3g}</text>')
    if split_at_zero and lo < 0 < hi:
        x = width * (0 - lo) / (hi - lo)
        ticks += (f'<line x1="{x:.2f}" x2="{x:.2f}" y1="0" y2="{plot_h}" stroke="#333" stroke-width="0.6"/>'
                  f'<text x="{x:.2f}" y="{height - 3}" text-anchor="middle">0</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {height}" '
            f'role="img">{"".join(bars)}{ticks}</svg>')


def read_tsea(tsea_dir: str | Path | None) -> dict[str, Any] | None:
    """{"sets": [...], "score": [F, S], "log_score": [F, S], "q": [F, S], "pair": the scatter's [x, y] sets} from
    an `analyze tsea` output directory (None if none); q is the KS q-value (a set's logits vs the rest's), not the
    calibrated test against null directions."""
    if tsea_dir is None:
        return None
    from babelscope.inputs import check_dir, read_json, read_parquet

    path = check_dir(tsea_dir, "TSEA directory") / "tsea.parquet"
    if not path.exists():
        raise UserError("no tsea.parquet here; run `babelscope analyze tsea` first", path=tsea_dir)
    t = read_parquet(path)
    feature = t.column("feature").to_numpy()
    names = t.column("set").to_pylist()
    sets = list(dict.fromkeys(names))
    F = int(feature.max()) + 1 if len(feature) else 0
    col = np.array([sets.index(s) for s in names], dtype=np.int64)
    out: dict[str, Any] = {"sets": sets}
    q_name = "ks_q_value" if "ks_q_value" in t.column_names else "q_value"  # older outputs: q_value
    for key, column in (("score", "score"), ("log_score", "log_score"), ("q", q_name)):
        values = np.full((F, len(sets)), np.nan)
        if column in t.column_names:
            values[feature, col] = t.column(column).to_numpy(zero_copy_only=False)
        out[key] = values
    meta = Path(tsea_dir) / "meta.json"
    out["pair"] = read_json(meta, "meta.json").get("scatter_pair") if meta.is_file() else None
    return out


class Dashboard:
    """Builds page data and HTML for the features of one store; model + SAE add logits and loss underlines."""

    def __init__(self, store: FeatureStore, tokenizer, *, model=None, sae=None, tsea: dict | None = None,
                 loss: bool = True, logit_k: int = 10, source: str = "", pages: Sequence[int] | None = None,
                 ablation_batch: int = 16):
        """`pages`: the features that get a page (prev/next links stay among them); None: every feature."""
        self.store = store
        self.pages = None if pages is None else sorted(set(int(f) for f in pages))
        self.meta = store.meta
        self.text = TokenText(tokenizer)
        self.tokenizer = tokenizer
        self.model, self.sae = model, sae
        self.hook = getattr(getattr(sae, "cfg", None), "hook_name", None) or self.meta.get("hook")
        self.tsea = tsea
        self.loss = loss and model is not None and sae is not None
        self.logit_k = logit_k
        self.source = source or f"{self.meta.get('model', '')} · {self.meta.get('hook', '')}"
        self.feats = store.features()
        self.F = len(self.feats["feature"])
        self._logits: dict[int, dict] = {}
        self._contexts: dict[int, dict] | None = None
        self._clean: dict[int, np.ndarray] = {}
        self._deltas: dict[int, dict[int, np.ndarray]] = {}
        self.ablation_batch = ablation_batch
        self._attr_summary()
        self.env = _env()

    def _token(self, token_id: int) -> str:
        return visible(self.text.token(token_id))

    # -- per-feature summaries of the attribution table
    def _attr_summary(self, per_feature: int = 8) -> None:
        """Per feature: its most frequent activating tokens and its activating occurrences per label."""
        from babelscope.analysis.aggregate import group_rank

        attr = self.store.attributions()
        f = np.asarray(attr["feature"], dtype=np.int64)
        t = np.asarray(attr["token_id"], dtype=np.int64)
        c = np.asarray(attr["count"], dtype=np.int64)
        self._top_tokens: dict[int, list[tuple[int, int]]] = {}
        self._label_counts: dict[int, dict[str, int]] = {}
        if not len(f):
            return
        V = int(t.max()) + 1
        keys, inv = np.unique(f * V + t, return_inverse=True)
        sums = np.bincount(inv, weights=c).astype(np.int64)
        kf, kt = keys // V, keys % V
        order = np.lexsort((kt, -sums, kf))
        keep = order[group_rank(kf[order]) < per_feature]
        for fi, ti, ci in zip(kf[keep].tolist(), kt[keep].tolist(), sums[keep].tolist(), strict=True):
            self._top_tokens.setdefault(fi, []).append((ti, ci))
        names, codes = np.unique(np.asarray(attr["label"], dtype=str), return_inverse=True)
        per = np.bincount(f * len(names) + codes, weights=c, minlength=(int(f.max()) + 1) * len(names))
        per = per.reshape(-1, len(names)).astype(np.int64)
        for fi in np.flatnonzero(per.sum(1)).tolist():
            self._label_counts[fi] = {str(names[j]): int(per[fi, j]) for j in np.flatnonzero(per[fi]).tolist()}

    # -- logit weights
    def _logit_rows(self, features: Sequence[int]) -> None:
        """Compute (chunked) and cache the logit summaries of `features`."""
        if self.model is None or self.sae is None:
            return
        from babelscope.analysis.logits import folded_unembedding, iter_logit_weights, top_bottom

        todo = [f for f in features if f not in self._logits]
        if not todo:
            return
        _, note = folded_unembedding(self.model)
        W_dec = self.sae.W_dec.detach()[np.asarray(todo)]
        vocab = len(self.tokenizer)
        start = 0
        for chunk in iter_logit_weights(self.model, self.hook, W_dec, chunk=256, vocab_size=vocab):
            for j in range(chunk.shape[0]):
                w = chunk[j]
                tb = top_bottom(w, self.logit_k)
                lo, hi = float(w.min()), float(w.max())
                counts = np.histogram(w.numpy(), bins=40, range=(lo, hi if hi > lo else lo + 1))[0]
                self._logits[todo[start + j]] = {
                    "note": f"W_U W_dec[f] ({note})",
                    "top": [{"id": i, "text": self._token(i), "value": v}
                            for i, v in zip(tb["top_ids"], tb["top_values"], strict=True)],
                    "bottom": [{"id": i, "text": self._token(i), "value": v}
                               for i, v in zip(tb["bottom_ids"], tb["bottom_values"], strict=True)],
                    "hist": {"counts": counts.tolist(), "lo": lo, "hi": hi},
                }
            start += chunk.shape[0]

    # -- loss effects
    def prepare_losses(self, features: Sequence[int]) -> None:
        """Compute the loss underlines of many features' examples at once (`analysis.ablation.ablation_deltas`:
        every forward holds the ablations of several (feature, context) pairs); `feature_data` then reads them."""
        if not self.loss:
            return
        from babelscope.analysis.ablation import ablation_deltas

        todo = [f for f in dict.fromkeys(features) if f not in self._deltas]
        if not todo:
            return
        if self._contexts is None:
            self._contexts = self.store.contexts()
        until: dict[tuple[int, int], int] = {}  # a page shows each example's window: the forward stops after it
        for f in todo:
            for e in self.store.examples(f):
                key = (f, int(e["ctx"]))
                until[key] = max(until.get(key, 0), int(e["window_start"]) + len(e["tokens"]))
        pairs = list(until)
        deltas = ablation_deltas(self.model, self.hook, self.sae, pairs,
                                 {c: self._contexts[c]["tokens"] for _, c in pairs}, clean=self._clean, until=until,
                                 batch_size=self.ablation_batch, pad_id=self.tokenizer.pad_token_id or 0)
        for f in todo:
            self._deltas[f] = {}
        for (f, c), d in deltas.items():
            self._deltas[f][c] = d

    def _loss_for(self, f: int, examples: list[dict]) -> dict[int, np.ndarray]:
        """loss_delta per context id for this feature's examples (prepared in bulk, or computed now)."""
        if not self.loss or not examples:
            return {}
        if f not in self._deltas:
            self.prepare_losses([f])
        return self._deltas.pop(f)

    def _example(self, ex: dict, vmax: float, deltas: dict[int, np.ndarray], scale: float) -> dict:
        pieces = [visible(p) for p in self.text.pieces(ex["tokens"])]
        d = deltas.get(int(ex["ctx"]))
        toks = []
        for i, (tid, act, text) in enumerate(zip(ex["tokens"], ex["acts"], pieces, strict=True)):
            loss = float(d[ex["window_start"] + i]) if d is not None else None
            if loss is None or scale <= 0:
                ul = "transparent"
            else:
                a = min(abs(loss) / scale, 1.0)
                ul = f"rgba(0,80,255,{a:.3f})" if loss < 0 else f"rgba(230,0,0,{a:.3f})"
            title = f"{self._token(tid)!r} · act {act:.4g}" + (f" · loss effect {loss:+.4f}" if loss is not None
                                                                     else "")
            toks.append({"id": int(tid), "text": text, "act": float(act), "loss": loss,
                         "bg": min(max(act / vmax, 0.0), 1.0) if vmax > 0 else 0.0, "ul": ul, "title": title})
        joined = "".join(pieces)
        return {"doc": ex["doc"], "record_id": ex["record_id"], "label": ex["label"], "act": ex["act"],
                "pos": ex["pos"], "ctx": ex["ctx"], "dir": direction(joined), "text": joined, "tokens": toks}

    # -- page data
    def feature_data(self, f: int) -> dict[str, Any]:
        """Everything a feature page shows, JSON-able (the browser's /api/feature/{id} serves this)."""
        if not 0 <= f < self.F:
            raise UserError(f"no feature {f} (the store has {self.F})")
        fe = self.feats
        vmax = float(fe["max_act"][f])
        n_active = int(fe["n_active"][f])
        examples = self.store.examples(f)
        deltas = self._loss_for(f, examples)
        scale = max((float(np.abs(v).max()) for v in deltas.values() if len(v)), default=0.0)
        top = [self._example(e, vmax, deltas, scale) for e in examples if e["kind"] == "top"]
        n_int = int(self.meta.get("config", {}).get("n_intervals", 10))
        hist = fe["hist"][f]
        bins = len(hist)
        intervals = []
        for k in range(n_int - 1, -1, -1):
            exs = [self._example(e, vmax, deltas, scale) for e in examples
                   if e["kind"] == "interval" and e["interval"] == k]
            share = None
            if bins % n_int == 0 and n_active:
                w = bins // n_int
                share = float(hist[k * w:(k + 1) * w].sum()) / n_active
            if exs:
                intervals.append({"interval": k, "lo": vmax * k / n_int, "hi": vmax * (k + 1) / n_int,
                                  "share": share, "examples": exs})
        self._logit_rows([f])
        logits = self._logits.get(f)
        n_spans = int(fe["n_spans"][f])
        labels = self._label_counts.get(f, {})
        total_lab = sum(labels.values())
        tsea = []
        if self.tsea is not None and f < len(self.tsea["score"]):
            tsea = [{"set": s, "score": float(self.tsea["score"][f, j]), "q": float(self.tsea["q"][f, j])}
                    for j, s in enumerate(self.tsea["sets"])]
        data = {
            "feature": f, **self._neighbours(f),
            "density": float(fe["frequency"][f]), "n_active": n_active, "max_act": vmax,
            "mean_act": float(fe["mean_act"][f]), "n_above": int(fe["n_above"][f]),
            "mean_span": int(fe["span_tokens"][f]) / n_spans if n_spans else None,
            "hist": hist.tolist(), "hist_max": vmax,
            "labels": [{"label": k, "count": v, "share": v / total_lab} for k, v in sorted(labels.items())],
            "top_tokens": [{"id": t, "text": self._token(t), "count": c} for t, c in self._top_tokens.get(f, [])],
            "logits": logits, "tsea": tsea, "has_loss": bool(deltas),
            "top_examples": top, "intervals": intervals,
        }
        return strict(data)

    def _neighbours(self, f: int) -> dict[str, int | None]:
        """The previous and next feature that has a page."""
        if self.pages is None:
            return {"prev": f - 1 if f > 0 else None, "next": f + 1 if f + 1 < self.F else None}
        import bisect

        i, j = bisect.bisect_left(self.pages, f), bisect.bisect_right(self.pages, f)
        return {"prev": self.pages[i - 1] if i > 0 else None, "next": self.pages[j] if j < len(self.pages) else None}

    def feature_html(self, data: dict[str, Any]) -> str:
        """The feature page for `feature_data(f)`."""
        d = dict(data)
        d["hist_svg"] = svg_histogram(d["hist"], 0.0, d["hist_max"] or 1.0)
        if d.get("logits"):
            lg = dict(d["logits"])
            lg["hist_svg"] = svg_histogram(lg["hist"]["counts"], lg["hist"]["lo"], lg["hist"]["hi"],
                                           split_at_zero=True)
            d["logits"] = lg
        return self.env.get_template("feature.html.j2").render(
            d=d, source=self.source, threshold_frac=float(self.meta.get("threshold_frac", 0.7)),
            label_field=self.meta.get("label_field", "label"))

    def index_rows(self, features: Iterable[int] | None = None) -> list[dict]:
        """One row per feature for the index (and the browser's search)."""
        feats = list(range(self.F)) if features is None else list(features)
        self._logit_rows(feats)
        rows = []
        for f in feats:
            lg = self._logits.get(f)
            row = {"feature": f, "density": float(self.feats["frequency"][f]),
                   "max_act": float(self.feats["max_act"][f]),
                   "top_tokens": " ".join(self._token(t).strip() or repr(self._token(t))
                                          for t, _ in self._top_tokens.get(f, [])[:5]),
                   "top_logits": " ".join(t["text"].strip() for t in lg["top"][:5]) if lg else ""}
            if self.tsea is not None and f < len(self.tsea["score"]):
                row["tsea"] = {s: float(self.tsea["score"][f, j]) for j, s in enumerate(self.tsea["sets"])}
            rows.append(strict(row))
        return rows

    def index_html(self, rows: list[dict], links: Sequence[tuple[str, str]] = ()) -> str:
        """The searchable, sortable index page; `links` (label, href) go in its header (e.g. the TSEA pages)."""
        sets = self.tsea["sets"] if self.tsea is not None else []
        return self.env.get_template("index.html.j2").render(
            data_json=script_json({"rows": rows, "sets": sets}), source=self.source, links=list(links))


def figure_html(title: str, png: bytes, *, note: str = "", table: dict | None = None,
                feature_href: str | None = None, index_href: str | None = None,
                summary: dict | None = None, more: Sequence[tuple[str, bytes]] = ()) -> str:
    """An offline HTML page around a PNG figure (embedded), an optional summary table (plain cells) before it,
    more captioned PNGs after it, and an optional table of features. With `feature_href` ("feature-{}.html") the
    first column's ids link there; with "" they are marked but not linked (`report.links.link_features` links
    them where the pages exist)."""
    return _env().get_template("figure.html.j2").render(
        title=title, png_b64=base64.b64encode(png).decode("ascii"), note=note, table=table,
        feature_href=feature_href, index_href=index_href, summary=summary,
        more=[(c, base64.b64encode(b).decode("ascii")) for c, b in more])


@dataclass(kw_only=True)
class DashboardConfig(Settings):
    """`babelscope dashboard`: static feature pages and a searchable index from a feature store."""

    features: str = opt(help="feature store directory (babelscope analyze features)")
    out: str = opt(help="site directory")
    model: str | None = opt(None, "model directory (default: the one recorded in the store)")
    sae: str | None = opt(None, "SAE directory (default: the one recorded in the store)")
    tsea: str | None = opt(None, "an `analyze tsea` output directory: scores on pages and in the index, its "
                                 "figure pages copied into the site")
    only: list[int] | None = opt(None, "feature ids, e.g. 12,40,3144 (default: every active feature)", ge=0)
    limit: int | None = opt(None, "at most this many features (the densest first)", gt=0)
    tsea_top: int | None = opt(None, "pages for the N features farthest from the TSEA scatter's diagonal, half on "
                                     "each side (needs --tsea)", gt=0)
    use_model: bool = opt(True, "skip logits and loss underlines (no model needed)", flag="--no-model")
    loss: bool = opt(True, "skip the loss underlines (faster)", flag="--no-loss")
    png: bool = opt(False, "also write a PNG summary per feature")
    device: str = opt("auto", "cpu, cuda or auto")
    force: bool = opt(False, "use the SAE with a model other than the one it was trained on")


def pick_features(store: FeatureStore, cfg: DashboardConfig, tsea: dict | None) -> list[int] | None:
    """The features a site gets pages for: --only, the --tsea-top farthest from the TSEA diagonal, the --limit
    densest (in that order of filtering); None means every feature that was ever active."""
    feats = store.features()
    active = np.flatnonzero(feats["n_active"] > 0)
    features = cfg.only
    if cfg.tsea_top is not None:
        if tsea is None or not tsea.get("pair"):
            raise UserError("--tsea-top needs --tsea with a scatter pair")
        x, y = (tsea["log_score"][:, tsea["sets"].index(name)] for name in tsea["pair"])
        gap = np.nan_to_num(y - x)
        order = [int(f) for f in np.argsort(-gap, kind="stable") if f in set(active.tolist())]
        half = cfg.tsea_top // 2
        chosen = sorted(set(order[:half]) | set(order[::-1][:cfg.tsea_top - half]))
        features = chosen if features is None else [f for f in chosen if f in set(features)]
    if cfg.limit is not None:
        order = active[np.argsort(-feats["frequency"][active], kind="stable")]
        keep = order if features is None else [f for f in order if f in set(features)]
        features = [int(f) for f in keep][:cfg.limit]
    return features


def build_site(store: FeatureStore, out: str | Path, tokenizer, *, model=None, sae=None,
               tsea: dict | None = None, tsea_dir: str | Path | None = None, features: Sequence[int] | None = None,
               loss: bool = True, png: bool = False, source: str = "") -> dict[str, Any]:
    """Write index.html, feature-N.html (+ data/*.json, and PNG summaries with `png`) for `features`
    (default: every feature that was ever active). With `tsea_dir`, its scores go on the pages (unless `tsea`
    is given) and its figure pages are copied to tsea/, their feature ids linked to the pages built here."""
    from babelscope.progress import progress

    out = Path(out)
    if tsea is None and tsea_dir is not None:
        tsea = read_tsea(tsea_dir)
    dash = Dashboard(store, tokenizer, model=model, sae=sae, tsea=tsea, loss=loss, source=source)
    (out / "data").mkdir(parents=True, exist_ok=True)
    if features is None:
        features = [int(f) for f in np.flatnonzero(dash.feats["n_active"] > 0)]
    features = list(dict.fromkeys(int(f) for f in features))
    bad = [f for f in features if not 0 <= f < dash.F]
    if bad:
        raise UserError(f"no such features: {bad[:5]} (the store has {dash.F})")
    dash.pages = sorted(features)  # prev/next link only the pages built here
    links = []
    if tsea_dir is not None:
        from babelscope.report.links import copy_figure_pages, page_title

        built = set(features)
        names = copy_figure_pages(tsea_dir, out / "tsea", lambda f: f"../feature-{f}.html" if f in built else None,
                                  back=("all features", "../index.html"))
        links = [(page_title(out / "tsea" / n), f"tsea/{n}") for n in names]
    rows = dash.index_rows(features)
    for i, f in enumerate(progress(features, desc="dashboards", unit="feature")):
        if i % PAGES_PER_ABLATION == 0:  # the loss underlines of the next pages, computed side by side
            dash.prepare_losses(features[i:i + PAGES_PER_ABLATION])
        data = dash.feature_data(f)
        _write(out / f"feature-{f}.html", dash.feature_html(data))
        _write(out / "data" / f"feature-{f}.json", json_dump(data))
        if png:
            from babelscope.report.plots import feature_summary

            lg = data.get("logits") or {"top": [], "bottom": []}
            feature_summary(f, data["hist"], data["hist_max"] or 0.0, data["density"],
                            [(t["text"], t["value"]) for t in lg["top"]],
                            [(t["text"], t["value"]) for t in lg["bottom"]], out / "png" / f"feature-{f}.png")
    _write(out / "data" / "index.json", json_dump({"rows": rows, "sets": tsea["sets"] if tsea else [],
                                                  "meta": {k: store.meta.get(k) for k in
                                                           ("model", "sae", "hook", "tokens", "n_features")}}))
    _write(out / "index.html", dash.index_html(rows, links))
    return {"pages": len(features), "out": str(out), "loss": dash.loss, "logits": dash.model is not None}


def make_site(cfg: DashboardConfig) -> dict[str, Any]:
    """`babelscope dashboard`: load what the store names (or what cfg overrides), pick the features, build."""
    from babelscope.files import check_output
    from babelscope.models import resolve_device

    check_output(cfg.out, directory=True)
    store, tok, model, sae = load_for_site(cfg.features, model_dir=cfg.model, sae_dir=cfg.sae,
                                           device=resolve_device(cfg.device), need_model=cfg.use_model,
                                           force=cfg.force)
    tsea = read_tsea(cfg.tsea)
    return build_site(store, cfg.out, tok, model=model, sae=sae, tsea=tsea, tsea_dir=cfg.tsea,
                      features=pick_features(store, cfg, tsea), loss=cfg.loss, png=cfg.png)


def load_for_site(features_dir: str | Path, *, model_dir: str | Path | None = None,
                  sae_dir: str | Path | None = None, device: str = "cpu", need_model: bool = True,
                  force: bool = False) -> tuple:
    """(store, tokenizer, model or None, sae or None) for a store, using its recorded model/SAE paths unless
    others are given; without `need_model` (or if they are gone) only the tokenizer is loaded."""
    from babelscope.inputs import check_dir

    store = FeatureStore(features_dir)
    meta = store.meta
    if need_model:  # what the user names must exist; the store's own record may be gone (then: no model)
        for given, what in ((model_dir, "model directory"), (sae_dir, "SAE directory")):
            if given is not None:
                check_dir(given, what)
    model_dir = model_dir or meta.get("model")
    sae_dir = sae_dir or meta.get("sae")
    model = sae = None
    if need_model and model_dir and Path(model_dir).is_dir() and sae_dir and Path(sae_dir).is_dir():
        from babelscope.sae.pairing import load_pair

        model, tokenizer, sae, _ = load_pair(model_dir, sae_dir, device=device, force=force)
    else:
        from babelscope.tokenizer import load_tokenizer

        tok_dir = meta.get("tokenizer") or model_dir
        if not tok_dir or not Path(tok_dir).is_dir():
            raise UserError("the store's tokenizer directory is gone; pass --model", path=features_dir)
        tokenizer = load_tokenizer(tok_dir)
    return store, tokenizer, model, sae


def json_dump(obj: Any) -> str:
    """Plain JSON text for API responses (NaN-free)."""
    return dumps(obj)

"""TSEA figures and their pages, drawn from the tables `analyze tsea` writes (tsea.parquet, calibrated.parquet,
null.parquet and meta.json): a Manhattan plot per set, the scatter of a pair of sets with the features the
calibrated test flags, and the distribution of the gap for the features and for each null family.

The analysis computes and writes tables; this module only reads them and draws, so a figure can be redrawn (or
restyled) without scoring anything again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.errors import UserError

FIGURES = "figures.json"


def read_tables(tsea_dir: str | Path) -> dict[str, Any]:
    """meta, the shown score per set [F] (plot scale), and when present the calibrated columns per family and
    the null gaps per family, from an `analyze tsea` output directory."""
    import pyarrow.parquet as pq

    d = Path(tsea_dir)
    if not (d / "meta.json").exists() or not (d / "tsea.parquet").exists():
        raise UserError("no TSEA output here (meta.json, tsea.parquet); run `babelscope analyze tsea` first", path=d)
    meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
    t = pq.read_table(d / "tsea.parquet").to_pydict()
    column = "log_score" if meta.get("plot_scale", "log") == "log" else "score"
    F = int(meta["n_features"])
    shown = {}
    for name in meta["sets"]:
        v = np.full(F, np.nan)
        rows = [(f, s) for f, n, s in zip(t["feature"], t["set"], t[column], strict=True) if n == name]
        if rows:
            f, s = zip(*rows, strict=True)
            v[np.asarray(f)] = np.asarray(s, dtype=np.float64)
        shown[name] = v
    out: dict[str, Any] = {"meta": meta, "shown": shown, "calibrated": {}, "null": {}}
    if (d / "calibrated.parquet").exists():
        c = pq.read_table(d / "calibrated.parquet").to_pydict()
        fam = np.asarray(c["family"], dtype=object)
        for family in dict.fromkeys(c["family"]):
            sel = fam == family
            out["calibrated"][family] = {k: np.asarray(c[k], dtype=object if k == "favours" else np.float64)[sel]
                                         for k in ("feature", "gap", "p_value", "q_value", "favours")}
    if (d / "null.parquet").exists():
        n = pq.read_table(d / "null.parquet", columns=["family", "gap"]).to_pydict()
        fam = np.asarray(n["family"], dtype=object)
        gaps = np.asarray(n["gap"], dtype=np.float64)
        out["null"] = {family: gaps[fam == family] for family in dict.fromkeys(n["family"])}
    return out


def summary_rows(meta: dict) -> dict | None:
    """The calibrated counts per null family as a table (None without a null)."""
    null = meta.get("null")
    pair = meta.get("scatter_pair")
    if not null or not pair:
        return None
    x, y = pair
    rows = []
    for family in null["order"]:
        r = null["families"][family]
        row = [family]
        for side in (y, x):
            c = r["calibrated"][side]
            lo, hi = c["count_interval"]
            row.append(f"{c['count']} ({lo:.0f}-{hi:.0f})")
        tc = r.get("threshold_count", {})
        for side in (y, x):
            s = tc.get(side)
            row.append(f"{s['mean']:.1f} ± {s['sd']:.1f}" if s else "–")
        nf = r.get("null_flagged")
        row.append(f"{nf['mean']:.1f} of {nf['of']}" if nf else "–")
        rows.append(row)
    beyond = meta.get("beyond_threshold", {})
    t = meta.get("threshold")
    return {"caption": f"features flagged at q < {null['level']:g} against each null family (95% Wilson interval)",
            "header": ["null", f"favour {y}", f"favour {x}", f"null beyond +{t:g} (mean ± sd over seeds)",
                       f"null beyond -{t:g}", "null directions flagged (calibration)"],
            "rows": rows,
            "note": f"The study's count for these features: {beyond.get('above')} beyond +{t:g} and "
                    f"{beyond.get('below')} beyond -{t:g}. Test: {null['test']}."}


def tsea_figures(tsea_dir: str | Path) -> dict[str, Any]:
    """Draw the Manhattan plot, the scatter and the gap histogram (PNG + offline HTML) into `tsea_dir` from its
    tables; write figures.json (what was drawn, the features marked) and return it."""
    from babelscope.files import write_json_atomic, write_text_atomic
    from babelscope.report.dashboard import figure_html
    from babelscope.report.plots import gap_histogram, manhattan, tsea_scatter

    out = Path(tsea_dir)
    tables = read_tables(out)
    meta, shown = tables["meta"], tables["shown"]
    scale, threshold = meta.get("plot_scale", "log"), float(meta["threshold"])
    scale_note = meta.get("plot_scale_note", scale)
    label = "log-scale enrichment" if scale == "log" else "enrichment score"
    pair = meta.get("scatter_pair")
    null = meta.get("null")
    primary = null["primary"] if null else None
    calibrated = tables["calibrated"].get(primary) if primary else None
    summary = summary_rows(meta)
    result: dict[str, Any] = {}

    highlight = {}
    if calibrated is not None:
        for name in meta["sets"]:
            highlight[name] = calibrated["feature"][calibrated["favours"] == name].astype(np.int64)
    manhattan(shown, out / "manhattan.png", axis_label=label, highlight=highlight,
              highlight_label=f"flagged vs the {primary} null" if primary else "flagged")
    top = []
    for name, col in shown.items():
        ok = np.flatnonzero(~np.isnan(col))
        top += [[int(i), name, f"{col[i]:.3f}"] for i in ok[np.argsort(-col[ok], kind="stable")][:10]]
    write_text_atomic(out / "manhattan.html", figure_html(
        "TSEA Manhattan plot", (out / "manhattan.png").read_bytes(),
        note=f"score shown: {scale_note}" + (f"; red: features the calibrated test flags as favouring that "
                                                    f"set against the {primary} null" if primary else ""),
        summary=summary, table={"caption": "top 10 features per set", "header": ["feature", "set", label],
                                "rows": top},
        feature_href=""))
    result["manhattan"] = ["manhattan.png", "manhattan.html"]
    if pair:
        x_name, y_name = pair
        x, y = shown[x_name], shown[y_name]
        stem = f"scatter_{_slug(y_name)}_vs_{_slug(x_name)}"
        flagged = None
        if calibrated is not None:
            flagged = calibrated["feature"][calibrated["favours"] != ""].astype(np.int64)
        marked = tsea_scatter(x, y, x_name, y_name, out / f"{stem}.png", threshold=threshold, axis_label=label,
                              flagged=flagged, flagged_label=f"q < {null['level']:g} vs the {primary} null"
                              if primary else "")
        more = []
        if tables["null"]:
            gap_histogram(y - x, tables["null"], out / "gap_null.png", threshold=threshold,
                          axis_label=f"{y_name} - {x_name} ({label})")
            more.append(("The gap per direction: the features (grey) against each null family's directions "
                         "(lines), with the study's ±threshold (dotted).", (out / "gap_null.png").read_bytes()))
            result["gap_histogram"] = "gap_null.png"
        if calibrated is not None:
            q = {f: (p, qq) for f, p, qq in zip(calibrated["feature"].astype(int), calibrated["p_value"],
                                                 calibrated["q_value"], strict=True)}
            rows = [[f, f"{x[f]:.3f}", f"{y[f]:.3f}", f"{y[f] - x[f]:+.3f}", f"{q[f][0]:.2g}", f"{q[f][1]:.2g}"]
                    for f in marked]
            header = ["feature", x_name, y_name, "gap", "p", "q"]
            caption = f"{len(marked)} features flagged at q < {null['level']:g} against the {primary} null"
            note = (f"score shown: {scale_note}; red: flagged by the calibrated test against the {primary} "
                    f"null; dotted: the study's |{y_name} - {x_name}| > {threshold:g} "
                    f"({meta['beyond_threshold']['above']} above, {meta['beyond_threshold']['below']} below)")
        else:
            rows = [[f, f"{x[f]:.3f}", f"{y[f]:.3f}", f"{y[f] - x[f]:+.3f}"] for f in marked]
            header = ["feature", x_name, y_name, "gap"]
            caption = f"{len(marked)} features beyond the threshold (largest gap first; no null was drawn)"
            note = f"score shown: {scale_note}; marked: |{y_name} - {x_name}| > {threshold:g}"
        write_text_atomic(out / f"{stem}.html", figure_html(
            f"TSEA: {y_name} vs {x_name}", (out / f"{stem}.png").read_bytes(), note=note, summary=summary,
            more=more, table={"caption": caption, "header": header, "rows": rows}, feature_href=""))
        result.update(scatter=[f"{stem}.png", f"{stem}.html"], scatter_pair=list(pair), marked=marked,
                      marked_by=f"calibrated test vs the {primary} null" if primary else f"|gap| > {threshold:g}")
    write_json_atomic(out / FIGURES, result)
    return result


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_")[:60] or "set"

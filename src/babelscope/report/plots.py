"""PNG figures (matplotlib, Agg): TSEA scatter, gap histogram and Manhattan plots, and a per-feature summary.

Arabic labels must be drawn joined and right to left. matplotlib 3.11 and later lay text out with libraqm, which
does both itself; older ones draw characters one by one, left to right. `shape()` asks the installed matplotlib
which it does (once) and only then joins the letters (arabic_reshaper) and reorders the runs (python-bidi):
shaping twice reverses the word again. The font is matplotlib's bundled DejaVu Sans, which has Arabic glyphs,
so figures look the same on any machine; `arabic_font()` checks that and says so loudly when it is not so.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from babelscope.files import atomic_path

_RTL = re.compile(r"[\u0590-\u08FF\uFB1D-\uFDFF\uFE70-\uFEFF]")
FONT = "DejaVu Sans"


@lru_cache(maxsize=1)
def matplotlib_shapes() -> bool:
    """Whether the installed matplotlib joins and orders Arabic itself: then "لا" (lam, alef) is drawn as the
    single lam-alef ligature glyph, the same outline as the presentation form U+FEFB."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    prop = FontProperties(family=arabic_font())
    raw, ligature = (TextPath((0, 0), s, prop=prop, size=10).vertices for s in ("\u0644\u0627", "\ufefb"))
    return raw.shape == ligature.shape and bool(np.allclose(raw, ligature))


@lru_cache(maxsize=1)
def arabic_font() -> str:
    """FONT when it has Arabic glyphs (matplotlib bundles a DejaVu Sans that does), else the first installed font
    that has them, with a warning; with none, FONT and a louder warning (Arabic would show as empty boxes)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    def has_arabic(path: str) -> bool:
        try:
            font = FT2Font(path)
            return all(font.get_char_index(ord(c)) for c in "\u0628\u0644\ufefb")
        except (OSError, RuntimeError, ValueError):
            return False

    if has_arabic(font_manager.findfont(font_manager.FontProperties(family=FONT))):
        return FONT
    for entry in font_manager.fontManager.ttflist:
        if has_arabic(entry.fname):
            print(f"babelscope: warning: {FONT} has no Arabic glyphs here; figures use {entry.name} "
                  f"({entry.fname})", file=sys.stderr)
            return entry.name
    print("babelscope: WARNING: no installed font has Arabic glyphs, so Arabic labels in figures will be empty "
          "boxes; install one (Debian: apt-get install fonts-dejavu-core)", file=sys.stderr)
    return FONT


def shape(text: str) -> str:
    """Text ready for matplotlib: unchanged when matplotlib shapes Arabic itself (or there is none), else with
    Arabic letters joined and right-to-left runs in visual order."""
    if not _RTL.search(text) or matplotlib_shapes():
        return text
    import arabic_reshaper
    from bidi.algorithm import get_display

    return get_display(arabic_reshaper.reshape(text))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams["font.family"] = arabic_font()
    plt.rcParams["svg.fonttype"] = "path"
    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=150, bbox_inches="tight")
    return path


def biased_features(x: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of features farther than `threshold` from the diagonal in score difference: |y - x| > threshold."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.flatnonzero(np.abs(y - x) > threshold)


def tsea_scatter(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str, out: str | Path, *,
                 threshold: float, features: np.ndarray | None = None, title: str = "",
                 axis_label: str = "enrichment score", max_labels: int = 12, flagged: np.ndarray | None = None,
                 flagged_label: str = "") -> list[int]:
    """Scatter of two sets' scores per feature with the diagonal and the study's lines at +-`threshold`.

    Without `flagged`, features with |y - x| > threshold are marked (the study's rule); with `flagged` (indices,
    e.g. the features a calibrated test flags), those are marked instead and the threshold lines stay for
    comparison. The `max_labels` farthest marked features (half on each side) carry their id. Returns the
    marked feature ids (largest gap first)."""
    plt = _pyplot()
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ids = np.arange(len(x)) if features is None else np.asarray(features)
    ok = ~(np.isnan(x) | np.isnan(y))
    if flagged is None:
        marked = biased_features(np.where(ok, x, 0), np.where(ok, y, 0), threshold)
        label = f"|{shape(y_name)} - {shape(x_name)}| > {threshold:g}"
    else:
        marked = np.asarray(flagged, dtype=np.int64)
        marked = marked[ok[marked]]
        label = shape(flagged_label or "flagged")
    marked = marked[np.argsort(-np.abs(y[marked] - x[marked]), kind="stable")]
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    ax.scatter(x[ok], y[ok], s=6, c="#8a8a8a", alpha=0.6, linewidths=0, label="features")
    if len(marked):
        ax.scatter(x[marked], y[marked], s=22, c="#d62728", label=label)
        gap = y[marked] - x[marked]
        for i in [*marked[gap > 0][:max_labels // 2], *marked[gap < 0][:max_labels // 2]]:
            ax.annotate(str(int(ids[i])), (x[i], y[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    finite = np.concatenate([x[ok], y[ok]]) if ok.any() else np.zeros(1)
    lo, hi = min(finite.min(), 0.0), max(finite.max(), 0.0)
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", lw=0.8, ls="--")
    for sign in (1, -1):
        ax.plot([lo - pad, hi + pad], [lo - pad + sign * threshold, hi + pad + sign * threshold], color="#d62728",
                lw=0.6, ls=":", label=f"±{threshold:g} (the study's rule)" if sign == 1 and flagged is not None
                else None)
    if not ok.any():
        ax.text(0.5, 0.5, "no scores to plot (is one of the token sets empty?)", ha="center", va="center",
                transform=ax.transAxes, color="#d62728")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(shape(f"{x_name} ({axis_label})"))
    ax.set_ylabel(shape(f"{y_name} ({axis_label})"))
    what = f"beyond ±{threshold:g}" if flagged is None else "flagged"
    ax.set_title(shape(title or f"TSEA: {y_name} vs {x_name}; {len(marked)} features {what}"))
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, out)
    plt.close(fig)
    return [int(ids[i]) for i in marked]


def gap_histogram(gap: np.ndarray, null_gaps: dict[str, np.ndarray], out: str | Path, *, threshold: float,
                  axis_label: str = "gap", title: str = "") -> Path:
    """Density histograms of the features' gaps and of each null family's gaps on shared bins, with the study's
    +-threshold: where the features' distribution leaves the nulls' is what the calibrated test counts."""
    plt = _pyplot()
    gap = np.asarray(gap, dtype=np.float64)
    gap = gap[~np.isnan(gap)]
    nulls = {k: np.asarray(v, dtype=np.float64)[~np.isnan(np.asarray(v, dtype=np.float64))]
             for k, v in null_gaps.items()}
    every = np.concatenate([gap, *nulls.values()]) if len(gap) or nulls else np.zeros(1)
    lo, hi = (float(every.min()), float(every.max())) if every.size else (-1.0, 1.0)
    lo, hi = min(lo, -threshold), max(hi, threshold)
    bins = np.linspace(lo, hi, 61)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (name, v) in enumerate(nulls.items()):
        if v.size:
            ax.hist(v, bins=bins, density=True, histtype="step", lw=1.2, color=colors[(j + 1) % len(colors)],
                    label=f"null: {name} ({v.size})")
    if gap.size:
        ax.hist(gap, bins=bins, density=True, color="#333333", alpha=0.35, label=f"features ({gap.size})")
    for t in (threshold, -threshold):
        ax.axvline(t, color="#d62728", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel(shape(axis_label))
    ax.set_ylabel("density (log)")
    ax.set_title(shape(title or "gap per direction: features vs null families"))
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, out)
    plt.close(fig)
    return path


def manhattan(scores: dict[str, np.ndarray], out: str | Path, *, axis_label: str = "enrichment score",
              top_n: int = 3, title: str = "", highlight: dict[str, np.ndarray] | None = None,
              highlight_label: str = "flagged") -> Path:
    """One panel per set: score against feature index, the `top_n` highest features labelled; features in
    `highlight[set]` (e.g. flagged by the calibrated test as favouring that set) drawn in red."""
    plt = _pyplot()
    names = list(scores)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        s = np.asarray(scores[name], dtype=np.float64)
        idx = np.arange(len(s))
        ax.scatter(idx, s, s=3, color=colors[j % len(colors)], linewidths=0)
        marked = np.asarray((highlight or {}).get(name, []), dtype=np.int64)
        if marked.size:
            ax.scatter(marked, s[marked], s=12, color="#d62728", linewidths=0,
                       label=f"{highlight_label} ({marked.size})")
            ax.legend(loc="lower right", fontsize=7)
        ok = np.flatnonzero(~np.isnan(s))
        for i in ok[np.argsort(-s[ok], kind="stable")][:top_n]:
            ax.annotate(str(int(i)), (i, s[i]), fontsize=7, xytext=(2, 2), textcoords="offset points")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(shape(name))
        ax.set_xlabel("feature")
    axes[0][0].set_ylabel(shape(axis_label))
    if title:
        fig.suptitle(shape(title))
    fig.tight_layout()
    path = _save(fig, out)
    plt.close(fig)
    return path


def feature_summary(feature: int, hist: Sequence[int], hist_max: float, density: float,
                    top: Sequence[tuple[str, float]], bottom: Sequence[tuple[str, float]], out: str | Path) -> Path:
    """A PNG of one feature: its activation histogram and its top/bottom logit tokens (Arabic shaped)."""
    plt = _pyplot()
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1.3, 1]})
    hist = np.asarray(hist, dtype=np.float64)
    edges = np.linspace(0, hist_max or 1.0, len(hist) + 1)
    a0.bar(edges[:-1], hist, width=np.diff(edges), align="edge", color="#ff8c00")
    a0.set_title(f"feature {feature}: activation density {density:.3%}")
    a0.set_xlabel("activation (non-zero)")
    rows = list(top)[:10] + list(bottom)[:10][::-1]
    labels = [shape(repr_token(t)) for t, _ in rows]
    vals = [v for _, v in rows]
    a1.barh(range(len(rows))[::-1], vals, color=["#1f77b4" if v >= 0 else "#d62728" for v in vals])
    a1.set_yticks(range(len(rows))[::-1], labels, fontsize=7)
    a1.axvline(0, color="black", lw=0.5)
    a1.set_title("top / bottom logit weights")
    fig.tight_layout()
    path = _save(fig, out)
    plt.close(fig)
    return path


def repr_token(text: str) -> str:
    """A token for display: visible spaces at its edges and newlines as ↵."""
    from babelscope.report.text import visible

    text = visible(text)
    if text.startswith(" "):
        text = "·" + text[1:]
    return text or "∅"

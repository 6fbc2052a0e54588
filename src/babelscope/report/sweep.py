"""The bilingual sweep's figures and page, drawn from its summary rows (recipes/sweep.py computes them): mixed
share and monosemanticity against training tokens, per layer and across model sizes, span length by depth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    rows = sorted(rows, key=lambda r: r["train_tokens"])
    return [max(r["train_tokens"], 1) for r in rows], [r.get(key, float("nan")) for r in rows]


def _mid_layer(rows: list[dict]) -> int:
    return int(rows[0]["n_layers"]) // 2


def draw_figures(out: str | Path, rows: list[dict], *, layer: int | None = None) -> list[Path]:
    """The study's figures as PNGs: mixed share and mean R_mono against training tokens for one layer (the
    middle one by default, with the mixed share's range over tau 0.8-0.95 shaded), the same for every layer
    (coloured by depth), mean span length per layer, and the comparison across runs when there are several."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    paths: list[Path] = []
    if not rows:
        return paths
    runs = sorted({r["run"] for r in rows}, key=lambda name: [r["run"] for r in rows].index(name))

    def save(fig, name: str) -> None:
        from babelscope.files import atomic_path

        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
        plt.close(fig)
        paths.append(out / name)

    for run in runs:
        mine = [r for r in rows if r["run"] == run]
        suffix = "" if len(runs) == 1 else f"_{run}"
        at = layer if layer is not None else _mid_layer(mine)
        one = [r for r in mine if r["layer"] == at]
        if one:
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
            x, y = _series(one, "mixed_share")
            _, lo = _series(one, "mixed_share_t080")
            _, hi = _series(one, "mixed_share_t095")
            axes[0].plot(x, y, "o-", color="tab:red", label="tau = 0.9")
            axes[0].fill_between(x, lo, hi, color="tab:red", alpha=0.2, label="tau 0.8 - 0.95")
            axes[0].legend(fontsize=8)
            x, y = _series(one, "mean_r_mono")
            _, y2 = _series(one, "mean_r_mono_multi")
            axes[1].plot(x, y, "o-", color="tab:blue", label="features with enough activations")
            axes[1].plot(x, y2, "s--", color="tab:blue", alpha=0.6, label="without single-token features")
            axes[1].legend(fontsize=8)
            _decorate(axes, f"{run}, layer {at}")
            save(fig, f"fig_layer{at}{suffix}.png")
        layers = sorted({r["layer"] for r in mine})
        n_layers = int(mine[0]["n_layers"])
        cmap = plt.get_cmap("viridis")
        for keys, name, ylabels in (
            (("mixed_share", "mean_r_mono"), "fig_layers", ("mixed-language share", "mean monosemanticity")),
            (("mean_span",), "fig_spans", ("mean span length (tokens)",)),
        ):
            fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys) + 1, 3.6), squeeze=False,
                                     layout="constrained")
            axes = axes[0]
            for ax, key in zip(axes, keys, strict=True):
                for lay in layers:
                    x, y = _series([r for r in mine if r["layer"] == lay], key)
                    ax.plot(x, y, "o-", ms=3, color=cmap(lay / max(n_layers - 1, 1)), label=f"layer {lay}")
            _decorate(axes, f"{run}, all layers", ylabels)
            sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max(n_layers - 1, 1)))
            bar = fig.colorbar(sm, ax=list(axes), label="layer (depth)")
            bar.set_ticks(range(n_layers) if n_layers <= 12 else [0, n_layers - 1])
            save(fig, f"{name}{suffix}.png")
    if len(runs) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
        for i, run in enumerate(runs):
            mine = [r for r in rows if r["run"] == run]
            at = _mid_layer(mine)
            one = [r for r in mine if r["layer"] == at]
            for ax, key in zip(axes, ("mixed_share", "mean_r_mono"), strict=True):
                x, y = _series(one, key)
                ax.plot(x, y, "o-", color=plt.get_cmap("tab10")(i), label=f"{run} (layer {at})")
        axes[0].legend(fontsize=8)
        _decorate(axes, "model sizes, middle layer")
        save(fig, "fig_sizes.png")
    return paths


def _decorate(axes, title: str, ylabels: Sequence[str] = ("mixed-language share", "mean monosemanticity")) -> None:
    for ax, ylabel in zip(axes, ylabels, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("training tokens")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)


_PAGE_COLUMNS = ("run", "checkpoint", "train_tokens", "layer", "n_alive", "n_insufficient", "mixed_share",
                 "mixed_share_t080", "mixed_share_t095", "mean_r_mono", "mean_r_mono_multi", "n_single_token", "mean_span",
                 "pair_link_rate")


def write_index(out: str | Path, rows: list[dict], figures: Sequence[Path], labels: Sequence[str]) -> Path:
    """index.html: the figures and the summary table; all text is escaped and nothing loads from the network."""
    from html import escape

    from babelscope.files import write_text_atomic

    out = Path(out)
    cols = [c for c in _PAGE_COLUMNS if any(c in r for r in rows)]

    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else escape(str(v))

    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    imgs = "\n".join(f'<figure><img src="{escape(p.name)}" alt="{escape(p.stem)}"></figure>' for p in figures)
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>babelscope: bilingual study</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}img{{max-width:100%}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}</style>
</head><body>
<h1>Bilingual study</h1>
<p>Languages: {escape(", ".join(labels))}. A feature is <i>mixed</i> unless one language holds at least tau of its
activating occurrences (activation &ge; 70% of its maximum); monosemanticity R_mono = 1 - H_sem / H_tok
(single-token features count as 0; the dashed line leaves them out). Features with fewer activating occurrences
than the minimum (n_insufficient) are left out of every share and mean.</p>
{imgs}
<h2>Cells</h2>
<table><tr>{head}</tr>
{body}
</table></body></html>
"""
    write_text_atomic(out / "index.html", html)
    return out / "index.html"

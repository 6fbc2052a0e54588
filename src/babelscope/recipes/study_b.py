"""Study B (how a bilingual LM becomes bilingual): the injection that follows the sweep, and the study's
headline claims measured on this run, each with a 95% interval and a verdict beside the paper's finding.

The sweep (recipes/sweep.py) trains a TopK SAE for every (checkpoint, layer) and writes each cell's per-feature
measures; the injection adds the final model's features of one type to the checkpoint whose middle layer is
least mixed. This module reads those tables; it computes nothing the stages did not write.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.analysis.intervals import bootstrap_diff, diff_proportions
from babelscope.errors import UserError
from babelscope.intervene.inject import NONE
from babelscope.recipes.study_a import claim, gate, not_learned
from babelscope.settings import Settings, opt


@dataclass(kw_only=True)
class StudyInjectConfig(Settings):
    """The injection of Study B's Table 1 after a sweep: full = the run's final model, mid = the checkpoint whose
    chosen layer is least mixed, the SAE = that layer's SAE of the final model."""

    run: str = opt(help="the training run (RUN with checkpoints/ and final/)")
    sweep: str = opt(help="the sweep's study directory")
    out: str = opt(help="output directory")
    layer: int | None = opt(None, "the layer injected (default: the swept layer nearest the middle)", ge=0)
    share: float = opt(1 / 8, "features injected per type, as a share of the SAE's latents (the study: 1000 of "
                              "32768)", gt=0.0, le=1.0)
    alpha: float = opt(0.1, "injection strength", gt=0.0)
    docs: int = opt(100, "evaluation documents", gt=0)
    device: str = opt("cpu", "cpu, cuda or auto")


@dataclass(kw_only=True)
class StudyBConfig(Settings):
    """Inputs of Study B's summary."""

    sweep: str = opt(help="the sweep's study directory")
    out: str = opt(help="output directory (summary.json)")
    inject: str | None = opt(None, "injection.json of the injection stage")
    layer: int | None = opt(None, "the layer whose trajectory is judged (default: the swept layer nearest the "
                                  "middle)", ge=0)


def sweep_rows(sweep: str | Path) -> list[dict]:
    """The summary row of every finished cell of a sweep, ordered by run, training tokens and layer."""
    from babelscope.recipes.sweep import collect

    cells = sorted({p.parent for p in (Path(sweep) / "cells").rglob("summary.json")})
    rows = collect(cells)
    if not rows:
        raise UserError("the sweep has no finished cells", path=sweep)
    return rows


def _cell(sweep: Path, row: dict) -> Path:
    """The directory of a sweep row's cell."""
    from babelscope.recipes.sweep import Checkpoint, cell_dir

    return cell_dir(sweep, Checkpoint(row["run"], row["checkpoint"], Path(), row["step"], row["train_tokens"]),
                    row["layer"])


def cell_problems(sweep: str | Path, rows: list[dict]) -> dict[tuple[str, str, int], list[str]]:
    """Per swept cell of `rows` (run, checkpoint, layer): why its SAE probably did not learn (training.json's
    warnings; empty when it learned or records nothing)."""
    from babelscope.sae.io import read_training

    sweep = Path(sweep)
    return {(r["run"], r["checkpoint"], int(r["layer"])): read_training(_cell(sweep, r) / "sae").get("warnings", [])
            for r in rows}


def _why(problems: dict[tuple[str, str, int], list[str]], rows: list[dict]) -> str:
    """`not_learned` over the cells of `rows`, naming each bad cell by checkpoint and layer."""
    bad = {f"{r['checkpoint']} layer {r['layer']}": problems.get((r["run"], r["checkpoint"], int(r["layer"])), [])
           for r in rows}
    return not_learned(bad)


def middle_layer(rows: list[dict]) -> int:
    """The swept layer nearest the model's middle (the study's mid-layer view)."""
    n_layers = int(rows[0]["n_layers"])
    return min({r["layer"] for r in rows}, key=lambda layer: (abs(layer - n_layers // 2), layer))


def pick_mid(rows: list[dict], layer: int) -> dict:
    """The mid-training checkpoint for the injection: the one (before the last) whose mixed share at `layer`
    is lowest, as the study chose a checkpoint where the mixed share is low."""
    cands = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["train_tokens"])[:-1]
    if not cands:
        raise UserError("the injection needs at least two checkpoints")
    return min(cands, key=lambda r: (r["mixed_share"], -r["train_tokens"]))


def run_study_injection(cfg: StudyInjectConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Table 1 of Study B on this run; writes injection.json (rows, the checkpoint used, n) and table.md."""
    from babelscope.files import write_json_atomic
    from babelscope.intervene.inject import format_table, run_injection
    from babelscope.recipes.sweep import cell_dir, find_checkpoints, sae_shape

    rows = sweep_rows(cfg.sweep)
    layer = middle_layer(rows) if cfg.layer is None else cfg.layer
    ckpts = find_checkpoints(Path(cfg.run) / "checkpoints")
    final, mid = ckpts[-1], pick_mid(rows, layer)
    mid_dir = next(c.path for c in ckpts if c.name == mid["checkpoint"])
    final_cell = cell_dir(Path(cfg.sweep), final, layer)
    d_in = json.loads((final.path / "config.json").read_text())["hidden_size"]
    sweep_cfg = json.loads((Path(cfg.sweep) / "sweep.json").read_text())["config"]
    d_sae = sae_shape(d_in, sweep_cfg["k"], sweep_cfg["expansion"], sweep_cfg.get("d_sae"))[1]
    n = max(1, math.ceil(d_sae * cfg.share))
    inject_rows, labels = run_injection(
        final.path, mid_dir, final_cell / "sae", [Path(cfg.sweep) / "data" / "eval.jsonl"], cfg.out,
        features_dir=final_cell / "features", types=["all-types"], n=[n], alpha=[cfg.alpha], max_docs=cfg.docs,
        device=cfg.device)
    log(f"injected into {mid['checkpoint']} at layer {layer} (n = {n} per type)\n" + format_table(inject_rows, labels))
    result = {"layer": layer, "mid_checkpoint": mid["checkpoint"], "n": n, "alpha": cfg.alpha, "labels": labels,
              "rows": inject_rows}
    write_json_atomic(Path(cfg.out) / "injection.json", result)
    return result


def _measures(sweep: Path, row: dict) -> dict[str, np.ndarray]:
    """A cell's per-feature measures (measures.parquet) as arrays."""
    import pyarrow.parquet as pq

    table = pq.read_table(_cell(sweep, row) / "measures.parquet").to_pydict()
    return {k: np.asarray(v) for k, v in table.items()}


def _mixed(row: dict) -> tuple[int, int]:
    """(mixed features, classified features) of a cell: the counts its mixed share is the ratio of (features with
    too few activations to classify are in neither)."""
    n = int(row.get("n_classified", row["n_alive"]))
    return int(row.get("n_mixed", round(row["mixed_share"] * n))), n


def summarize_study_b(cfg: StudyBConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The claims of Study B on this run (written to OUT/summary.json)."""
    from babelscope.files import write_json_atomic

    sweep = Path(cfg.sweep)
    rows = sweep_rows(sweep)
    run = rows[0]["run"]
    mine = [r for r in rows if r["run"] == run]
    n_layers = int(mine[0]["n_layers"])
    layer = middle_layer(mine) if cfg.layer is None else cfg.layer
    traj = sorted((r for r in mine if r["layer"] == layer), key=lambda r: r["train_tokens"])
    problems = cell_problems(sweep, rows)
    claims = []
    first, last = traj[0], traj[-1]
    low = min(traj[1:-1] or traj[1:], key=lambda r: r["mixed_share"]) if len(traj) > 1 else first
    (kf, nf), (kl, nl), (km, nm) = _mixed(first), _mixed(last), _mixed(low)
    d, lo, hi = diff_proportions(kf, nf, km, nm)
    claims.append(claim(
        "B1", "The share of mixed-language features falls early in training", "Figure 2: it falls in every layer",
        {"value": d, "low": lo, "high": hi, "first": first["mixed_share"], "lowest": low["mixed_share"],
         "at": low["checkpoint"], "layer": layer, "unit": "mixed share, first checkpoint minus the lowest later one"},
        "positive", "the lowest of several checkpoints is chosen after seeing them, which favours the claim"))
    d, lo, hi = diff_proportions(kl, nl, km, nm)
    claims.append(claim(
        "B2", "... and mixed features return later (in mid layers of larger models)",
        "Figure 2: the mixed share rises again in mid layers of the larger models",
        {"value": d, "low": lo, "high": hi, "last": last["mixed_share"], "lowest": low["mixed_share"],
         "layer": layer, "unit": "mixed share, final minus the lowest checkpoint"}, "positive"))
    claims.append(_mono_claim(sweep, first, last, layer))
    claims = [gate(c, _why(problems, traj)) for c in claims]
    final = max(r["train_tokens"] for r in mine)
    claims.append(gate(_span_claim(sweep, mine), _why(problems, [r for r in mine if r["train_tokens"] == final])))
    claims.append(gate(_inject_claim(cfg.inject), _why(problems, [last])))
    learned = sum(not v for v in problems.values())
    summary = {"study": "B", "title": "How a bilingual LM becomes bilingual (Inaba et al.)", "claims": claims,
               "layer": layer, "n_layers": n_layers, "trajectory": [
                   {k: r.get(k) for k in ("checkpoint", "train_tokens", "mixed_share", "mixed_share_t080",
                                          "mixed_share_t095", "mean_r_mono", "mean_span", "n_alive")} for r in traj],
               "saes": {"cells": len(problems), "learned": learned},
               "links": {"study": str(sweep / "index.html")}}
    write_json_atomic(Path(cfg.out) / "summary.json", summary)
    for c in claims:
        log(f"{c['id']}: {c['verdict']}")
    return summary


def _mono_claim(sweep: Path, first: dict, last: dict, layer: int) -> dict[str, Any]:
    a, b = _measures(sweep, last)["r_mono"], _measures(sweep, first)["r_mono"]
    d, lo, hi = bootstrap_diff(a, b)
    return claim("B3", "Monosemanticity rises over training", "Figure 3: mean R_mono rises in every layer",
                 {"value": d, "low": lo, "high": hi, "first": float(np.mean(b)) if len(b) else None,
                  "last": float(np.mean(a)) if len(a) else None, "layer": layer,
                  "unit": "mean R_mono over live features, final minus first checkpoint (bootstrap over features)"},
                 "positive")


def _span_claim(sweep: Path, rows: list[dict]) -> dict[str, Any]:
    final = max(r["train_tokens"] for r in rows)
    at_end = sorted((r for r in rows if r["train_tokens"] == final), key=lambda r: r["layer"])
    if len(at_end) < 2:
        return claim("B4", "Upper layers have longer feature spans", "Figure 5", None, "positive")
    top, bottom = _measures(sweep, at_end[-1])["mean_span"], _measures(sweep, at_end[0])["mean_span"]
    top, bottom = top[np.isfinite(top)], bottom[np.isfinite(bottom)]
    d, lo, hi = bootstrap_diff(top, bottom)
    return claim("B4", "Upper layers have longer feature spans", "Figure 5: span length grows with depth",
                 {"value": d, "low": lo, "high": hi, "layers": [at_end[0]["layer"], at_end[-1]["layer"]],
                  "unit": "mean span (tokens), last layer minus first, final checkpoint (bootstrap over features)"},
                 "positive")


def injection_effect(docs: dict[str, dict[str, np.ndarray]], langs: list[str], idx: dict[str, np.ndarray] | None = None
                     ) -> tuple[float, dict[str, float]]:
    """The claim's statistic: per language, the perplexity change with mixed features minus the best
    single-language change; the worst language's value (negative: mixed helps both languages most).
    `docs[type]` holds per-document nll, tokens and lang arrays (documents in the same order for every type);
    `idx[lang]` resamples each language's documents (a bootstrap draw)."""
    def ppl(t: str, lang: str) -> float:
        d = docs[t]
        sel = np.flatnonzero(d["lang"] == lang)
        if idx is not None:
            sel = sel[idx[lang]]
        return math.exp(d["nll"][sel].sum() / max(d["tokens"][sel].sum(), 1))

    gaps = {}
    for lang in langs:
        base = ppl(NONE, lang)
        gaps[lang] = (ppl("mixed", lang) - base) - min(ppl(t, lang) - base for t in langs)
    return max(gaps.values()), gaps


def _inject_claim(path: str | None) -> dict[str, Any]:
    text = "Injecting the final model's mixed (bilingual) features lowers perplexity in both languages more than " \
           "injecting either language's features"
    paper = "Table 1: all 22.43 -> 21.96 with mixed features (en 18.70 -> 18.36, ja 25.78 -> 25.20)"
    if not path or not Path(path).is_file():
        return claim("B5", text, paper, None, "negative")
    inj = json.loads(Path(path).read_text(encoding="utf-8"))
    langs = inj["labels"]
    docs_path = Path(path).parent / "documents.parquet"
    types = {r["type"] for r in inj["rows"]}
    if not docs_path.is_file() or not {"mixed", NONE, *langs} <= types:
        return claim("B5", text, paper, None, "negative")
    import pyarrow.parquet as pq

    table = pq.read_table(docs_path).to_pydict()
    docs: dict[str, dict[str, np.ndarray]] = {}
    for t in {NONE, "mixed", *langs}:
        rows = [i for i, x in enumerate(table["type"]) if x == t]
        rows.sort(key=lambda i: int(table["doc"][i]))
        docs[t] = {k: np.asarray([table[k][i] for i in rows]) for k in ("nll", "tokens", "lang")}
    value, gaps = injection_effect(docs, langs)
    rng = np.random.default_rng(0)
    sizes = {lang: int((docs[NONE]["lang"] == lang).sum()) for lang in langs}
    draws = [injection_effect(docs, langs, {lang: rng.integers(0, n, n) for lang, n in sizes.items()})[0]
             for _ in range(1000)]
    lo, hi = (float(x) for x in np.percentile(draws, [2.5, 97.5]))
    by_type = {r["type"]: r for r in inj["rows"]}
    ours = {"value": value, "low": lo, "high": hi, "by_language": gaps, "documents": sizes,
            "d_ppl": {t: {lang: by_type[t][f"d_ppl_{lang}"] for lang in [*langs, "all"]} for t in ["mixed", *langs]},
            "unit": "perplexity change with mixed features minus the best single-language one, worst language "
                    "(bootstrap over documents)"}
    return claim("B5", text, paper, ours, "negative")

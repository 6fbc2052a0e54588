"""Study A (Arabic TinyStories: translated data, continual pre-training, SAE + TSEA): its headline claims, each
measured on this run and judged against the paper's number.

The stages before this one compute tables (losses, marks, judge scores, SAEs, feature stores, TSEA); this one
reads them and writes OUT/STAGE/summary.json: per claim the paper's number, ours with a 95% interval, and the
verdict (analysis/intervals.py). A claim whose evidence was not computed (no judge endpoint given, say) is
reported as "not run".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babelscope.analysis.intervals import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, diff_proportions, verdict
from babelscope.settings import Settings, opt

NOT_RUN = "not run"


@dataclass(kw_only=True)
class StudyAConfig(Settings):
    """Inputs of Study A's summary: the tables of the stages that measured each claim."""

    out: str = opt(help="output directory (summary.json)")
    base: str = opt("base", "the name of the model pre-trained on translated data")
    cp: str = opt("cp", "the name of the continually pre-trained model")
    losses: str | None = opt(None, "losses.json of the models on the held-out sets")
    native_set: str = opt("native", "the held-out set in the native style (losses.json key)")
    translated_set: str = opt("translated", "the held-out set in the translated style (losses.json key)")
    marks: str | None = opt(None, "marks.json of the models' generations")
    judge: str | None = opt(None, "scores.csv of the LLM judge")
    sae: dict[str, str] = opt(help="model name -> SAE directory", default_factory=dict)
    tsea: dict[str, str] = opt(help="model name -> TSEA directory", default_factory=dict)
    features: dict[str, str] = opt(help="model name -> feature store", default_factory=dict)
    dashboards: dict[str, str] = opt(help="model name -> dashboard site index.html", default_factory=dict)


# The paper's numbers (Boughorbel et al., Tables 3-4 and section 5): the judge's 0-10 scores of the 33M model
# before and after continual pre-training, and the qualitative SAE finding.
PAPER = {
    "judge_33m": {"base": {"grammar": 6.83, "creativity": 7.01, "consistency": 7.20},
                  "cp": {"grammar": 7.08, "creativity": 7.21, "consistency": 7.26}},
}


def _read_json(path: str | None) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8")) if path and Path(path).is_file() else None


def claim(cid: str, text: str, paper: str, ours: dict[str, Any] | None, expected: str,
          note: str = "") -> dict[str, Any]:
    """One row of the claims table: `ours` holds value/low/high of the effect (None: not measured)."""
    if ours is None:
        return {"id": cid, "claim": text, "paper": paper, "ours": None, "verdict": NOT_RUN, "note": note}
    v = verdict(ours.get("low", float("nan")), ours.get("high", float("nan")), expected)
    return {"id": cid, "claim": text, "paper": paper, "ours": ours, "verdict": v, "note": note}


def _share_claim(marks: dict, base: str, cp: str, k_key: str, n_keys: tuple[str, str]) -> dict[str, Any] | None:
    """CP minus base of a share from the marks table, with Newcombe's interval."""
    if not marks or base not in marks or cp not in marks:
        return None
    b, c = marks[base], marks[cp]
    nb, nc = b[n_keys[0]] + b[n_keys[1]], c[n_keys[0]] + c[n_keys[1]]
    d, lo, hi = diff_proportions(c[k_key], nc, b[k_key], nb)
    return {"value": d, "low": lo, "high": hi, "base": b[k_key] / nb if nb else None,
            "cp": c[k_key] / nc if nc else None, "n_base": nb, "n_cp": nc, "unit": "share (cp - base)"}


def _tsea_counts(tsea_dir: str) -> dict[str, Any]:
    """The study's threshold count of a TSEA output (features > threshold from the diagonal, each side)."""
    meta = _read_json(str(Path(tsea_dir) / "meta.json")) or {}
    bt = meta.get("beyond_threshold", {})
    return {"features": meta.get("n_features"), "above": bt.get("above"), "below": bt.get("below"),
            "threshold": meta.get("threshold"), "pair": meta.get("scatter_pair")}


def _learning(cfg: StudyAConfig) -> dict[str, dict[str, Any]]:
    """Per model with an SAE: `sae.convergence.learning_summary` (FVE, L0, movement from init, seed stability,
    learned or not and why)."""
    from babelscope.sae.convergence import learning_summary

    return {name: learning_summary(cfg.sae[name]) for name in (cfg.base, cfg.cp) if name in cfg.sae}


def not_learned(problems: dict[str, list[str]]) -> str:
    """A note naming the SAEs (name -> why it did not learn; empty: it did) that did not learn, "" when all did:
    their features are near their random init, so a finding read from them describes an initialisation."""
    bad = [f"{name}: {'; '.join(why)}" for name, why in problems.items() if why]
    return ("the SAE probably did not learn, so its features are near their random init and the verdict cannot "
            "stand (" + " | ".join(bad) + ")") if bad else ""


def summarize_study_a(cfg: StudyAConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The claims of Study A on this run (written to OUT/summary.json)."""
    from babelscope.files import write_json_atomic

    losses = _read_json(cfg.losses) or {}
    marks = _read_json(cfg.marks) or {}
    claims = [
        claim("A1", "Continual pre-training on native stories replaces the English-origin names that translated "
                    "data carries with Arabic ones", "the CP model writes Arabic names (section 5, qualitative)",
              _share_claim(marks, cfg.base, cfg.cp, "names_english", ("names_english", "names_arabic")),
              "negative", "share of English-origin names among the names in generated stories, CP minus base"),
        claim("A2", "... and moves dialogue tags before the quote, the Arabic order",
              "qualitative (section 5)",
              _share_claim(marks, cfg.base, cfg.cp, "tags_after", ("tags_after", "tags_before")),
              "negative", "share of dialogue tags after their quote, CP minus base"),
        _quality_claim(cfg, losses),
    ]
    learning = _learning(cfg)
    truth = {name: _ground_truth(cfg, name) for name in (cfg.base, cfg.cp) if name in cfg.features}
    why = not_learned({name: s["warnings"] for name, s in learning.items()})
    claims += [_tsea_claim(cfg, truth, why), _detector_claim(cfg, truth, why)]
    models = {name: {"losses": losses.get("losses", {}).get(name), "marks": marks.get(name),
                     "sae": learning.get(name), "ground_truth": truth.get(name),
                     "tsea": _tsea_counts(cfg.tsea[name]) if name in cfg.tsea else None}
              for name in (cfg.base, cfg.cp)}
    summary = {"study": "A", "title": "Translated data, continual pre-training and dictionary learning (Boughorbel "
                                      "et al.)", "claims": claims, "models": models,
               "links": {"dashboards": cfg.dashboards, "tsea": cfg.tsea, "features": cfg.features}}
    write_json_atomic(Path(cfg.out) / "summary.json", summary)
    for c in claims:
        log(f"{c['id']}: {c['verdict']}")
    return summary


def _quality_claim(cfg: StudyAConfig, losses: dict) -> dict[str, Any]:
    """The judge's scores when a judge ran; else the loss on held-out native stories as the proxy."""
    paper = PAPER["judge_33m"]
    paper_text = ("33M judge (grammar/creativity/consistency): " +
                  "/".join(f"{paper['base'][k]:.2f}" for k in paper["base"]) + " -> " +
                  "/".join(f"{paper['cp'][k]:.2f}" for k in paper["cp"]))
    text = "Continual pre-training improves the stories (an LLM judge's scores)"
    if cfg.judge and Path(cfg.judge).is_file():
        import csv as csv_module

        with open(cfg.judge, encoding="utf-8") as f:
            rows = {r["model"]: r for r in csv_module.DictReader(f)}
        if cfg.base in rows and cfg.cp in rows:
            diff = {k: float(rows[cfg.cp][k]) - float(rows[cfg.base][k]) for k in ("grammar", "creativity",
                                                                                      "consistency")}
            ours = {"value": sum(diff.values()) / 3, "low": float("nan"), "high": float("nan"),
                    "by_criterion": diff, "unit": "mean judge score (cp - base)"}
            return claim("A3", text, paper_text, ours, "positive", "no interval: the judge gives one score per story")
    ls = losses.get("losses", {})
    if cfg.base in ls and cfg.cp in ls and cfg.native_set in ls[cfg.base]:
        b, c = ls[cfg.base], ls[cfg.cp]
        d = c[cfg.native_set]["loss"] - b[cfg.native_set]["loss"]
        ours = {"value": d, "low": float("nan"), "high": float("nan"), "unit": "native held-out loss (cp - base)",
                "forgetting": c.get(cfg.translated_set, {}).get("loss", float("nan"))
                - b.get(cfg.translated_set, {}).get("loss", float("nan"))}
        row = claim("A3", text, paper_text, None, "negative",
                    "no judge endpoint was given; the native-style held-out loss is shown instead (lower is better)")
        row.update(ours=ours, verdict=INCONCLUSIVE)
        return row
    return claim("A3", text, paper_text, None, "positive", "neither a judge nor held-out losses were computed")


def _tsea_claim(cfg: StudyAConfig, truth: dict[str, dict[str, Any] | None], why: str) -> dict[str, Any]:
    """English-name-biased features (TSEA against null directions), base vs CP: the calibrated counts of
    `analysis.name_bias`, the difference of shares (base - CP) under the first null family as the number; the
    base SAE's selection checked against storyworld's English-name detectors; inconclusive when an SAE did not
    learn (`why`)."""
    from babelscope.analysis.name_bias import name_bias_findings

    text = "English-name-biased SAE features (TSEA) largely disappear after continual pre-training"
    paper = "qualitative (Figures 5-6): far fewer features > 2 from the diagonal after CP; no count or null"
    if cfg.base not in cfg.tsea or cfg.cp not in cfg.tsea:
        return claim("A4", text, paper, None, "positive")
    findings = name_bias_findings({cfg.base: cfg.tsea[cfg.base], cfg.cp: cfg.tsea[cfg.cp]}, base=cfg.base,
                                  cp=cfg.cp)
    comparison = findings.get("comparison") or {}
    if not comparison:
        return claim("A4", text, paper, None, "positive")
    family, first = next(iter(comparison.items()))
    lo, hi = first["interval"]
    ours = {"value": first["difference"], "low": lo, "high": hi, "family": family,
            "base": first["base_count"], "cp": first["cp_count"],
            "unit": f"share of features flagged English-biased against the {family} null, base - CP"}
    notes = [r["line"] for r in comparison.values()]
    agree = (truth.get(cfg.base) or {}).get("tsea_agreement")
    if agree:
        notes.append(_agreement_line(cfg.base, agree))
    row = claim("A4", text, paper, ours, "positive", "; ".join(notes))
    row["verdict"] = FROM_FINDINGS.get(findings.get("verdict"), row["verdict"])
    row["findings"] = findings
    return gate(row, why)


def gate(row: dict[str, Any], why: str) -> dict[str, Any]:
    """A claim read from SAE features is inconclusive when an SAE did not learn (`why`, from `not_learned`),
    whatever its counts say."""
    if why and row["verdict"] != NOT_RUN:
        row["verdict"], row["note"] = INCONCLUSIVE, f"{why}. {row['note']}"
    return row


def _agreement_line(name: str, a: dict[str, Any]) -> str:
    if not a["selected"]:
        return (f"{name}: TSEA flags no English-biased feature to check against the {a['detectors']} "
                "ground-truth English-name detectors")
    p = "-" if a["p_value"] is None else f"{a['p_value']:.2g}"
    recall = "-" if a["recall"] is None else f"{a['recall']:.2f}"
    return (f"{name}: of the {a['selected']} English-biased features TSEA flags ({a['rule']}), {a['overlap']} are "
            f"storyworld English-name detectors (precision {a['precision']:.2f} vs {a['chance_precision']:.2f} by "
            f"chance, recall {recall}, hypergeometric p {p})")


def tsea_selection(tsea_dir: str | Path, english: str = "english_names") -> tuple[list[int], str]:
    """The features a TSEA output calls English-biased, and the rule: those its primary null family flags
    (favours `english`, q below the level); when it flags none, the study's rule (gap beyond the threshold)."""
    from babelscope.report.tsea import read_tables

    tables = read_tables(tsea_dir)
    meta, null = tables["meta"], tables["meta"].get("null") or {}
    cal = tables["calibrated"].get(null.get("primary"))
    if cal is None:
        return [], "no calibrated test"
    features = cal["feature"].astype(int)
    flagged = features[(cal["favours"] == english) & (cal["q_value"] < null["level"])]
    if len(flagged):
        return flagged.tolist(), f"q < {null['level']:g} against the {null['primary']} null"
    sign = 1.0 if (meta.get("scatter_pair") or [None, english])[1] == english else -1.0
    return features[sign * cal["gap"] > meta["threshold"]].tolist(), f"gap > {meta['threshold']:g} from the diagonal"


def _ground_truth(cfg: StudyAConfig, name: str) -> dict[str, Any] | None:
    """storyworld's referee for one model's SAE (`analysis.groundtruth`): per planted concept, how many features
    detect it beside the random-direction and shuffled-label controls, and how TSEA's English-biased selection
    agrees with the English-name detectors; None when the feature store has no detector table."""
    from babelscope.analysis.groundtruth import selection_agreement, store_detectors

    counts = store_detectors(cfg.features[name])
    if counts is None:
        return None
    concepts = {c: {"n_pos": e["n_pos"], **{d: {k: v for k, v in e[d].items() if k != "features"}
                                             for d in counts["definitions"]},
                    "best_auroc": e["best_auroc"]} for c, e in counts["concepts"].items()}
    out: dict[str, Any] = {"n_features": counts["n_features"], "concepts": concepts}
    if name in cfg.tsea:
        selected, rule = tsea_selection(cfg.tsea[name])
        agree = selection_agreement(cfg.features[name], selected)
        if agree is not None:
            out["tsea_agreement"] = {**agree, "rule": rule}
    return out


def _detector_claim(cfg: StudyAConfig, truth: dict[str, dict[str, Any] | None], why: str) -> dict[str, Any]:
    """The same claim judged by storyworld's ground truth rather than logit weights: the share of features that
    detect English-origin name tokens (selective: >= 80% of their strong activations on such tokens), base - CP,
    with Newcombe's interval; not reproduced when the base model's detectors do not outnumber random directions
    as sparse as its features; inconclusive when an SAE did not learn (`why`)."""
    text = "... judged by storyworld's ground truth: fewer features detect English-origin names after CP"
    paper = "not measured (the paper has no ground truth)"
    b, c = truth.get(cfg.base), truth.get(cfg.cp)
    concept = "name_english"
    if not b or not c or concept not in b["concepts"] or concept not in c["concepts"]:
        return claim("A5", text, paper, None, "positive", "the feature stores have no storyworld spans")
    kb, kc = b["concepts"][concept]["selective"], c["concepts"][concept]["selective"]
    d, lo, hi = diff_proportions(kb["detectors"], b["n_features"], kc["detectors"], c["n_features"])
    ours = {"value": d, "low": lo, "high": hi, "base": kb["detectors"], "cp": kc["detectors"],
            "base_random": kb.get("random"), "cp_random": kc.get("random"),
            "unit": "share of features detecting English-origin names, base - CP"}
    note = (f"English-name detectors: {cfg.base} {kb['detectors']} (random directions {kb.get('random', '-')}, "
            f"shuffled labels {kb.get('shuffled', '-')}), {cfg.cp} {kc['detectors']} (random {kc.get('random', '-')})"
            f" of {b['n_features']} features")
    row = claim("A5", text, paper, ours, "positive", note)
    if kb.get("random") is not None and kb["detectors"] <= kb["random"]:
        row["verdict"] = NOT_REPRODUCED
        row["note"] += f"; {cfg.base}'s detectors do not outnumber random directions"
    return gate(row, why)


FROM_FINDINGS = {"supported": REPRODUCED, "not supported": NOT_REPRODUCED, "inconclusive at this scale": INCONCLUSIVE}

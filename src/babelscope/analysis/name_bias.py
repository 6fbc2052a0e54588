"""Study A's claim about name-biased features, judged from `analyze tsea` outputs.

The claim (Study A, section on SAE features): the model pre-trained on translated stories has features whose
logit weights favour English names over Arabic names, and after continual pre-training on native stories these
features largely disappear. The paper shows it in scatter plots (features "more than 2 points from the
diagonal"); it gives no count and no null.

Here each model's English-biased features are those the calibrated test flags (`analysis.null`: each feature's
English-minus-Arabic gap against a null family's pooled gaps, Benjamini-Hochberg at the chosen level), per
null family; the base-vs-CP comparison is the difference of the shares with a Newcombe interval. Verdicts:
- per model and family: "supported" when at least one English-biased feature is flagged, else "not supported";
- the comparison, per family: "supported" when the base model has English-biased features and its share
  exceeds CP's with an interval above zero; "not supported" when the base model has none or CP's share is
  larger with an interval below zero; otherwise "inconclusive at this scale";
- overall: the per-family verdict when all families agree, else "inconclusive at this scale" (it depends on the
  null).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from babelscope.analysis.null import share_difference
from babelscope.errors import UserError

CLAIM = "English-name-biased features (base model) largely disappear after continual pre-training"
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive at this scale"


def _sides(meta: dict, english: str, arabic: str, where: Path) -> tuple[str, str]:
    pair = meta.get("scatter_pair") or []
    if set(pair) != {english, arabic}:
        raise UserError(f"the TSEA pair is {pair}, not {english} and {arabic}; run `analyze tsea --scatter "
                        f"{arabic},{english}`", path=where)
    if not meta.get("null"):
        raise UserError("this TSEA output has no null (run `analyze tsea` with --null families)", path=where)
    return pair[1], pair[0]  # (above the diagonal, below it)


def model_findings(meta: dict, *, english: str = "english_names", arabic: str = "arabic_names",
                   name: str = "model", where: Path | None = None) -> dict[str, Any]:
    """One model's calibrated counts per null family, the study's threshold count beside the null's, and the
    verdict on "this model has English-name-biased features beyond the null"."""
    above, _ = _sides(meta, english, arabic, where or Path("."))
    beyond = meta["beyond_threshold"]
    threshold_count = ({"english": beyond["above"], "arabic": beyond["below"]} if above == english
                       else {"english": beyond["below"], "arabic": beyond["above"]})
    out: dict[str, Any] = {"features": meta["n_features"], "hook": meta.get("hook"), "threshold": meta["threshold"],
                           "threshold_count": threshold_count, "level": meta["null"]["level"], "families": {}}
    for family in meta["null"]["order"]:
        r = meta["null"]["families"][family]
        en, ar = r["calibrated"][english], r["calibrated"][arabic]
        verdict = SUPPORTED if en["count"] > 0 else NOT_SUPPORTED
        tc = r.get("threshold_count", {})
        lo, hi = en["count_interval"]
        alo, ahi = ar["count_interval"]
        null_t = {"english": tc.get(english), "arabic": tc.get(arabic)}
        nt = null_t["english"]
        line = (f"{name}, {family} null: {en['count']} English-biased (95% CI {lo:.0f}-{hi:.0f}) and {ar['count']} "
                f"Arabic-biased ({alo:.0f}-{ahi:.0f}) of {en['of']} features at q < {r['level']:g}; the study's "
                f"count {threshold_count['english']} English-biased vs "
                + (f"{nt['mean']:.0f} ± {nt['sd']:.0f} for null directions" if nt else "no null count")
                + (f" (at least {r['min_detectable']} features together could reach q < {r['level']:g})"
                   if en["count"] == 0 and r["min_detectable"] > 1 else "")
                + f"; '{name} has English-name-biased features beyond this null': {verdict}")
        out["families"][family] = {
            "english": en, "arabic": ar, "null_threshold_count": null_t, "min_detectable": r["min_detectable"],
            "null_flagged": (r.get("null_flagged") or {}).get("mean"), "verdict": verdict, "line": line}
    return out


def name_bias_findings(tsea_dirs: Mapping[str, str | Path], *, base: str = "base", cp: str = "cp",
                       english: str = "english_names", arabic: str = "arabic_names") -> dict[str, Any]:
    """Study A's verdict from the `analyze tsea` output directories of the base and the CP model (keyed by
    name): per model and null family the calibrated counts with intervals, the old threshold count beside the
    null's mean and spread, the base-minus-CP difference of English-biased shares with its interval, and
    one-line verdicts. JSON-ready."""
    models = {}
    for name, d in tsea_dirs.items():
        path = Path(d) / "meta.json"
        if not path.exists():
            raise UserError("no TSEA output (meta.json); run `babelscope analyze tsea` first", path=Path(d))
        models[name] = model_findings(json.loads(path.read_text(encoding="utf-8")), english=english, arabic=arabic,
                                      name=name, where=Path(d))
    out: dict[str, Any] = {"claim": CLAIM, "paper": "shown in scatter plots (features > 2 from the diagonal); no "
                                                      "count, interval or null", "models": models}
    if base not in models or cp not in models:
        return out
    b, c = models[base], models[cp]
    comparison = {}
    for family in b["families"]:
        if family not in c["families"]:
            continue
        kb, kc = b["families"][family]["english"]["count"], c["families"][family]["english"]["count"]
        diff = share_difference(kb, b["families"][family]["english"]["of"], kc,
                                c["families"][family]["english"]["of"])
        lo, hi = diff["interval"]
        if kb == 0:
            verdict, why = NOT_SUPPORTED, f"{base} has no English-biased feature beyond this null"
        elif lo > 0:
            verdict, why = SUPPORTED, f"{base}'s share exceeds {cp}'s"
        elif hi < 0:
            verdict, why = NOT_SUPPORTED, f"{cp}'s share exceeds {base}'s"
        else:
            verdict, why = INCONCLUSIVE, "the difference is not distinguishable from zero"
        comparison[family] = {
            **diff, "base_count": kb, "cp_count": kc, "verdict": verdict,
            "line": (f"{family} null: English-biased share {base} - {cp} = {diff['difference']:+.4f} "
                     f"(95% CI {lo:+.4f} to {hi:+.4f}), {diff['reading'].split(' (')[0]}; {why}: {verdict}")}
    out["comparison"] = comparison
    verdicts = {r["verdict"] for r in comparison.values()}
    out["verdict"] = verdicts.pop() if len(verdicts) == 1 else INCONCLUSIVE
    out["line"] = (f"Study A's claim ({CLAIM}): {out['verdict']}"
                   + ("" if len({r['verdict'] for r in comparison.values()}) <= 1 else
                      " (the verdict depends on the null family: "
                      + ", ".join(f"{f}: {r['verdict']}" for f, r in comparison.items()) + ")"))
    return out


def findings_lines(findings: dict[str, Any]) -> list[str]:
    """The findings as printable lines: per model and family, then the comparison, then the verdict."""
    lines = [r["line"] for m in findings["models"].values() for r in m["families"].values()]
    lines += [r["line"] for r in findings.get("comparison", {}).values()]
    if "line" in findings:
        lines.append(findings["line"])
    return lines

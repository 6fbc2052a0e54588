"""One report of a recipe's studies: OUT/report/index.html and report.md with each study's claims beside the
paper's numbers and ours (interval, verdict), its key figures, sample generations and links to the dashboards,
the bilingual study's pages and the run files. Offline: figures are copied beside the page, nothing loads from
the network, and every text goes through the template's escaping."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babelscope.settings import Settings, opt

VERDICT_CLASS = {"reproduced": "v-reproduced", "not reproduced": "v-not", "inconclusive at this scale":
                 "v-inconclusive", "not run": "v-notrun"}


@dataclass(kw_only=True)
class ReportConfig(Settings):
    """What the report shows."""

    out: str = opt(help="output directory (index.html, report.md, figures/)")
    studies: list[str] = opt(help="the studies' summary.json files", default_factory=list)
    figures: dict[str, list[str]] = opt(help="study (A, B) -> figure files to show", default_factory=dict)
    links: dict[str, dict[str, str]] = opt(help="study -> {text: path} links", default_factory=dict)
    samples: str | None = opt(None, "losses.json whose sample generations to show under Study A")


def _num(x: Any) -> str:
    if isinstance(x, float):
        return "-" if not math.isfinite(x) else f"{x:+.3f}" if abs(x) < 100 else f"{x:+.1f}"
    return "-" if x is None else str(x)


def claim_cells(c: dict[str, Any]) -> dict[str, Any]:
    """A claims-table row's display values: ours and its interval as text, the verdict's class, the unit, and the
    note's findings one per line."""
    ours = c.get("ours") or {}
    lo, hi = ours.get("low"), ours.get("high")
    interval = f"[{_num(lo)}, {_num(hi)}]" if isinstance(lo, float) and math.isfinite(lo) else "-"
    return {**c, "ours_text": _num(ours.get("value")) if ours else "-", "interval_text": interval,
            "verdict_class": VERDICT_CLASS.get(c["verdict"], ""), "unit": ours.get("unit", ""),
            "note_lines": [part for part in (c.get("note") or "").split("; ") if part]}


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def sae_rows(models: dict[str, Any]) -> list[dict[str, str]]:
    """Per model with an SAE, whether its features can be trusted: validation FVE, L0, dead share, the median
    cosine of its decoder rows with their random init, two seeds' match beside two untrained inits', the
    verdict on learning and storyworld's English-name detectors beside random directions'."""
    rows = []
    for name, m in models.items():
        sae = (m or {}).get("sae")
        if not sae:
            continue
        dec, st = sae.get("decoder") or {}, sae.get("stability") or {}
        gt = (((m.get("ground_truth") or {}).get("concepts") or {}).get("name_english") or {}).get("selective")
        rows.append({
            "model": name, "fve": _fmt(sae.get("fve"), ".3f"), "l0": _fmt(sae.get("l0"), ".1f"),
            "dead": _fmt(sae.get("dead_fraction"), ".1%"),
            "cos_init": _fmt((dec.get("cos_to_init") or {}).get("median"), ".3f"),
            "seeds": f"{st['mmcs']:.3f} vs {st['init_mmcs']:.3f}" if st else "-",
            "learned": "yes" if sae.get("learned") else "no: " + "; ".join(sae.get("warnings", [])),
            "detectors": f"{gt['detectors']} (random {gt.get('random', '-')})" if gt else "-"})
    return rows


SAE_COLUMNS = {"model": "model", "fve": "FVE", "l0": "L0", "dead": "dead", "cos_init": "median cos to init",
               "seeds": "seeds' match (init's)", "learned": "learned", "detectors": "English-name detectors"}


def _href(target: str | Path, page_dir: Path) -> str:
    return os.path.relpath(Path(target).resolve(), page_dir.resolve())


def write_report(cfg: ReportConfig, root: Path | None = None) -> Path:
    """Write the report; returns index.html's path."""
    from babelscope.files import write_text_atomic
    from babelscope.report.dashboard import _env

    out = Path(cfg.out)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    studies = []
    for path in cfg.studies:
        s = json.loads(Path(path).read_text(encoding="utf-8"))
        key = s.get("study", "?")
        figures = []
        for i, f in enumerate(cfg.figures.get(key, [])):
            if Path(f).is_file():
                name = f"{key}-{i}-{Path(f).name}"
                shutil.copyfile(f, figdir / name)
                figures.append({"src": f"figures/{name}", "caption": f"{Path(f).parent.name}/{Path(f).name}"})
        links = [{"text": text, "href": _href(target, out)} for text, target in cfg.links.get(key, {}).items()
                 if Path(target).exists()]
        samples = {}
        if key == "A" and cfg.samples and Path(cfg.samples).is_file():
            samples = json.loads(Path(cfg.samples).read_text(encoding="utf-8")).get("samples", {})
        studies.append({**s, "claims": [claim_cells(c) for c in s.get("claims", [])], "figures": figures,
                        "links": links, "samples": samples, "sae_rows": sae_rows(s.get("models") or {})})
    stages = []
    if root is not None:
        for d in sorted(p for p in root.iterdir() if (p / "stage.json").is_file()):
            st = json.loads((d / "stage.json").read_text(encoding="utf-8"))
            secs = sum(r.get("seconds", 0) for r in st.get("runs", []) if r.get("action") in ("ran", "resumed"))
            stages.append({"name": d.name, "kind": st.get("kind"), "seconds": f"{secs:.0f}", "dir": d.name,
                           "href": _href(d, out)})
    title = root.name if root is not None else out.parent.name
    html = _env().get_template("report.html.j2").render(title=title, recipe=title, studies=studies, stages=stages,
                                                        sae_columns=SAE_COLUMNS)
    write_text_atomic(out / "index.html", html)
    write_text_atomic(out / "report.md", report_markdown(studies, title))
    return out / "index.html"


def report_markdown(studies: list[dict[str, Any]], title: str) -> str:
    """The claims tables as markdown (what docs/results/ and the README quote)."""
    lines = [f"# babelscope report: {title}", ""]
    for s in studies:
        lines += [f"## Study {s.get('study')}: {s.get('title', '')}", "",
                  "| id | claim | paper | ours | 95% interval | verdict |", "|---|---|---|---|---|---|"]
        for c in s["claims"]:
            cell = [c["id"], c["claim"], c["paper"], c["ours_text"], c["interval_text"], c["verdict"]]
            lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cell) + " |")
        notes = [f"- {c['id']}: {c['note']}" + (f" ({c['unit']})" if c["unit"] else "")
                 for c in s["claims"] if c.get("note") or c.get("unit")]
        lines += ["", *notes, ""]
        if s.get("sae_rows"):
            lines += ["Can the SAEs be trusted?", "", "| " + " | ".join(SAE_COLUMNS.values()) + " |",
                      "|" + "---|" * len(SAE_COLUMNS)]
            lines += ["| " + " | ".join(r[k].replace("|", "\\|") for k in SAE_COLUMNS) + " |" for r in s["sae_rows"]]
            lines.append("")
        for f in s.get("figures", []):
            lines.append(f"![{f['caption']}]({f['src']})")
        lines.append("")
    return "\n".join(lines)

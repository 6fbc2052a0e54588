"""Recipes: stage keys (same settings, same key; an upstream change reruns downstream), skip/rerun/resume after a
kill, clear errors for bad recipes and missing inputs, the plans of the papers' recipes, and the report's claims
table against summary.json."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from babelscope.errors import UserError
from babelscope.recipes.recipe import InputRef, Ref, downstream, load_recipe
from babelscope.recipes.runner import fingerprint, prepare, run_recipe

RECIPE = """
[recipe]
name = "tiny"
out = "tiny_out"

[defaults]
device = "cpu"
seed = 0

[stages.stories]
kind = "storyworld"
stories = {stories}
langs = ["ar"]

[stages.tok]
kind = "tokenizer"
data = ["@stories"]
vocab_size = 400
context = 64

[stages.model]
kind = "train"
data = ["@stories"]
tokenizer = "@tok"
preset = "tiny"
context = 64
batch_size = 4
lr = 3e-3
max_steps = {steps}
save_every = 2
eval_every = 1000
eval_batches = 1
val_fraction = 0.2
"""


def _write(tmp_path: Path, stories: int = 20, steps: int = 6, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(RECIPE.format(stories=stories, steps=steps), encoding="utf-8")
    return path


def _keys(path: Path, root: Path, *overrides: str) -> dict[str, str]:
    recipe = load_recipe(path, list(overrides))
    return {n: s.key for n, s in prepare(recipe, root, {}, recipe.defaults).items()}


def test_recipe_parses_references_and_orders_stages(tmp_path):
    recipe = load_recipe(_write(tmp_path))
    assert list(recipe.stages) == ["stories", "tok", "model"]
    assert recipe.stages["model"].settings["tokenizer"] == Ref("tok")
    assert recipe.stages["model"].deps() == ["stories", "tok"]
    assert downstream(recipe, {"tok"}) == {"tok", "model"}


def test_keys_depend_on_settings_and_upstream_not_on_volatile_fields(tmp_path):
    path = _write(tmp_path)
    root = tmp_path / "out"
    base = _keys(path, root)
    assert base == _keys(path, tmp_path / "elsewhere")  # the output directory is not part of a key
    assert _keys(path, root, "defaults.device=cuda") == base  # volatile: moving to a GPU redoes nothing
    changed = _keys(path, root, "model.lr=1e-3")
    assert changed["model"] != base["model"] and changed["tok"] == base["tok"]
    upstream = _keys(path, root, "stories.stories=21")
    assert all(upstream[n] != base[n] for n in base)  # a changed corpus invalidates everything after it


def test_input_fingerprint_follows_content_not_path(tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text('{"text": "x"}\n')
    (tmp_path / "sub").mkdir()
    b = tmp_path / "sub" / "b.jsonl"
    b.write_text('{"text": "x"}\n')
    assert fingerprint(a) == fingerprint(b)
    b.write_text('{"text": "y"}\n')
    assert fingerprint(a) != fingerprint(b)


def test_bad_recipes_give_one_clear_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[stages.a]\nkind = "storyworld"\nstories = 1\n[stages.b]\nkind = "tokenizer"\ndata = ["@nope"]\n')
    with pytest.raises(UserError, match="refers to @nope"):
        load_recipe(path)
    path.write_text('[stages.a]\nkind = "frobnicate"\n')
    with pytest.raises(UserError, match="unknown kind 'frobnicate'"):
        load_recipe(path)
    path.write_text('[stages.a]\nkind = "tokenizer"\ndata = ["@b"]\n[stages.b]\nkind = "tokenizer"\ndata = ["@a"]\n')
    with pytest.raises(UserError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
        load_recipe(path)
    with pytest.raises(UserError, match="no stage 'nope'"):
        load_recipe(_write(tmp_path), ["nope.lr=1"])
    with pytest.raises(UserError, match="unknown setting 'lrr'"):
        run_recipe(_write(tmp_path), tmp_path / "o", ["model.lrr=1"], log=lambda m: None)
    assert not (tmp_path / "o" / "model").exists()


def test_missing_required_input_is_one_line_before_anything_runs(tmp_path, capsys):
    from helpers import run_cli

    path = tmp_path / "needs.toml"
    path.write_text('[inputs.corpus]\nkind = "file"\nhelp = "the stories to train on"\n'
                    '[stages.tok]\nkind = "tokenizer"\ndata = ["$corpus"]\n')
    assert isinstance(load_recipe(path).stages["tok"].settings["data"][0], InputRef)
    assert run_cli("run", path, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input 'corpus' is required" in err[0] and "the stories to train on" in err[0]
    assert not (tmp_path / "o").exists()
    assert run_cli("run", path, "--out", tmp_path / "o", "--set", f"inputs.corpus={tmp_path / 'none.jsonl'}") == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_rerun_skips_a_change_reruns_downstream_and_timings_are_kept(tmp_path):
    path = _write(tmp_path)
    out = tmp_path / "out"
    first = run_recipe(path, out, log=lambda m: None)
    assert {s["status"] for s in first["stages"].values()} == {"ran"}
    t_model = first["stages"]["model"]["seconds"]
    again = run_recipe(path, out, log=lambda m: None)
    assert {s["status"] for s in again["stages"].values()} == {"skipped"}
    assert again["stages"]["model"]["seconds"] == t_model  # the first run's timing is kept
    assert [r["action"] for r in again["stages"]["model"]["runs"]] == ["ran", "skipped"]
    changed = run_recipe(path, out, ["model.lr=1e-3"], log=lambda m: None)
    assert {n: s["status"] for n, s in changed["stages"].items()} == {"stories": "skipped", "tok": "skipped",
                                                                         "model": "ran"}
    state = json.loads((out / "model" / "stage.json").read_text())
    assert state["settings"]["lr"] == 1e-3 and state["status"] == "done"
    assert (out / "model" / "final" / "config.json").exists()


def _final_weights(run: Path):
    from safetensors.torch import load_file

    return load_file(str(run / "final" / "model.safetensors"))


@pytest.mark.slow
def test_a_killed_recipe_resumes_mid_stage_to_the_same_model(tmp_path):
    import torch

    path = _write(tmp_path, steps=40)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BABELSCOPE_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "babelscope.cli", "run", str(path), "--out"]
    ref = tmp_path / "ref"
    subprocess.run([*cmd, str(ref)], env=env, check=True, capture_output=True, timeout=600)

    out = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    ckpts = out / "model" / "checkpoints"
    while time.time() < deadline and not (ckpts.is_dir() and any(p.name.startswith("step-") for p in ckpts.iterdir())):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((out / "model" / "stage.json").read_text())
    assert state["status"] == "running"  # killed mid-stage
    r = subprocess.run([*cmd, str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "model (train): resuming" in r.stderr
    a, b = _final_weights(ref / "model"), _final_weights(out / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_plans_of_the_papers_recipes_count_their_tokens(capsys):
    from babelscope.recipes.plan import plan

    a = {r["stage"]: r for r in plan(load_recipe("study_a"), calibrate=False)}
    # 2.1M TinyStories at ~230 tokens: about half a billion tokens translated and trained on, one epoch
    assert 4e8 < a["base_33m"]["tokens"] < 7e8 and a["base_33m"]["flops"] > 1e17
    assert a["native"]["tokens"] == 0 and "20,000 chat requests" in a["native"]["note"]
    assert a["sae_base"]["tokens"] > 5e7 and a["base_33m"]["seconds_accelerator"] > 0
    b = {r["stage"]: r for r in plan(load_recipe("study_b"), calibrate=False)}
    sweeps = [r for r in b.values() if r["kind"] == "sweep"]
    assert len(sweeps) == 3 and all("x32768" in r["note"] for r in sweeps)


class _Claims(HTMLParser):
    """The claims tables of the report: study -> [(id, ours, interval, verdict)]."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self.study = self.row = self.cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "data-study" in a:
            self.study = a["data-study"]
            self.rows[self.study] = []
        elif tag == "tr" and self.study and "data-claim" in a:
            self.row = []
            self.rows[self.study].append(self.row)
        elif tag == "td" and self.row is not None:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self.row is not None and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr":
            self.row = None
        elif tag == "table":
            self.study = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _summary(study: str, claims: list[dict]) -> dict:
    return {"study": study, "title": f"study {study} <b>", "claims": claims}


def test_report_claims_table_matches_the_summaries_and_escapes_text(tmp_path):
    from babelscope.analysis.intervals import verdict
    from babelscope.recipes.study_a import claim
    from babelscope.report.report import ReportConfig, write_report

    a = [claim("A1", "names <script>alert(1)</script>", "qualitative", {"value": -0.5, "low": -0.6, "high": -0.4,
                                                                           "unit": "share"}, "negative"),
         claim("A3", "quality", "6.83 -> 7.08", None, "positive", "no judge")]
    b = [claim("B1", "mixed share falls", "Figure 2", {"value": 0.02, "low": -0.01, "high": 0.05}, "positive")]
    paths = []
    for study, claims in (("A", a), ("B", b)):
        paths.append(tmp_path / f"{study}.json")
        paths[-1].write_text(json.dumps(_summary(study, claims)))
    # Study A's SAE health: one SAE that learned, one that did not (its reason shown, escaped)
    sae = {"fve": 0.81, "l0": 12.0, "dead_fraction": 0.01, "decoder": {"cos_to_init": {"median": 0.23}},
           "stability": {"mmcs": 0.71, "init_mmcs": 0.2}, "learned": True, "warnings": []}
    summary = json.loads(paths[0].read_text())
    summary["models"] = {
        "base": {"sae": sae, "ground_truth": {"concepts": {"name_english": {"selective": {"detectors": 31,
                                                                                          "random": 4}}}}},
        "cp": {"sae": {**sae, "decoder": {"cos_to_init": {"median": 0.97}}, "stability": None, "learned": False,
                       "warnings": ["kept <init>"]}},
        "other": {"sae": None}}
    paths[0].write_text(json.dumps(summary))
    fig = tmp_path / "fig.png"
    fig.write_bytes(b"\x89PNG\r\n\x1a\n")
    page = write_report(ReportConfig(out=str(tmp_path / "report"), studies=[str(p) for p in paths],
                                     figures={"A": [str(fig)]}))
    html = page.read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "study A &lt;b&gt;" in html
    parsed = _Claims()
    parsed.feed(html)
    assert [r[0] for r in parsed.rows["A"]] == ["A1", "A3"] and [r[0] for r in parsed.rows["B"]] == ["B1"]
    for study, claims in (("A", a), ("B", b)):
        for row, c in zip(parsed.rows[study], claims, strict=True):
            assert row[5] == c["verdict"]
            if c["ours"]:
                assert float(row[3]) == pytest.approx(c["ours"]["value"], abs=1e-3)
                lo, hi = (float(x) for x in re.findall(r"[-+]?\d*\.\d+", row[4]))
                assert (lo, hi) == (pytest.approx(c["ours"]["low"], abs=1e-3), pytest.approx(c["ours"]["high"],
                                                                                          abs=1e-3))
    assert a[0]["verdict"] == verdict(-0.6, -0.4, "negative") == "reproduced"
    assert b[0]["verdict"] == "inconclusive at this scale" and a[1]["verdict"] == "not run"
    assert (tmp_path / "report" / "figures").is_dir() and 'src="figures/A-0-fig.png"' in html
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| A1 |" in md and "reproduced" in md
    health = re.search(r'<table class="sae-health">(.*?)</table>', html, re.S)[1]
    cells = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", health, re.S)[1:]]
    assert cells == [["base", "0.810", "12.0", "1.0%", "0.230", "0.710 vs 0.200", "yes", "31 (random 4)"],
                     ["cp", "0.810", "12.0", "1.0%", "0.970", "-", "no: kept &lt;init&gt;", "-"]]
    assert "| base | 0.810 | 12.0 | 1.0% | 0.230 | 0.710 vs 0.200 | yes | 31 (random 4) |" in md


def test_verdicts_follow_the_interval():
    from babelscope.analysis.intervals import bootstrap_diff, diff_proportions, verdict, wilson

    assert verdict(0.1, 0.3, "positive") == "reproduced"
    assert verdict(-0.3, -0.1, "positive") == "not reproduced"
    assert verdict(-0.1, 0.3, "negative") == "inconclusive at this scale"
    assert verdict(float("nan"), 1.0, "positive") == "inconclusive at this scale"
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)  # textbook values
    d, lo, hi = diff_proportions(56, 70, 48, 80)  # Newcombe (1998), example (a): 0.2, [0.0524, 0.3339]
    assert (d, lo, hi) == (pytest.approx(0.2), pytest.approx(0.0524, abs=1e-3), pytest.approx(0.3339, abs=1e-3))
    d, lo, hi = bootstrap_diff([1.0] * 50 + [2.0] * 50, [1.0] * 100)
    assert d == pytest.approx(0.5) and 0.3 < lo < 0.5 < hi < 0.7


def test_run_help_and_demo_alias_name_the_bundled_recipes():
    out = subprocess.run([sys.executable, "-m", "babelscope.cli", "run", "--help"], capture_output=True, text=True,
                         env={**os.environ, "BABELSCOPE_NO_PROGRESS": "1"})
    assert out.returncode == 0 and "demo, medium, study_a, study_b" in " ".join(out.stdout.split())
    for name in ("demo", "medium", "study_a", "study_b"):
        r = load_recipe(name)
        assert r.stages and all(s.kind for s in r.stages.values())
    medium, demo = load_recipe("medium"), load_recipe("demo")
    assert medium.stages.keys() == demo.stages.keys()  # medium extends demo
    assert medium.stages["translated"].settings["stories"] > demo.stages["translated"].settings["stories"]

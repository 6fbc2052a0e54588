"""Study A's summary: TSEA's selection read back, the ground-truth claim and the not-learned gate, on hand-made
tables whose verdicts are known."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from babelscope.recipes.study_a import StudyAConfig, _detector_claim, claim, gate, not_learned, tsea_selection


def _tsea_dir(d, q, gap, *, pair=("arabic_names", "english_names"), threshold=2.0):
    """A TSEA output in `d` with a calibrated table for the `untrained` null: one row per feature."""
    d.mkdir()
    n = len(q)
    favours = ["english_names" if g > 0 else "arabic_names" for g in gap]
    pq.write_table(pa.table({"feature": pa.array(range(n), pa.int32()), "family": ["untrained"] * n,
                             "gap": gap, "p_value": q, "q_value": q, "favours": favours}), d / "calibrated.parquet")
    pq.write_table(pa.table({"feature": pa.array([i for i in range(n) for _ in pair], pa.int32()),
                             "set": list(pair) * n, "score": [0.0] * 2 * n, "log_score": [0.0] * 2 * n}),
                   d / "tsea.parquet")
    (d / "meta.json").write_text(json.dumps({"scatter_pair": list(pair), "threshold": threshold, "n_features": n,
                                             "sets": list(pair), "null": {"primary": "untrained", "level": 0.05}}))
    return d


def test_tsea_selection_prefers_the_calibrated_test_and_falls_back_to_the_threshold(tmp_path):
    # features 1 and 3 favour English at q < 0.05; feature 2 favours Arabic at q < 0.05 (not English-biased)
    d = _tsea_dir(tmp_path / "a", q=[0.5, 0.01, 0.01, 0.04], gap=[3.0, 1.0, -1.0, 0.5])
    ids, rule = tsea_selection(d)
    assert ids == [1, 3] and rule == "q < 0.05 against the untrained null"
    # nothing flagged: the study's rule, gap beyond the threshold on the English side
    ids, rule = tsea_selection(_tsea_dir(tmp_path / "b", q=[0.5, 0.5, 0.5], gap=[3.0, -3.0, 1.9]))
    assert ids == [0] and rule.startswith("gap > 2")
    # the pair the other way round: English is x, so an English-biased gap is negative
    ids, _ = tsea_selection(_tsea_dir(tmp_path / "c", q=[0.5, 0.5], gap=[3.0, -3.0],
                                      pair=("english_names", "arabic_names")))
    assert ids == [1]


def _truth(detectors, random, n=1000):
    return {"n_features": n, "concepts": {"name_english": {"n_pos": 500, "selective": {
        "detectors": detectors, "random": random, "shuffled": 0}}}}


def test_detector_claim_verdicts():
    cfg = StudyAConfig(out="x")
    learned = not_learned({"base": [], "cp": []})
    assert learned == ""
    # 60 vs 5 of 1000 with 3 random-direction detectors: the difference is clear -> reproduced
    row = _detector_claim(cfg, {"base": _truth(60, 3), "cp": _truth(5, 2)}, learned)
    assert row["id"] == "A5" and row["verdict"] == "reproduced"
    assert row["ours"]["base"] == 60 and row["ours"]["low"] > 0
    # the base model's detectors do not beat random directions: the premise fails -> not reproduced
    row = _detector_claim(cfg, {"base": _truth(60, 80), "cp": _truth(5, 2)}, learned)
    assert row["verdict"] == "not reproduced" and "do not outnumber random" in row["note"]
    # 6 vs 5: indistinguishable -> inconclusive
    assert _detector_claim(cfg, {"base": _truth(6, 0), "cp": _truth(5, 0)}, learned)["verdict"] == \
        "inconclusive at this scale"
    # no spans in the stores -> not run
    assert _detector_claim(cfg, {"base": None, "cp": None}, learned)["verdict"] == "not run"
    # an SAE that did not learn makes any verdict inconclusive, and the note says which and why
    bad = not_learned({"base": [], "cp": ["its decoder rows kept a median cosine of 0.97"]})
    row = _detector_claim(cfg, {"base": _truth(60, 3), "cp": _truth(5, 2)}, bad)
    assert row["verdict"] == "inconclusive at this scale" and "cp: its decoder rows kept" in row["note"]


def test_gate_leaves_claims_that_were_not_run_alone():
    assert gate(claim("A4", "t", "p", None, "positive"), "too few steps")["verdict"] == "not run"
    assert gate(claim("A4", "t", "p", {"value": 1, "low": 0.5, "high": 2}, "positive"), "")["verdict"] == \
        "reproduced"


def test_claim_lines_print_each_sae_and_each_finding():
    from babelscope.recipes.runner import claim_lines

    sae = {"fve": 0.5, "l0": 3.0, "dead_fraction": 0.0, "decoder": {"cos_to_init": {"median": 0.95}},
           "stability": None, "learned": False, "warnings": ["kept its init"]}
    row = claim("A5", "detectors", "none", {"value": 0.05, "low": 0.01, "high": 0.09}, "positive",
                "base 60 detectors; cp 5 detectors")
    lines = claim_lines({"studies": {"A": {"study": "A", "title": "t", "claims": [row],
                                           "models": {"base": {"sae": sae}}}}})
    assert "  SAE base: FVE 0.500, L0 3.0, dead 0.0%, median cos to init 0.950, seeds' match (init's) -, learned " \
           "no: kept its init, English-name detectors -" in lines
    assert lines[-2:] == ["      base 60 detectors", "      cp 5 detectors"]
    assert any(line.startswith("  A5 REPRODUCED") for line in lines)


def test_study_b_gates_each_claim_on_the_cells_it_reads(tmp_path):
    from babelscope.recipes.study_b import _why, cell_problems

    rows = []
    for ckpt, layer, warnings in (("step-1", 0, ["kept its init"]), ("step-1", 1, []), ("final", 0, [])):
        rows.append({"run": "run", "checkpoint": ckpt, "layer": layer, "step": 1, "train_tokens": 64})
        sae = tmp_path / "cells" / "run" / ckpt / f"layer-{layer}" / "sae"
        sae.mkdir(parents=True)
        (sae / "training.json").write_text(json.dumps({"warnings": warnings}))
    problems = cell_problems(tmp_path, rows)
    assert problems == {("run", "step-1", 0): ["kept its init"], ("run", "step-1", 1): [], ("run", "final", 0): []}
    assert "step-1 layer 0: kept its init" in _why(problems, rows[:2])
    assert _why(problems, rows[1:]) == ""


def test_study_b_mixed_counts_share_the_denominator_of_the_mixed_share():
    from babelscope.recipes.study_b import _mixed

    row = {"n_alive": 256, "n_classified": 221, "n_mixed": 99, "mixed_share": 99 / 221}
    k, n = _mixed(row)
    assert (k, n) == (99, 221) and k / n == row["mixed_share"]
    assert _mixed({"n_alive": 100, "mixed_share": 0.25}) == (25, 100)  # rows from before the minimum sample

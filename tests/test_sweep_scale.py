"""The sweep at scale: one LM pass per checkpoint trains every layer's SAE; cells dealt to torchrun ranks."""

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from babelscope.recipes.sweep import SweepConfig, deal, layer_groups, run_sweep
from helpers import torchrun_cli

CFG = {"sae_tokens": 1024, "store_tokens": 300, "expansion": 2, "lrs": (5e-3,), "context": 16, "sae_batch": 128}


@pytest.fixture(scope="module")
def run4(tmp_path_factory, tokenizer_dir):
    """A run with three checkpoints of a 4-layer tiny Llama (random weights, different seeds)."""
    from dataclasses import replace

    from transformers import LlamaForCausalLM

    from babelscope.models import get_preset, llama_config
    from babelscope.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    preset = replace(get_preset("tiny"), layers=4)
    run = tmp_path_factory.mktemp("sweep4") / "run"
    for seed, (name, step) in enumerate([("checkpoints/step-10", 10), ("checkpoints/step-100", 100), ("final", 400)]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama_config(preset, len(tok), bos_token_id=tok.bos_token_id,
                                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
        (run / name).mkdir(parents=True)
        model.save_pretrained(run / name)
        tok.save_pretrained(run / name)
        (run / name / "checkpoint.json").write_text(json.dumps({"step": step, "tokens": step * 64}))
    return run


@pytest.fixture(scope="module")
def docs(tmp_path_factory, bilingual_records):
    from babelscope.corpus import write_corpus

    path = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    write_corpus(path, bilingual_records)
    return path


def _sae_weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    from babelscope.sae import load_sae

    return {str(p.parent.relative_to(out)): dict(load_sae(p.parent).state_dict())
            for p in sorted(out.glob("cells/*/*/*/sae/cfg.json"))}


def test_layer_groups_and_dealing():
    assert layer_groups([0, 1, 2, 3]) == [[0, 1, 2, 3]]
    assert layer_groups([0, 1, 2, 3], 1) == [[0], [1], [2], [3]]
    assert layer_groups([0, 1, 2, 3, 4], 2) == [[0, 3], [1, 4], [2]]
    assert layer_groups([0, 1, 2, 3], None, groups=2) == [[0, 2], [1, 3]]
    assert layer_groups([5], None, groups=4) == [[5]]
    # the costliest first, each to the least loaded rank; every unit dealt exactly once
    units = [("a", 5.0), ("b", 1.0), ("c", 4.0), ("d", 2.0), ("e", 2.0)]
    hands = deal(units, 2)
    assert sorted(i for h in hands for i in h) == list(range(5))
    assert hands == [[0, 4], [1, 2, 3]]  # 5 + 2 and 4 + 2 + 1: equal loads


@pytest.fixture(scope="module")
def swept(run4, docs, tmp_path_factory):
    """The 4-layer x 3-checkpoint sweep in this process, with the forwards it ran counted per (model, hooks read)."""
    import babelscope.models.contexts as contexts

    calls: Counter = Counter()
    capture = contexts.capture

    def counting(model, names, *args, **kwargs):
        calls[(model.name_or_path, len(names))] += 1
        return capture(model, names, *args, **kwargs)

    contexts.capture = counting
    try:
        out = tmp_path_factory.mktemp("swept") / "study"
        rows = run_sweep([run4], [docs], out, SweepConfig(**CFG), log=lambda m: None)
    finally:
        contexts.capture = capture
    return out, rows, calls


@pytest.mark.slow
def test_one_lm_pass_per_checkpoint_trains_its_layers(swept, run4, docs, tmp_path, monkeypatch):
    """4 layers x 3 checkpoints: each checkpoint's SAEs come from one pass over the documents (4-hook forwards);
    trained one layer per pass instead (hooks_per_pass=1), a checkpoint costs 4 passes and gives the same SAEs."""
    import babelscope.models.contexts as contexts

    study, rows, calls = swept
    assert len(rows) == 12
    ckpts = sorted({str(p) for p, _ in calls})
    assert len(ckpts) == 3
    sae_forwards = {c: calls[(c, 4)] for c in ckpts}
    # every SAE-training forward reads the 4 layers at once; the stores read one layer each (4 per checkpoint)
    assert all(n > 0 for n in sae_forwards.values()) and len(set(sae_forwards.values())) == 1
    assert all(calls[(c, 1)] > 0 for c in ckpts) and {k[1] for k in calls} == {1, 4}

    # The last checkpoint again, one layer per pass: four times the forwards, the same SAEs.
    out = tmp_path / "study"
    shutil.copytree(study, out)
    final = out / "cells" / "run" / "final"
    for layer in range(4):
        shutil.rmtree(final / f"layer-{layer}" / "sae")
        (final / f"layer-{layer}" / "summary.json").unlink()
    again: Counter = Counter()
    capture = contexts.capture
    monkeypatch.setattr(contexts, "capture", lambda model, names, *a, **k: (
        again.update([(model.name_or_path, len(names))]), capture(model, names, *a, **k))[1])
    run_sweep([run4], [docs], out, SweepConfig(**CFG, hooks_per_pass=1), log=lambda m: None)
    one = str(run4 / "final")  # its stores are kept: every forward now is SAE training, one layer at a time
    assert again == Counter({(one, 1): 4 * sae_forwards[one]})
    before, after = _sae_weights(study), _sae_weights(out)
    assert sorted(before) == sorted(after) and len(before) == 12
    for cell, weights in before.items():
        for name, w in weights.items():
            torch.testing.assert_close(after[cell][name], w, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_torchrun_sweep_deals_cells_to_ranks(swept, run4, docs, tmp_path, monkeypatch):
    """2 gloo processes, layers 0 and 3: every cell is written by one rank and equals the single-process sweep's
    (whose passes read all four layers: a layer's SAE does not depend on the others read with it); shared files
    are rank 0's alone; a rerun (resume) finds everything done."""
    args = ["study", "bilingual", "--checkpoints", str(run4 / "checkpoints"), "--data", str(docs), "--layers", "0,3",
            "--sae-tokens", str(CFG["sae_tokens"]), "--store-tokens", str(CFG["store_tokens"]), "--expansion", "2",
            "--lrs", "5e-3", "--context", "16", "--sae-batch", "128", "--device", "cpu"]
    r, writes = torchrun_cli(tmp_path, [*args, "--out", tmp_path / "ddp"], port=29531)
    assert r.returncode == 0, r.stderr[-3000:]
    single, all_rows, _ = swept
    rows = [r for r in all_rows if r["layer"] in (0, 3)]
    a, b = _sae_weights(tmp_path / "ddp"), _sae_weights(single)
    b = {cell: w for cell, w in b.items() if cell.split("/")[3] in ("layer-0", "layer-3")}
    assert sorted(a) == sorted(b) and len(a) == 6
    for cell in a:  # no collective inside a cell: the same SAE whichever process trained it
        for name in a[cell]:
            torch.testing.assert_close(a[cell][name], b[cell][name], rtol=1e-6, atol=1e-7)
    assert (tmp_path / "ddp" / "summary.csv").read_text().count("\n") == 7  # header + 6 cells
    ddp = str(tmp_path / "ddp")
    owners: dict[str, set[int]] = {}
    for rank, paths in writes.items():
        for p in paths:
            rel = os.path.relpath(p, ddp)
            key = "/".join(rel.split("/")[:3]) if rel.startswith("cells/") else rel
            owners.setdefault(key, set()).add(rank)
    shared = {k for k in owners if not k.startswith("cells/")}
    assert {"sweep.json", "summary.csv", "summary.parquet", "index.html", "data/split.json"} <= shared
    assert all(owners[k] == {0} for k in shared), {k: owners[k] for k in shared}
    cells = {k: v for k, v in owners.items() if k.startswith("cells/")}
    assert len(cells) == 3 and all(len(v) == 1 for v in cells.values())  # a checkpoint's cells: one rank
    assert {r for v in cells.values() for r in v} == {0, 1}  # both ranks worked
    # resume: a rerun of the finished sweep trains nothing and reads the same cells
    import babelscope.recipes.sweep as sweep

    monkeypatch.setattr(sweep, "train_cell_saes", lambda *a, **k: pytest.fail("trained again"))
    again = run_sweep([run4 / "checkpoints"], [docs], tmp_path / "ddp", SweepConfig(**CFG, layers="0,3"),
                      log=lambda m: None)
    keys = ("checkpoint", "layer", "mixed_share", "mean_r_mono", "n_alive")
    assert [[r[k] for k in keys] for r in again] == [[r[k] for k in keys] for r in rows]

"""The bilingual sweep: checkpoint discovery, settings, bad input as one-line errors."""

import json

import pytest

from babelscope.errors import UserError
from babelscope.recipes.sweep import (
    SweepConfig,
    find_checkpoints,
    is_eval_doc,
    parse_layers,
    run_sweep,
    sae_shape,
)


def write_checkpoint(path, step, tokens, *, hidden=32, layers=2, vocab=448, model=None, tok=None):
    """A checkpoint dir: config.json (+ weights and tokenizer when `model` is given) and checkpoint.json."""
    from babelscope.models import get_preset, llama_config

    path.mkdir(parents=True, exist_ok=True)
    if model is not None:
        model.save_pretrained(path)
        tok.save_pretrained(path)
    else:
        preset = get_preset("tiny")
        cfg = llama_config(type(preset)(**{**preset.__dict__, "hidden": hidden, "layers": layers}), vocab)
        cfg.to_json_file(path / "config.json")
    (path / "checkpoint.json").write_text(json.dumps({"step": step, "tokens": tokens}))
    return path


def write_docs(path, n=20, drop_lang_at=None):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            r = {"id": f"s{i // 2}", "text": "the cat sat" if i % 2 else "جلست القطة", "lang": "en" if i % 2 else "ar"}
            if i == drop_lang_at:
                del r["lang"]
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def test_sae_shape_caps_k_for_narrow_models():
    assert sae_shape(32) == (8, 512)
    assert sae_shape(3072) == (32, 49152)
    assert sae_shape(2, k=32, expansion=4) == (1, 8)


def test_parse_layers():
    assert parse_layers("all", 3) == [0, 1, 2]
    assert parse_layers("2,0", 3) == [0, 2]
    with pytest.raises(UserError, match=r"layer 3 is out of range: run r has layers 0\.\.2"):
        parse_layers("0,3", 3, where="run r")
    with pytest.raises(UserError, match="comma-separated"):
        parse_layers("mid", 3)


def test_eval_split_keeps_parallel_documents_together():
    records = [{"id": f"s{i // 2}"} for i in range(400)]
    flags = [is_eval_doc(r, i, 0.2) for i, r in enumerate(records)]
    assert all(flags[i] == flags[i + 1] for i in range(0, 400, 2))
    assert 0.1 < sum(flags) / 400 < 0.3


def test_find_checkpoints_orders_by_tokens_and_folds_final(tmp_path):
    run = tmp_path / "run"
    write_checkpoint(run / "checkpoints" / "step-100", 100, 6400)
    write_checkpoint(run / "checkpoints" / "step-20", 20, 1280)
    write_checkpoint(run / "checkpoints" / "step-300", 300, 19200)
    write_checkpoint(run / "final", 300, 19200)  # the same step as the last milestone: kept once
    (run / "checkpoints" / ".step-400.tmp").mkdir()  # a checkpoint being written is ignored
    found = find_checkpoints(run / "checkpoints")
    assert [(c.name, c.tokens) for c in found] == [("step-20", 1280), ("step-100", 6400), ("step-300", 19200)]
    write_checkpoint(run / "final", 350, 22400)
    assert [c.name for c in find_checkpoints(run / "checkpoints")][-1] == "final"


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    from babelscope.cli import main

    docs = write_docs(tmp_path / "docs.jsonl")
    mixed = tmp_path / "mixed"
    write_checkpoint(mixed / "checkpoints" / "step-1", 1, 64)
    write_checkpoint(mixed / "checkpoints" / "step-2", 2, 128, hidden=64)
    with pytest.raises(UserError, match=r"different architectures in one sweep: .*hidden_size=64"):
        run_sweep([mixed / "checkpoints"], [docs], tmp_path / "out")

    good = tmp_path / "good"
    write_checkpoint(good / "checkpoints" / "step-1", 1, 64)
    with pytest.raises(UserError, match="layer 5 is out of range"):
        run_sweep([good / "checkpoints"], [docs], tmp_path / "out", SweepConfig(layers="5"))

    unlabelled = write_docs(tmp_path / "nolang.jsonl", drop_lang_at=3)
    with pytest.raises(SystemExit) as e:
        main(["study", "bilingual", "--checkpoints", str(good / "checkpoints"), "--data", str(unlabelled),
              "--out", str(tmp_path / "out2")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "document 3 (id s1) has no 'lang' label" in err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tokenizer_dir):
    """A run with three checkpoints of the tiny preset (random weights, different seeds)."""
    import torch
    from transformers import LlamaForCausalLM

    from babelscope.models import llama_config
    from babelscope.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    run = tmp_path_factory.mktemp("sweep") / "run"
    for seed, (name, step) in enumerate([("checkpoints/step-10", 10), ("checkpoints/step-100", 100), ("final", 400)]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama_config("tiny", len(tok), bos_token_id=tok.bos_token_id,
                                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
        write_checkpoint(run / name, step, step * 64, model=model, tok=tok)
    return run


@pytest.mark.slow
def test_sweep_end_to_end_resumes_and_feeds_the_injection(tiny_run, bilingual_records, tmp_path, monkeypatch):
    import pyarrow.csv as pacsv

    import babelscope.recipes.sweep as sweep
    from babelscope.corpus import write_corpus
    from babelscope.intervene.inject import run_injection

    data = tmp_path / "docs.jsonl"
    write_corpus(data, bilingual_records)
    out = tmp_path / "study"
    cfg = SweepConfig(sae_tokens=3000, store_tokens=1500, expansion=4, lrs=(5e-3,), embeddings="final")
    rows = run_sweep([tiny_run], [data], out, cfg, log=lambda m: None)
    assert [(r["checkpoint"], r["layer"]) for r in rows] == [
        ("step-10", 0), ("step-10", 1), ("step-100", 0), ("step-100", 1), ("final", 0), ("final", 1)]
    for r in rows:
        assert r["labels"] == ["ar", "en"] and r["n_alive"] > 0
        assert r["n_features"] == 128  # 4 x 32 latents, k = 32 // 4 = 8
        assert 0.0 <= r["mixed_share"] <= 1.0 and 0.0 <= r["mean_r_mono"] <= 1.0
        assert r["mixed_share_t080"] <= r["mixed_share"] <= r["mixed_share_t095"]
        assert r["mean_span"] >= 1.0
    table = pacsv.read_csv(out / "summary.csv")
    assert table.num_rows == 6
    for name in ("fig_layer1.png", "fig_layers.png", "fig_spans.png", "index.html"):
        assert (out / name).stat().st_size > 0
    from babelscope.report.links import dead_links, page_links

    assert dead_links(out / "index.html") == [] and len(page_links((out / "index.html").read_text())) >= 3
    cell = out / "cells" / "run" / "step-100" / "layer-1"
    assert {"measures.parquet", "measures.csv", "summary.json"} <= {p.name for p in cell.iterdir()}

    # Resume: finished cells are not recomputed; a cell without its summary is, reusing its SAE and store.
    (cell / "summary.json").unlink()
    trained, logged = [], []
    monkeypatch.setattr(sweep, "train_cell_saes", lambda *a, **k: trained.append(a))
    rows2 = run_sweep([tiny_run], [data], out, cfg, log=logged.append)
    assert trained == []
    assert [m.split(":")[0] for m in logged if "layer" in m] == ["run/step-100 layer 1"]
    assert [r["mixed_share"] for r in rows2] == [r["mixed_share"] for r in rows]

    # The injection on the sweep's final SAE and store: Table 1 rows, the empty type equal to `none`.
    final_cell = out / "cells" / "run" / "final" / "layer-1"
    inj, labels = run_injection(tiny_run / "final", tiny_run / "checkpoints" / "step-10", final_cell / "sae",
                                [out / "data" / "eval.jsonl"], tmp_path / "inject", features_dir=final_cell / "features",
                                n=[20], alpha=[0.1], max_docs=20, max_tokens=32)
    assert labels == ["ar", "en"]
    assert [r["type"] for r in inj] == ["none", "ar", "en", "mixed", "full"]
    for r in inj:
        assert set(r) >= {"ppl_ar", "ppl_en", "ppl_all", "d_ppl_all", "n_selected"}
        if r["type"] in ("ar", "en", "mixed") and r["n_selected"] == 0:
            assert r["ppl_all"] == inj[0]["ppl_all"]
    assert (tmp_path / "inject" / "table.md").read_text().count("\n| ") == 6  # header + 5 rows


def test_a_study_dir_keeps_its_settings(tmp_path):
    from babelscope.recipes.sweep import check_settings

    out = tmp_path / "study"
    out.mkdir()
    check_settings(out, SweepConfig())  # nothing saved yet
    (out / "sweep.json").write_text(json.dumps({"config": {"k": 32, "sae_tokens": 1000, "device": "cpu"}}))
    check_settings(out, SweepConfig(sae_tokens=1000, device="cuda"))  # the device does not change results
    with pytest.raises(UserError, match="sae_tokens was 1000, now 2000"):
        check_settings(out, SweepConfig(sae_tokens=2000))

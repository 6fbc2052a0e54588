"""`babelscope export`: model and SAE directories with cards a hub reads, and Neuronpedia-style feature JSON."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import random_sae, run_cli

pytestmark = pytest.mark.slow


def _card(path):
    """(front matter as a dict, markdown body) of a README.md."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bilingual_records):
    path = tmp_path_factory.mktemp("export_data") / "stories.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bilingual_records), encoding="utf-8")
    return path


def test_model_export_writes_files_and_card(tmp_path, tokenizer_dir, corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "myrun"
    assert run_cli("train", "--preset", "tiny", "--context", "64", "--batch-size", "4", "--max-steps", "6",
                   "--eval-every", "3", "--eval-batches", "2", "--lr", "3e-3", "--tokenizer", tokenizer_dir,
                   "--data", corpus, "--out", run, "--cache-dir", tmp_path / "cache") == 0
    out = tmp_path / "hub"
    assert run_cli("export", "model", "--model", run / "final", "--out", out, "--language", "en", "ar",
                   "--license", "apache-2.0") == 0
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "trainer_state.pt").exists() and not (out / "checkpoint.json").exists()
    meta, body = _card(out / "README.md")
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert meta["language"] == ["en", "ar"] and meta["license"] == "apache-2.0"
    info = json.loads((run / "final" / "checkpoint.json").read_text())
    assert body.startswith("\n# myrun\n") and "preset: `tiny`" in body
    assert f"Tokens seen: {info['tokens']:,} in 6 optimizer steps (" in body
    assert f"Final validation loss: {info['val_loss']:.4f}" in body
    assert "| 3 |" in body and "| 6 |" in body  # the validation losses at steps 3 and 6
    assert "`stories.jsonl`" in body and str(tmp_path) not in body  # file names, not local paths
    # what the card says to run works
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.model_max_length == 64
    assert AutoModelForCausalLM.from_pretrained(out).config.max_position_embeddings == 64
    # an existing export is kept unless asked
    assert run_cli("export", "model", "--model", run / "final", "--out", out) == 2
    assert run_cli("export", "model", "--model", run / "final", "--out", out, "--overwrite") == 0


@pytest.fixture(scope="module")
def trained_sae(tmp_path_factory, tiny_model_dir, corpus):
    from babelscope.sae.train import train_sae

    out = tmp_path_factory.mktemp("sae") / "sae"
    train_sae(tiny_model_dir, "layers.1.mlp.act", [str(corpus)], out, tokens=4096, val_tokens=1024,
              batch_size=512, buffer_size=2048, k=4, expansion=2, positions="first:16", context_size=32,
              warmup_steps=2)
    return out


def test_sae_export_card_says_hook_width_and_quality(tmp_path, trained_sae):
    out = tmp_path / "hub_sae"
    assert run_cli("export", "sae", "--sae", trained_sae, "--out", out, "--base-model", "me/tiny") == 0
    assert {p.name for p in out.iterdir()} == {"cfg.json", "sae_weights.safetensors", "training.json", "README.md"}
    meta, body = _card(out / "README.md")
    assert meta["library_name"] == "saelens" and meta["base_model"] == "me/tiny" and "topk" in meta["tags"]
    metrics = json.loads((trained_sae / "training.json").read_text())["metrics"]
    assert "`blocks.1.mlp.hook_post` (babelscope: `layers.1.mlp.act`)" in body
    assert "64 inputs, 128 latents (2x), TopK, k = 4" in body
    assert f"| fraction of variance explained (FVE) | {metrics['fve']:.4g} |" in body
    assert f"| L0 (active latents per token) | {metrics['l0']:.4g} |" in body
    assert "dead latents" in body and "contexts of 17 tokens" in body  # first:16 after BOS


def test_features_export_is_neuronpedia_shaped(tmp_path, tiny_model_dir, corpus):
    from babelscope.analysis.store import FeatureStore, StoreConfig, build_store
    from babelscope.sae import save_sae
    from babelscope.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    sae = random_sae(64, 32, k=4, hook="layers.1.mlp.act")
    save_sae(sae, tmp_path / "sae")
    build_store(tiny_model_dir, tmp_path / "sae", [corpus], tmp_path / "store",
                StoreConfig(tokens=1500, context=32, batch_size=8, docs_per_shard=50, top_k=5, window=4))
    out = tmp_path / "np"
    assert run_cli("export", "features", "--features", tmp_path / "store", "--out", out, "--sae-set", "res-test") == 0
    store = FeatureStore(tmp_path / "store")
    feats = store.features()
    active = [int(f) for f in feats["feature"] if feats["n_active"][f] > 0]
    assert sorted(int(p.stem) for p in (out / "features").iterdir()) == active
    f = active[0]
    data = json.loads((out / "features" / f"{f}.json").read_text(),
                      parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    for key in ("feature_index", "pos_str", "pos_values", "neg_str", "neg_values", "frac_nonzero",
                "freq_hist_data_bar_heights", "freq_hist_data_bar_values", "logits_hist_data_bar_heights",
                "logits_hist_data_bar_values", "activations", "explanations"):
        assert key in data
    assert data["feature_index"] == f and data["explanations"] == []
    assert data["frac_nonzero"] == pytest.approx(float(feats["frequency"][f]))
    assert len(data["pos_str"]) == len(data["pos_values"]) == 10 and data["pos_values"] == sorted(
        data["pos_values"], reverse=True)
    assert data["freq_hist_data_bar_heights"] == feats["hist"][f].tolist()
    top = [a for a in data["activations"] if a["bin_min"] == -1]
    assert top and max(max(a["values"]) for a in top) == pytest.approx(float(feats["max_act"][f]), rel=1e-5)
    first = store.examples(f, "top")[0]
    assert "".join(top[0]["tokens"]) == tok.decode(first["tokens"])  # raw token texts
    assert top[0]["values"][top[0]["qualifying_token_index"]] == pytest.approx(first["act"])
    batch = json.loads((out / "batch-0.json").read_text())
    assert batch["layer"] == 1 and batch["sae_set"] == "res-test" and batch["hook_name"] == "blocks.1.mlp.hook_post"
    assert [x["feature_index"] for x in batch["features"]] == active[:128]

"""No silent misuse: an SAE records the model (a weight fingerprint) and hook it was trained on; pairing it with
another model or hook is an error unless --force; an SAE that did not learn says so."""

import json
import shutil

import pytest
import torch

from babelscope.errors import UserError
from babelscope.models import load_model
from babelscope.models.fingerprint import model_fingerprint
from babelscope.sae import SAE, SAEConfig, load_sae, read_training
from babelscope.sae.pairing import check_pair
from babelscope.sae.train import MIN_STEPS, learning_problems, train_sae
from helpers import run_cli

HOOK = "layers.1.mlp.act"


@pytest.fixture(scope="module")
def other_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model's twin: same architecture, width and tokenizer, other weights."""
    from transformers import LlamaForCausalLM

    model, tok = load_model(tiny_model_dir)
    torch.manual_seed(1)
    other = LlamaForCausalLM(model.config)
    out = tmp_path_factory.mktemp("other_model")
    other.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def trained(tiny_model_dir, bilingual_records, tmp_path_factory):
    """An SAE trained (briefly) on the tiny model through `train_sae`."""
    out = tmp_path_factory.mktemp("paired") / "sae"
    train_sae(tiny_model_dir, HOOK, bilingual_records, out, tokens=2048, batch_size=256, buffer_size=1024,
              val_tokens=256, expansion=2, k=4, positions="all")
    return out


def test_fingerprint_is_stable_across_save_load_and_dtype_and_tells_models_apart(tiny_model_dir, other_model_dir,
                                                                                 tmp_path):
    model, tok = load_model(tiny_model_dir)
    fp = model_fingerprint(model)
    assert len(fp) == 16 and fp == model_fingerprint(model)
    model.save_pretrained(tmp_path / "copy")
    tok.save_pretrained(tmp_path / "copy")
    assert model_fingerprint(load_model(tmp_path / "copy")[0]) == fp
    assert model_fingerprint(load_model(tiny_model_dir, dtype=torch.bfloat16)[0]) == fp
    assert model_fingerprint(load_model(other_model_dir)[0]) != fp
    with torch.no_grad():  # a small update to one matrix (as training makes) is another model
        model.model.layers[0].mlp.down_proj.weight.add_(0.01)
    assert model_fingerprint(model) != fp


def test_training_records_the_model_and_flags_too_few_steps(trained, tiny_model_dir, capsys):
    sae = load_sae(trained)
    assert sae.cfg.model_fingerprint == model_fingerprint(load_model(tiny_model_dir)[0])
    cfg = json.loads((trained / "cfg.json").read_text())
    assert cfg["babelscope"]["model_fingerprint"] == sae.cfg.model_fingerprint
    info = read_training(trained)
    assert info["source"]["model_fingerprint"] == sae.cfg.model_fingerprint
    assert info["metrics"]["steps"] == 8 and info["learned"] is False
    assert any(f"< {MIN_STEPS}" in w for w in info["warnings"])
    assert learning_problems({"fve": 0.9, "steps": MIN_STEPS}) == []
    assert "variance explained is -2.69" in learning_problems({"fve": -2.69, "steps": 5000})[0]


def test_check_pair_refuses_another_model_or_hook_unless_forced(trained, tiny_model_dir, other_model_dir,
                                                                      capsys):
    sae = load_sae(trained)
    mine, other = load_model(tiny_model_dir)[0], load_model(other_model_dir)[0]
    assert check_pair(sae, mine) == HOOK
    assert check_pair(sae, mine, "blocks.1.mlp.hook_post") == "blocks.1.mlp.hook_post"  # same point
    with pytest.raises(UserError, match=r"trained on another model .*--force"):
        check_pair(sae, other)
    with pytest.raises(UserError, match=r"trained on hook 'layers.1.mlp.act', not 'layers.0.mlp.act'"):
        check_pair(sae, mine, "layers.0.mlp.act")
    capsys.readouterr()
    assert check_pair(sae, other, force=True) == HOOK
    assert "WARNING" in capsys.readouterr().err
    # the width is checked even with --force
    narrow = SAE(SAEConfig(arch="topk", d_in=32, d_sae=64, k=4, hook_name=HOOK))
    with pytest.raises(UserError, match="width mismatch"):
        check_pair(narrow, mine, force=True)
    # an SAE from elsewhere records no fingerprint: nothing to check against
    sae.cfg.model_fingerprint = ""
    assert check_pair(sae, other) == HOOK


@pytest.mark.slow
def test_every_command_that_pairs_an_sae_with_a_model_refuses_another_model(trained, other_model_dir,
                                                                            bilingual_records, tmp_path, capsys):
    from babelscope.corpus import write_corpus

    data = tmp_path / "docs.jsonl"
    write_corpus(data, bilingual_records[:20])
    sae, other = str(trained), str(other_model_dir)
    commands = {
        "sae eval": ["sae", "eval", "--sae", sae, "--model", other, "--data", data, "--tokens", "200",
                     "--no-lm-loss", "--device", "cpu"],
        "analyze features": ["analyze", "features", "--sae", sae, "--model", other, "--data", data, "--tokens",
                             "200", "--out", tmp_path / "feats", "--device", "cpu"],
        "analyze tsea": ["analyze", "tsea", "--sae", sae, "--model", other, "--sets", "re:^ [a-z]+$",
                         "--out", tmp_path / "tsea", "--device", "cpu", "--null", "none"],
        "generate --steer": ["generate", "--model", other, "--sae", sae, "--steer", "0:1", "--prompt", "the",
                             "--max-new-tokens", "2", "--device", "cpu"],
        "intervene inject": ["intervene", "inject", "--full", other, "--mid", other, "--sae", sae, "--data", data,
                             "--out", tmp_path / "inject", "--n", "2"],
    }
    for name, argv in commands.items():
        assert run_cli(*argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "another model" in err and "--force" in err, (name, err)
    assert run_cli(*commands["sae eval"], "--force") == 0
    assert "WARNING" in capsys.readouterr().err
    # a feature store built with --force keeps pairing them: the dashboard needs --force too
    assert run_cli(*commands["analyze features"], "--force") == 0
    capsys.readouterr()
    argv = ["dashboard", "--features", tmp_path / "feats", "--out", tmp_path / "site", "--limit", "2", "--no-loss",
            "--device", "cpu"]
    assert run_cli(*argv) == 2 and "--force" in capsys.readouterr().err
    assert run_cli(*argv, "--force") == 0
    shutil.rmtree(tmp_path / "site")

"""Many hooks, one pass: one LM forward per batch feeds every hook's SAE; each equals a one-hook run; resume per hook."""

import json
from pathlib import Path

import pytest
import torch

from babelscope.errors import UserError
from babelscope.sae import load_sae, read_training
from babelscope.sae.train import expand_hooks, hook_dirs, train_sae, train_saes

pytestmark = pytest.mark.usefixtures("one_thread")

HOOKS = ["layers.0.resid_post", "layers.1.mlp.act", "layers.1.resid_post"]
KW = {"tokens": 2048, "batch_size": 128, "buffer_size": 512, "val_tokens": 256, "expansion": 2, "k": 4,
      "positions": "all", "context_size": 32, "model_batch_size": 16, "lrs": (1e-3, 3e-3), "checkpoint_every": 4,
      "warmup_steps": 2}


@pytest.fixture(scope="module")
def model_tok(tiny_model_dir):
    from babelscope.models import load_model

    return load_model(tiny_model_dir)


def _counted(model) -> list[int]:
    """A list that grows by one at every forward of `model`."""
    calls: list[int] = []
    model.register_forward_pre_hook(lambda m, args, kwargs: calls.append(1), with_kwargs=True)
    return calls


def _same(a, b) -> None:
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-6, atol=1e-7)


def test_one_pass_trains_every_hook_as_one_hook_runs_do(tmp_path, model_tok, bilingual_records):
    model, tok = model_tok
    calls = _counted(model)
    multi = train_saes(model, HOOKS, bilingual_records, tmp_path / "multi", tokenizer=tok, **KW)
    n_multi = len(calls)
    assert n_multi >= 4
    assert list(multi) == HOOKS
    for h in HOOKS:
        calls.clear()
        single = train_sae(model, h, bilingual_records, tmp_path / "single" / h, tokenizer=tok, **KW)
        # one hook alone needs as many forwards as all three together: the pass is shared, not repeated
        assert len(calls) == n_multi
        for a, b in zip(multi[h].saes, single.saes, strict=True):
            _same(a, b)
        assert multi[h].grid == single.grid
        d = tmp_path / "multi" / h
        assert read_training(d)["fingerprint"]["hook"] == h and load_sae(d).cfg.hook_name == h
        assert (d / "lr_grid" / "lr-0.003" / "cfg.json").exists() and not (d / "checkpoint.pt").exists()


def test_a_kill_between_hooks_resumes_each_from_its_own_checkpoint(tmp_path, model_tok, bilingual_records):
    model, tok = model_tok
    ref = train_saes(model, HOOKS, bilingual_records, tmp_path / "ref", tokenizer=tok, **KW)

    def kill(step, info):  # hook 0 has saved its step-8 checkpoint, hooks 1 and 2 still hold step 4
        if step == 8 and info["hook"] == HOOKS[1]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_saes(model, HOOKS, bilingual_records, tmp_path / "run", tokenizer=tok, callback=kill, **KW)
    steps = {h: torch.load(tmp_path / "run" / h / "checkpoint.pt", weights_only=False)["step"] for h in HOOKS}
    assert steps == {HOOKS[0]: 8, HOOKS[1]: 4, HOOKS[2]: 4}
    seen: dict[str, list[int]] = {}
    res = train_saes(model, HOOKS, bilingual_records, tmp_path / "run", tokenizer=tok, resume=True,
                     callback=lambda s, i: seen.setdefault(i["hook"], []).append(s), **KW)
    assert seen[HOOKS[0]][0] == 9 and seen[HOOKS[1]][0] == 5
    for h in HOOKS:
        for a, b in zip(ref[h].saes, res[h].saes, strict=True):
            _same(a, b)
    # a finished hook is not computed again: resuming with one more hook runs a pass for that hook only
    calls = _counted(model)
    more = train_saes(model, [*HOOKS, "layers.0.mlp.act"], bilingual_records, tmp_path / "run", tokenizer=tok,
                      resume=True, callback=lambda s, i: pytest.fail("retrained") if i["hook"] in HOOKS else None,
                      **KW)
    assert len(calls) > 0 and set(more) == {*HOOKS, "layers.0.mlp.act"}


def test_each_hook_keeps_its_stability_seed_epochs_and_fingerprint(tmp_path, tiny_model_dir, bilingual_records,
                                                                  capsys):
    """A small corpus read in epochs, a stability seed, a path model: per hook, as a one-hook run gives them, and a
    kill in the second pass resumes to the same SAEs."""
    from babelscope.corpus import write_corpus
    from babelscope.models import load_model
    from babelscope.models.fingerprint import model_fingerprint

    write_corpus(tmp_path / "small.jsonl", bilingual_records[:30])
    data, hooks = [tmp_path / "small.jsonl"], HOOKS[:2]
    kw = {**KW, "val_tokens": 64, "lrs": (3e-3,), "stability_seed": 7, "model_batch_size": 4}
    multi = train_saes(tiny_model_dir, hooks, data, tmp_path / "multi", **kw)
    fingerprint = model_fingerprint(load_model(tiny_model_dir)[0])
    err = capsys.readouterr().err
    for h in hooks:
        d = tmp_path / "multi" / h
        info = read_training(d)
        assert 0 < info["activations_per_pass"] < kw["tokens"] and info["epochs"] > 1
        assert f"at {h}; training on {kw['tokens']} took {info['epochs']:.2f} passes" in err
        assert isinstance(info["learned"], bool) and "stability" in info["metrics"]
        assert info["source"]["model_fingerprint"] == fingerprint == load_sae(d).cfg.model_fingerprint
        assert read_training(d / "seed-7")["companion_of"] == str(d)
        single = train_sae(tiny_model_dir, h, data, tmp_path / "single" / h, **kw)
        _same(multi[h].sae, single.sae)
        _same(multi[h].companion, single.companion)
        assert multi[h].metrics == single.metrics

    def kill(step, info):  # in the second and third passes over the corpus (one pass: about 5 steps of 128)
        if step == 12 and info["hook"] == hooks[1]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_saes(tiny_model_dir, hooks, data, tmp_path / "run", callback=kill, **kw)
    res = train_saes(tiny_model_dir, hooks, data, tmp_path / "run", resume=True, **kw)
    for h in hooks:
        _same(res[h].sae, multi[h].sae)
        _same(res[h].companion, multi[h].companion)


def test_hooks_from_a_list_or_layers_and_site(tmp_path, model_tok, bilingual_records, capsys):
    model, _ = model_tok
    assert expand_hooks(model, "layers.0.mlp.act, blocks.1.hook_resid_post") == [
        "layers.0.mlp.act", "blocks.1.hook_resid_post"]
    assert expand_hooks(model, None, "all", "attn.out") == ["layers.0.attn.out", "layers.1.attn.out"]
    assert expand_hooks(model, "layers.last.mlp.act,layers.-2.mlp.out") == ["layers.1.mlp.act", "layers.0.mlp.out"]
    with pytest.raises(UserError, match="not both"):
        expand_hooks(model, "layers.0.mlp.act", "all")
    with pytest.raises(UserError, match="named twice"):
        expand_hooks(model, ["layers.0.mlp.act", "blocks.0.mlp.hook_post"])
    with pytest.raises(UserError, match=r"no hook point 'layers\.7\.resid_post'"):
        expand_hooks(model, None, "0,7")
    assert hook_dirs("o", ["blocks.1.hook_resid_post"]) == {"blocks.1.hook_resid_post": Path("o")}
    assert hook_dirs("o", ["blocks.1.hook_resid_post", "layers.0.mlp.act"])["blocks.1.hook_resid_post"].name == \
        "layers.1.resid_post"


def test_cli_layers_all_writes_one_sae_dir_per_hook(tmp_path, tiny_model_dir, bilingual_records, capsys):
    from babelscope.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bilingual_records))
    with pytest.raises(SystemExit) as e:
        main(["sae", "train", "--model", str(tiny_model_dir), "--layers", "all", "--site", "resid_post", "--data",
              str(corpus), "--out", str(tmp_path / "out"), "--tokens", "1024", "--val-tokens", "128",
              "--batch-size", "128", "--buffer-size", "512", "--expansion", "2", "--k", "4", "--positions", "all",
              "--context-size", "32", "--device", "cpu", "--cache", str(tmp_path / "cache")])
    assert e.value.code == 0, capsys.readouterr().err
    for layer in (0, 1):
        d = tmp_path / "out" / f"layers.{layer}.resid_post"
        assert load_sae(d).cfg.hook_name == f"layers.{layer}.resid_post"
        assert (tmp_path / "cache" / f"layers.{layer}.resid_post" / "cache.json").exists()
    assert capsys.readouterr().out.count("fve") == 2


def test_bf16_lm_and_compiled_loss_on_cpu(tmp_path, model_tok, bilingual_records, monkeypatch):
    """The GPU path's pieces that run on a CPU: the LM under bf16 autocast feeding fp32 SAEs, and torch.compile'd
    losses (here with the eager backend: the same graph capture, no C++ build)."""
    from babelscope.models.contexts import lm_autocast, resolve_precision

    model, tok = model_tok
    assert resolve_precision("auto", "cpu") == "fp32" and lm_autocast("fp32", "cpu") is None
    compiled = []
    real = torch.compile

    def eager(fn, **kw):
        compiled.append(fn)
        return real(fn, backend="eager")

    monkeypatch.setattr(torch, "compile", eager)
    kw = {**KW, "tokens": 512, "lrs": (1e-3,)}
    bf = train_saes(model, HOOKS[1:], bilingual_records, tmp_path / "bf16", tokenizer=tok, precision="bf16",
                    compile=True, **kw)
    assert len(compiled) == 2  # one loss per hook (one learning rate each)
    fp = train_saes(model, HOOKS[1:], bilingual_records, tmp_path / "fp32", tokenizer=tok, **kw)
    for h in HOOKS[1:]:
        sae = bf[h].sae
        assert sae.W_enc.dtype == torch.float32 and torch.isfinite(sae.W_enc).all()
        info = read_training(tmp_path / "bf16" / h)
        assert info["source"]["precision"] == "bf16" and "precision" not in read_training(tmp_path / "fp32" / h)["source"]
        # bf16 activations are close to fp32 ones but not equal, so the SAEs differ a little
        assert not torch.equal(sae.b_dec, fp[h].sae.b_dec)
        torch.testing.assert_close(sae.b_dec, fp[h].sae.b_dec, rtol=0.1, atol=0.05)


@pytest.mark.slow
def test_torchrun_deals_hooks_to_ranks(tmp_path, tiny_model_dir, bilingual_records, model_tok):
    """`sae train --layers all --distribute hooks` on 2 gloo processes: each rank trains and writes only its own
    hooks, each SAE equal to the one-process run's (no collective touches a hook's training)."""
    from helpers import torchrun_cli

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bilingual_records))
    flags = ["--tokens", "1024", "--val-tokens", "128", "--batch-size", "128", "--buffer-size", "512", "--expansion",
             "2", "--k", "4", "--positions", "all", "--context-size", "32", "--device", "cpu"]
    r, writes = torchrun_cli(tmp_path, ["sae", "train", "--model", tiny_model_dir, "--layers", "all", "--data", corpus,
                                        "--out", tmp_path / "ddp", "--distribute", "hooks", *flags], port=29533)
    assert r.returncode == 0, r.stderr[-3000:]
    model, tok = model_tok
    hooks = ["layers.0.resid_post", "layers.1.resid_post"]
    single = train_saes(model, hooks, bilingual_records, tmp_path / "one", tokenizer=tok, tokens=1024, val_tokens=128,
                        batch_size=128, buffer_size=512, expansion=2, k=4, positions="all", context_size=32)
    for rank, hook in enumerate(hooks):  # hooks dealt round-robin: rank 0 layer 0, rank 1 layer 1
        _same(load_sae(tmp_path / "ddp" / hook), single[hook].sae)
        mine = {Path(p).relative_to(tmp_path / "ddp").parts[0] for p in writes[rank]}
        assert mine == {hook}, (rank, mine)


@pytest.mark.slow
def test_torchrun_data_parallel_many_hooks(tmp_path, tiny_model_dir, bilingual_records):
    """`--distribute data` (the default) with two hooks on 2 gloo processes: every rank reads its share of the
    documents for both hooks, gradients are all-reduced per hook, checkpoints gather both ranks' buffers; rank 0
    alone writes, and both hooks' SAEs learn."""
    from helpers import torchrun_cli

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bilingual_records))
    r, writes = torchrun_cli(tmp_path, [
        "sae", "train", "--model", tiny_model_dir, "--hook", "layers.0.mlp.act,layers.1.resid_post", "--data", corpus,
        "--out", tmp_path / "ddp", "--tokens", "2048", "--val-tokens", "256", "--batch-size", "128",
        "--buffer-size", "512", "--expansion", "2", "--k", "4", "--positions", "all", "--context-size", "32",
        "--checkpoint-every", "4", "--device", "cpu"], port=29535)
    assert r.returncode == 0, r.stderr[-3000:]
    for hook in ("layers.0.mlp.act", "layers.1.resid_post"):
        info = read_training(tmp_path / "ddp" / hook)
        assert info["world_size"] == 2 and info["metrics"]["tokens"] == 256 and info["metrics"]["fve"] > 0
        assert not (tmp_path / "ddp" / hook / "checkpoint.pt").exists()
    assert writes[1] == [] and any(p.endswith("checkpoint.pt") for p in writes[0])

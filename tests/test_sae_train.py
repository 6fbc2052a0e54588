"""SAE training and evaluation: lr grid, resume after a kill, metrics, bad input, DDP, the tiny-model bar."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from babelscope.errors import UserError
from babelscope.sae import SAE, SAEConfig, load_sae, read_training
from babelscope.sae.buffer import TensorSource
from babelscope.sae.metrics import evaluate_sae, loss_recovered, reconstruction_metrics
from babelscope.sae.train import TrainConfig, train_on_source, train_sae
from babelscope.serve.background import free_port

pytestmark = pytest.mark.usefixtures("one_thread")


def _low_rank_acts(n: int = 12_000, d: int = 16, seed: int = 0) -> torch.Tensor:
    """Activations that a small SAE can learn: sparse combinations of 40 fixed directions plus a mean."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(40, d, generator=g)
    codes = torch.rand(n, 40, generator=g) * (torch.rand(n, 40, generator=g) < 0.1)
    return codes @ dirs + torch.randn(d, generator=g) + 0.01 * torch.randn(n, d, generator=g)


def _cfg(**kw) -> tuple[TrainConfig, SAEConfig]:
    t = TrainConfig(**{"tokens": 8192, "batch_size": 256, "buffer_size": 2048, "val_tokens": 0, "k": 4,
                       "normalize": "none", "warmup_steps": 4, "log_every": 8, **kw})
    s = SAEConfig(arch=t.arch, d_in=16, d_sae=64, k=t.k if t.arch == "topk" else None, normalize=t.normalize)
    return t, s


def test_lr_grid_picks_the_lowest_validation_mse(tmp_path):
    acts = _low_rank_acts()
    tcfg, scfg = _cfg(lrs=(1e-6, 3e-3, 1e-4))
    res = train_on_source(TensorSource(acts[2000:]), acts[:2000], tcfg, scfg, out_dir=tmp_path)
    mses = [g["mse"] for g in res.grid]
    assert res.metrics["lr"] == 3e-3 and mses[1] == min(mses)
    assert mses[0] > 2 * mses[1]  # a rate of 1e-6 barely moves
    info = read_training(tmp_path)
    assert info["best_lr"] == 3e-3 and [g["lr"] for g in info["lr_grid"]] == [1e-6, 3e-3, 1e-4]
    assert load_sae(tmp_path / "lr_grid" / "lr-1e-06").cfg.d_sae == 64
    torch.testing.assert_close(load_sae(tmp_path)(acts[:5]), res.sae(acts[:5]))
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_resume_after_a_kill_gives_the_same_sae(tmp_path, arch):
    acts = _low_rank_acts(6000)
    tcfg, scfg = _cfg(arch=arch, tokens=4096, checkpoint_every=3, lrs=(1e-3, 3e-3), dead_window=512)
    ref = train_on_source(TensorSource(acts[1000:]), acts[:1000], tcfg, scfg, out_dir=tmp_path / "ref")

    def kill(step, info):
        if step == 11:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_on_source(TensorSource(acts[1000:]), acts[:1000], tcfg, scfg, out_dir=tmp_path / "run",
                        callback=kill)
    assert (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "cfg.json").exists()
    steps_seen = []
    res = train_on_source(TensorSource(acts[1000:]), acts[:1000], tcfg, scfg, out_dir=tmp_path / "run",
                          resume=True, callback=lambda s, i: steps_seen.append(s))
    assert steps_seen[0] == 10  # continued after the checkpoint at step 9, not from scratch
    for a, b in zip(ref.saes, res.saes, strict=True):
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name))
    assert res.grid == ref.grid
    # the logged loss history is the same too: the window the kill fell in (steps 9-16) is not cut short
    assert read_training(tmp_path / "run")["history"] == read_training(tmp_path / "ref")["history"]
    # resuming a finished run is a no-op that returns its result
    again = train_on_source(TensorSource(acts[1000:]), acts[:1000], tcfg, scfg, out_dir=tmp_path / "run",
                            resume=True, callback=lambda s, i: pytest.fail("trained again"))
    torch.testing.assert_close(again.sae.W_dec, res.sae.W_dec)
    assert again.grid == res.grid
    # another setting cannot resume this checkpoint
    with pytest.raises(KeyboardInterrupt):
        train_on_source(TensorSource(acts[1000:]), acts[:1000], tcfg, scfg, out_dir=tmp_path / "run2",
                        callback=kill)
    other, _ = _cfg(arch=arch, tokens=4096, checkpoint_every=3, lrs=(1e-3,), dead_window=512)
    with pytest.raises(UserError, match="other settings"):
        train_on_source(TensorSource(acts[1000:]), acts[:1000], other, scfg, out_dir=tmp_path / "run2",
                        resume=True)


def test_metrics_are_batch_size_independent_and_against_the_mean():
    torch.manual_seed(0)
    sae = SAE(SAEConfig(arch="topk", d_in=8, d_sae=32, k=3))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(1000, 8) + 5.0
    a = reconstruction_metrics(sae, x, batch_size=1000)
    b = reconstruction_metrics(sae, x, batch_size=7)
    for key in ("mse", "nmse", "fve", "l0", "dead_fraction", "dense_fraction"):
        assert a[key] == pytest.approx(b[key], rel=1e-6), key
    # predicting the mean of x everywhere explains no variance (against zero it would explain a lot)
    mean_sae = SAE(SAEConfig(arch="relu", d_in=8, d_sae=4))
    with torch.no_grad():
        mean_sae.b_dec.copy_(x.mean(0))
        mean_sae.b_enc.fill_(-1.0)  # no latent ever fires
    m = reconstruction_metrics(mean_sae, x, batch_size=64)
    assert m["fve"] == pytest.approx(0.0, abs=1e-9) and m["l0"] == 0 and m["dead_fraction"] == 1.0
    assert loss_recovered(2.0, 2.5, 4.0) == pytest.approx(0.75)


def test_bad_input_is_a_user_error(tmp_path, tiny_model_dir, bilingual_records):
    from babelscope.models import load_model

    kw = {"tokens": 2048, "batch_size": 256, "buffer_size": 1024, "val_tokens": 256, "expansion": 2, "k": 4,
          "positions": "all"}
    with pytest.raises(UserError, match=r"no hook point 'layers.5.mlp.act'; valid: layers\.\{0\.\.1\}"):
        train_sae(tiny_model_dir, "layers.5.mlp.act", bilingual_records, tmp_path / "a", **kw)
    # More training tokens than the corpus gives is fine (epochs); a validation set it cannot fill is not.
    big_val = {**kw, "val_tokens": 5000}
    with pytest.raises(UserError, match=r"corpus too small: it gave .* the validation set alone needs 5000"):
        train_sae(tiny_model_dir, "layers.1.mlp.act", bilingual_records[:20], tmp_path / "b", **big_val)
    with pytest.raises(UserError, match=r"corpus too small: it gave .* 5256 are needed"):
        train_sae(tiny_model_dir, "layers.1.mlp.act", bilingual_records[:20], tmp_path / "c",
                  cache_dir=tmp_path / "cache", **big_val)
    model, tok = load_model(tiny_model_dir)
    sae = SAE(SAEConfig(arch="topk", d_in=32, d_sae=64, k=4, hook_name="layers.1.mlp.act"))
    with pytest.raises(UserError, match=r"SAE width mismatch: the SAE reads d_in=32 .* width 64"):
        evaluate_sae(sae, model, tok, bilingual_records, tokens=100)


def _cli(capsys, *args: str) -> tuple[int, str]:
    """Run the `babelscope` command in-process; (exit code, stderr)."""
    from babelscope.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    return e.value.code, capsys.readouterr().err


def _write_corpus(path: Path, records: list[dict], repeat: int = 1) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(repeat):
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


@pytest.mark.slow
def test_tiny_model_topk_explains_variance_with_few_dead(tmp_path, story_model_dir, story_records, capsys):
    """The bar from the issue: FVE > 0.8 with under 1% dead latents, on a tiny storyworld model (CLI end to end)."""
    tiny_model_dir = story_model_dir
    corpus = _write_corpus(tmp_path / "c.jsonl", story_records)
    out = tmp_path / "sae"
    rc, err = _cli(capsys, "sae", "train", "--model", str(tiny_model_dir), "--hook", "layers.1.mlp.act", "--data",
                   str(corpus), "--out", str(out), "--arch", "topk", "--expansion", "4", "--k", "16", "--tokens",
                   "70k", "--val-tokens", "4k", "--lr", "1e-3,4e-3", "--positions", "all", "--batch-size", "512",
                   "--buffer-size", "8k", "--warmup-steps", "10", "--dead-window", "2048", "--cache",
                   str(tmp_path / "cache"), "--device", "cpu")
    assert rc == 0, err
    info = read_training(out)
    m = info["metrics"]
    assert m["fve"] > 0.8, m
    assert m["dead_fraction"] < 0.01, m
    assert len(info["lr_grid"]) == 2 and (tmp_path / "cache" / "cache.json").exists()
    ev = tmp_path / "eval.json"
    rc, err = _cli(capsys, "sae", "eval", "--sae", str(out), "--model", str(tiny_model_dir), "--data", str(corpus),
                   "--tokens", "3000", "--out", str(ev), "--device", "cpu")
    assert rc == 0, err
    e = json.loads(ev.read_text())
    assert e["fve"] > 0.8 and e["ce_zero"] != e["ce_clean"] and "loss_recovered" in e
    # both report how far the decoder moved from the init its seed gives (the same numbers: the same SAE)
    assert m["decoder"]["seed"] == 0 and m["decoder"]["cos_to_init"]["median"] < 0.99
    assert e["decoder"]["cos_to_init"] == pytest.approx(m["decoder"]["cos_to_init"])
    # a bad hook through the CLI: one line, exit 2
    rc, err = _cli(capsys, "sae", "train", "--model", str(tiny_model_dir), "--hook", "layers.1.mlp", "--data",
                   str(corpus), "--out", str(tmp_path / "x"), "--device", "cpu")
    assert rc == 2 and err.rstrip("\n").splitlines()[-1].startswith("babelscope: error: no hook point 'layers.1.mlp'")


_DDP_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from babelscope.sae.buffer import TensorSource
    from babelscope import dist
    from babelscope.sae.train import TrainConfig, train_on_source
    from babelscope.sae.base import SAEConfig
    sys.path.insert(0, sys.argv[2])
    from test_sae_train import _low_rank_acts
    d = dist.init("cpu")
    rank, world = d.rank, d.world
    acts = _low_rank_acts(9000)
    train = acts[1000:].chunk(world)[rank]
    val = acts[:1000].chunk(world)[rank]
    t = TrainConfig(tokens=4096, batch_size=256, buffer_size=1024, val_tokens=0, k=4, normalize="none",
                    warmup_steps=2, lrs=(2e-3,), checkpoint_every=5)
    s = SAEConfig(arch="topk", d_in=16, d_sae=64, k=4)
    res = train_on_source(TensorSource(train), val, t, s, out_dir=sys.argv[1], rank=rank, world=world)
    torch.save({n: getattr(res.sae, n) for n in ("W_enc", "W_dec")}, f"{sys.argv[1]}/rank{rank}.pt")
""")


@pytest.mark.slow
def test_ddp_two_processes_on_gloo(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BABELSCOPE_NO_PROGRESS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(free_port()), str(script), str(tmp_path / "out"), str(Path(__file__).parent)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (torch.load(tmp_path / "out" / f"rank{i}.pt") for i in range(2))
    for name in a:  # the all-reduced gradients keep the two replicas identical
        torch.testing.assert_close(a[name], b[name])
    info = read_training(tmp_path / "out")
    assert info["world_size"] == 2 and info["metrics"]["tokens"] == 1000  # validation summed over both ranks
    # and it learns as a single process does on the same data and global batch
    acts = _low_rank_acts(9000)
    tcfg, scfg = _cfg(tokens=4096, warmup_steps=2, lrs=(2e-3,), buffer_size=1024)
    single = train_on_source(TensorSource(acts[1000:]), acts[:1000], tcfg, scfg)
    assert abs(info["metrics"]["fve"] - single.metrics["fve"]) < 0.1
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_scale_normalisation_is_estimated_and_saved(tmp_path):
    acts = _low_rank_acts(5000) * 30.0
    tcfg, scfg = _cfg(normalize="scale", tokens=2048)
    res = train_on_source(TensorSource(acts[1000:]), acts[:1000], tcfg, scfg, out_dir=tmp_path)
    c = res.sae.cfg.scale
    assert (acts[:1000] * c).norm(dim=-1).mean().item() == pytest.approx(4.0, rel=1e-4)  # sqrt(16)
    back = load_sae(tmp_path)
    assert back.cfg.normalize == "scale" and back.cfg.scale == pytest.approx(c)
    torch.testing.assert_close(back(acts[:8]), res.sae(acts[:8]), rtol=1e-4, atol=1e-4)
    assert res.metrics["fve"] > 0.1  # it learns (8 steps only)

"""Has an SAE learned? Decoder movement from its init, stability across seeds, and where both are reported."""

import json

import pytest
import torch

from babelscope.errors import UserError
from babelscope.sae import SAEConfig, load_sae, read_training, save_sae
from babelscope.sae.buffer import TensorSource
from babelscope.sae.convergence import (
    compare_saes,
    decoder_movement,
    init_stability,
    initial_decoder,
    learning_summary,
    max_cosines,
    sae_movement,
    stability,
)
from babelscope.sae.relu import ReLUTrainer
from babelscope.sae.topk import TopKTrainer
from babelscope.sae.train import TrainConfig, train_on_source
from helpers import run_cli


def planted(n: int = 16_000, d: int = 16, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations built from 24 fixed unit directions, each active on ~8% of rows; and the directions (their
    seed is not an SAE init seed: the init would start on them)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(24, d, generator=g)
    dirs /= dirs.norm(dim=1, keepdim=True)
    codes = torch.rand(n, 24, generator=g) * 3 * (torch.rand(n, 24, generator=g) < 0.08)
    return codes @ dirs + 0.01 * torch.randn(n, d, generator=g), dirs


def test_the_init_is_a_pure_function_of_the_seed():
    cfg = SAEConfig(arch="topk", d_in=8, d_sae=32, k=2)
    for seed in (0, 1, 7):
        for trainer in (TopKTrainer(cfg, seed=seed), ReLUTrainer(cfg, seed=seed)):
            assert torch.equal(trainer.W_dec.detach(), initial_decoder(32, 8, seed))
            mv = decoder_movement(trainer.W_dec, initial_decoder(32, 8, seed))
            assert mv["cos_to_init"]["median"] == pytest.approx(1.0) and mv["share_above_0.9"] == 1.0
    assert not torch.equal(initial_decoder(32, 8, 0), initial_decoder(32, 8, 1))


def test_stability_matches_rows_whatever_their_order():
    a = initial_decoder(50, 12, 3)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    same = stability(a, a[perm] * 2.5)  # row order and scale do not matter
    assert same["mmcs"] == pytest.approx(1.0) and same["hungarian"] == pytest.approx(1.0) and same["shared"] == 1.0
    b = initial_decoder(50, 12, 4)
    cos = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    assert torch.allclose(max_cosines(a, b, chunk=7), cos.max(1).values, atol=1e-6)
    rand = stability(a, b)
    assert rand["mmcs"] == pytest.approx(0.5 * float(cos.max(1).values.mean() + cos.max(0).values.mean()), abs=1e-6)
    assert rand["hungarian"] <= rand["mmcs_a_to_b"] + 1e-9 and rand["mmcs"] < 0.9
    assert init_stability(50, 12, (3, 4))["mmcs"] == pytest.approx(rand["mmcs"])


def test_two_seeds_learn_the_planted_directions_and_training_json_says_so(tmp_path):
    acts, dirs = planted()
    tcfg = TrainConfig(arch="topk", k=3, tokens=13_000, batch_size=64, buffer_size=2048, val_tokens=0,
                       normalize="none", warmup_steps=5, lrs=(1e-2,), seed=0, stability_seed=5, log_every=50)
    scfg = SAEConfig(arch="topk", d_in=16, d_sae=32, k=3, extra={"seed": 0})
    res = train_on_source(TensorSource(acts[2000:]), acts[:2000], tcfg, scfg, out_dir=tmp_path)
    m = read_training(tmp_path)["metrics"]
    # the decoder left its random start, and both seeds found the planted directions, unlike two inits
    assert m["decoder"]["cos_to_init"]["median"] < 0.8
    st = m["stability"]
    assert st["seeds"] == [0, 5] and st["mmcs"] > st["init_control"]["mmcs"] + 0.2
    assert max_cosines(dirs, res.sae.W_dec).median() > 0.9
    assert max_cosines(dirs, res.companion.W_dec).median() > 0.9
    # the companion is saved beside the best SAE, recording its own seed, and reloads to the same stability
    comp = load_sae(tmp_path / "seed-5")
    assert comp.cfg.extra["seed"] == 5 and load_sae(tmp_path).cfg.extra["seed"] == 0
    assert sae_movement(comp)["seed"] == 5
    assert read_training(tmp_path / "seed-5")["metrics"]["decoder"]["seed"] == 5
    again = compare_saes(load_sae(tmp_path), comp)
    assert again["stability"]["mmcs"] == pytest.approx(st["mmcs"], abs=1e-6)
    assert again["init_control"]["seeds"] == [0, 5]
    assert again["init_control"]["mmcs"] == pytest.approx(st["init_control"]["mmcs"], abs=1e-6)
    summary = learning_summary(tmp_path)
    assert summary["learned"] is True and summary["stability"]["init_mmcs"] == st["init_control"]["mmcs"]


def test_an_untrained_relu_sae_has_not_moved_and_seeds_must_differ(tmp_path):
    acts, _ = planted(3000)
    tcfg = TrainConfig(arch="relu", tokens=512, batch_size=256, buffer_size=1024, val_tokens=0, normalize="none",
                       lrs=(1e-9,), warmup_steps=1)
    res = train_on_source(TensorSource(acts), acts[:0], tcfg, SAEConfig(arch="relu", d_in=16, d_sae=32),
                          out_dir=tmp_path)
    assert res.metrics["decoder"]["cos_to_init"]["q25"] > 0.999 and "stability" not in res.metrics
    assert learning_summary(tmp_path)["learned"] is False
    with pytest.raises(UserError, match="stability-seed"):
        TrainConfig(seed=3, stability_seed=3)


def test_sae_compare_command_writes_the_matching(tmp_path, capsys):
    cfg = SAEConfig(arch="relu", d_in=8, d_sae=16, extra={"seed": 2})
    trainer = ReLUTrainer(cfg, seed=2)
    save_sae(trainer.to_sae(), tmp_path / "a")
    save_sae(trainer.to_sae(), tmp_path / "b")
    assert run_cli("sae", "compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "c.json") == 0
    out = json.loads((tmp_path / "c.json").read_text())
    assert out["stability"]["mmcs"] == pytest.approx(1.0) and out["movement"]["a"]["seed"] == 2
    assert out["movement"]["a"]["cos_to_init"]["median"] == pytest.approx(1.0)
    save_sae(ReLUTrainer(SAEConfig(arch="relu", d_in=8, d_sae=12), seed=0).to_sae(), tmp_path / "narrow")
    assert run_cli("sae", "compare", tmp_path / "a", tmp_path / "narrow") == 2
    assert "differ in shape" in capsys.readouterr().err

"""Pre-training, exact resume, continual pre-training, DDP and the training CLI's error messages."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from babelscope.models import PRESETS, llama_config, param_counts
from babelscope.serve.background import free_port
from babelscope.train.checkpoint import list_checkpoints, load_state
from babelscope.train.data import WindowSampler
from babelscope.train.loop import TrainConfig, lr_factor, train
from helpers import run_cli

TRAIN_ARGS = ["--preset", "tiny", "--context", "64", "--batch-size", "8", "--lr", "3e-3", "--eval-batches", "4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bilingual_records) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bilingual_records))
    return path


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_arabic_and_english_round_trip_through_autotokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    for text in ["«أنا سعيد!»، قال تيم.", "قال أحمد: «مرحبا يا صديقي»", 'Tim said, "Hi !" ...  two  spaces',
                 "ضَحِكَ الوَلَدُ 123 ﷺ", "emoji 🐈 and tab\there"]:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts_match_the_built_model(name):
    from transformers import LlamaForCausalLM

    cfg = llama_config(name, 1000)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    total = sum(p.numel() for p in model.parameters())
    body = total - model.get_input_embeddings().weight.numel() - model.get_output_embeddings().weight.numel()
    assert (total, body) == param_counts(name, 1000)
    p = PRESETS[name]
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (p.layers, p.hidden, p.mlp)


def test_paper_family_shapes():
    shapes = {n: (p.layers, p.heads, p.hidden) for n, p in PRESETS.items() if n not in ("tiny", "mini")}
    assert shapes == {"1M": (8, 16, 64), "3M": (8, 16, 128), "8M": (8, 16, 256), "28M": (8, 16, 512),
                      "33M": (4, 16, 768), "2L-33M": (2, 16, 1024), "1L-21M": (1, 16, 1024)}
    # 8 layers x (4 d^2 attention + 3 d (4d) SwiGLU + 2 d norms) + final norm, at d = 256.
    assert param_counts("8M", 32000)[1] == 8 * (4 * 256**2 + 3 * 256 * 1024 + 2 * 256) + 256


def test_lr_schedule_warms_up_then_holds_or_decays():
    assert [round(lr_factor(s, 100, 5, "constant", 0.1), 3) for s in (0, 4, 5, 99)] == [0.2, 1.0, 1.0, 1.0]
    assert lr_factor(99, 100, 5, "cosine", 0.1) == pytest.approx(0.1, abs=1e-3)


def test_window_sampler_is_a_permutation_per_epoch_and_resumes():
    s = WindowSampler(10, seed=3)
    first = s.take(7)
    rest = WindowSampler(10, seed=3, **s.state()).take(13)
    s2 = WindowSampler(10, seed=3)
    assert list(s2.take(20)) == list(first) + list(rest)
    assert sorted(s2._permutation(0)) == list(range(10))
    assert sorted(list(first) + list(rest[:3])) == list(range(10))


def test_tiny_model_learns(corpus, tokenizer_dir, tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", *TRAIN_ARGS, "--tokenizer", tokenizer_dir, "--data", corpus, "--out", run,
                "--max-steps", "80", "--eval-every", "40") == 0
    rows = _rows(run)
    first_val, last_val = float(rows[0]["val_loss"]), float(rows[-1]["val_loss"])
    assert first_val > 5.0  # about ln(400) for a fresh model
    assert last_val < 0.5 * first_val
    assert (run / "loss.png").stat().st_size > 1000
    assert json.loads((run / "config.json").read_text())["result"]["learned"] is True
    from babelscope.models import load_model

    model, tok = load_model(run / "final")
    assert model.config.vocab_size >= len(tok)
    # the tokenizer was trained with the default 512; the saved one says the model's context
    assert tok.model_max_length == model.config.max_position_embeddings == 64


def _run_until_killed(cmd: list[str], run: Path, kill_after_step: int) -> None:
    env = {**os.environ, "BABELSCOPE_NO_PROGRESS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.csv").exists():
            lines = (run / "metrics.csv").read_text().splitlines()
            if len(lines) > kill_after_step + 1:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted(corpus, tokenizer_dir, tmp_path):
    # Warm-up over half the run, so the kill and the resume fall inside it (the lr must be restored too).
    args = [*TRAIN_ARGS, "--tokenizer", str(tokenizer_dir), "--data", str(corpus), "--max-steps", "150", "--warmup", "0.5",
            "--eval-every", "30", "--save-every", "20", "--cache-dir", str(tmp_path / "cache")]
    straight = tmp_path / "straight"
    assert run_cli("train", *args, "--out", straight) == 0
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "babelscope.cli", "train", *args, "--out", str(killed)]
    _run_until_killed(cmd, killed, kill_after_step=70)
    assert not (killed / "final").exists()
    assert run_cli("train", *args, "--out", killed, "--resume") == 0
    a, b = _rows(straight), _rows(killed)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [str(i) for i in range(151)]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]
    wa = load_state(straight / "final")["optimizer"]["state"][0]["exp_avg"]
    wb = load_state(killed / "final")["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(wa, wb)


def test_continual_pretraining_restores_the_optimizer_state(corpus, tokenizer_dir, tmp_path):
    base = tmp_path / "base"
    assert run_cli("train", *TRAIN_ARGS, "--tokenizer", tokenizer_dir, "--data", corpus, "--out", base,
                "--max-steps", "12") == 0
    saved = load_state(base / "final")["optimizer"]
    cp = tmp_path / "cp"
    seen = {}

    def grab(optimizer, *args, **kwargs):  # the optimizer state just before the first continued step
        if not seen:
            seen.update({i: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
                         for i, s in enumerate(optimizer.state.values())})

    handle = register_optimizer_step_pre_hook(grab)
    try:
        train(TrainConfig(out=str(cp), data=[str(corpus)], init_from=str(base / "final"), context=64, batch_size=8,
                          lr=1e-3, max_steps=3, eval_batches=2, select="last"))
    finally:
        handle.remove()
    assert len(seen) == len(saved["state"])
    for i, s in saved["state"].items():
        assert float(seen[i]["step"]) == float(s["step"]) == 12.0
        assert torch.equal(seen[i]["exp_avg"], s["exp_avg"])
        assert torch.equal(seen[i]["exp_avg_sq"], s["exp_avg_sq"])
    assert float(load_state(cp / "final")["optimizer"]["state"][0]["step"]) == 15.0
    assert json.loads((cp / "final" / "checkpoint.json").read_text())["step"] == 3


@pytest.mark.slow
def test_ddp_two_cpu_processes(corpus, tokenizer_dir, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "babelscope.cli", "train", *TRAIN_ARGS, "--tokenizer", str(tokenizer_dir), "--data", str(corpus),
           "--out", str(run), "--max-steps", "40", "--eval-every", "20", "--save-every", "20",
           "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "BABELSCOPE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(run)
    assert [r["step"] for r in rows] == [str(i) for i in range(41)]  # one writer: no duplicated rows
    assert int(rows[-1]["tokens"]) == 40 * 2 * 8 * 64  # two ranks' batches per step
    assert float(rows[-1]["val_loss"]) < 0.6 * float(rows[0]["val_loss"])
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert [s for s, _ in list_checkpoints(run)] == [20, 40]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "final", "loss.png",
                                                      "metrics.csv"]


def _error(capsys, *args) -> str:
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_inputs_give_one_line_errors(tmp_path, capsys, tokenizer_dir, corpus, tiny_model_dir):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    base = ["train", *TRAIN_ARGS, "--tokenizer", str(tokenizer_dir), "--max-steps", "2"]
    assert "empty.jsonl" in _error(capsys, *base, "--data", empty, "--out", tmp_path / "r1")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": oops}\n')
    assert "broken.jsonl:2: not valid JSON" in _error(capsys, *base, "--data", broken, "--out", tmp_path / "r2")
    notext = tmp_path / "notext.jsonl"
    notext.write_text('{"story": "a"}\n')
    err = _error(capsys, *base, "--data", notext, "--out", tmp_path / "r3")
    assert "notext.jsonl:1: field 'text' is missing" in err and "--text-field story" in err
    # A tokenizer bigger than the model's embedding.
    from babelscope.tokenizer import train_tokenizer

    big = tmp_path / "bigtok"
    train_tokenizer([f"w{i} " * 3 for i in range(3000)], 4000, big, min_frequency=1)
    mixed = tmp_path / "mixed_model"
    shutil.copytree(tiny_model_dir, mixed)
    for f in big.iterdir():
        shutil.copy(f, mixed / f.name)
    err = _error(capsys, "generate", "--model", mixed, "--prompt", "hi", "--device", "cpu")
    assert "mixed_model: tokenizer has" in err and "embedding has" in err
    # A truncated checkpoint.
    run = tmp_path / "run"
    assert run_cli(*base, "--data", corpus, "--out", run, "--save-every", "1") == 0
    assert "learned (almost) nothing" in capsys.readouterr().err  # 2 steps: warned, and not an error
    killed = tmp_path / "killed"  # the same run as if killed before its end (a finished run resumes to itself)
    shutil.copytree(run, killed)
    shutil.rmtree(killed / "final")
    state = killed / "checkpoints" / "step-2" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    err = _error(capsys, *base, "--data", corpus, "--out", killed, "--resume")
    assert "step-2/trainer_state.pt: truncated or corrupt checkpoint" in err
    weights = run / "final" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    err = _error(capsys, "train", "--init-from", run / "final", "--data", corpus, "--out", tmp_path / "r4")
    assert "model.safetensors: truncated or corrupt weights" in err
    # An existing run is never overwritten by accident.
    assert "--resume" in _error(capsys, *base, "--data", corpus, "--out", run)
    # A bad preset or head count is reported before the corpus is tokenised.
    cache = tmp_path / "cache"
    for flags, words in ((["--preset", "5M"], "invalid choice: '5M'"), (["--kv-heads", "3"], "--kv-heads 3")):
        err = _error(capsys, *base, *flags, "--data", corpus, "--out", tmp_path / "r5", "--cache-dir", cache)
        assert words in err and not cache.exists()


def test_a_run_that_learned_nothing_says_so(corpus, tokenizer_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli("train", *TRAIN_ARGS, "--lr", "1e-7", "--tokenizer", tokenizer_dir, "--data", corpus, "--out",
                   run, "--max-steps", "3") == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "learned (almost) nothing" in err and "--lr" in err
    result = json.loads((run / "config.json").read_text())["result"]
    assert result["learned"] is False and result["val_loss"] > 0.9 * result["uniform_loss"]
    assert json.loads((run / "final" / "checkpoint.json").read_text())["learned"] is False


@pytest.mark.slow
def test_continual_pretraining_keeps_the_best_model_and_reports_forgetting(corpus, tokenizer_dir, tmp_path):
    base = tmp_path / "base"
    assert run_cli("train", *TRAIN_ARGS, "--tokenizer", tokenizer_dir, "--data", corpus, "--out", base,
                   "--max-steps", "20") == 0
    native = tmp_path / "native.jsonl"
    native.write_text("".join(json.dumps({"text": "ركض الكلب إلى الحديقة. " * (i + 3)}, ensure_ascii=False) + "\n"
                              for i in range(12)))
    # A learning rate far too high for the small native set: the validation loss falls, then climbs.
    cp_args = ["train", "--init-from", base / "final", "--data", native, "--val-data", native, "--also-eval", corpus,
               "--context", "64", "--batch-size", "4", "--lr", "0.05", "--warmup", "0", "--max-steps", "12",
               "--eval-every", "2", "--eval-batches", "2"]
    assert run_cli(*cp_args, "--out", tmp_path / "cp") == 0
    rows = [r for r in _rows(tmp_path / "cp") if r["val_loss"]]
    assert all(r["also_val_loss"] for r in rows)  # the pre-training style beside the native one, per evaluation
    losses = {int(r["step"]): float(r["val_loss"]) for r in rows}
    best = min(losses, key=losses.get)
    assert best < 12  # the run went past its best model
    info = json.loads((tmp_path / "cp" / "final" / "checkpoint.json").read_text())
    assert info["step"] == best and info["val_loss"] == pytest.approx(losses[best])
    assert info["selected"] == "best" and info["last_step"] == 12 and info["finished"]
    assert not (tmp_path / "cp" / "best").exists()
    assert float(load_state(tmp_path / "cp" / "final")["optimizer"]["state"][0]["step"]) == 20 + best
    # --resume of the finished run changes nothing; --select last keeps the last step
    before = (tmp_path / "cp" / "final" / "model.safetensors").read_bytes()
    assert run_cli(*cp_args, "--out", tmp_path / "cp", "--resume") == 0
    assert (tmp_path / "cp" / "final" / "model.safetensors").read_bytes() == before
    assert run_cli(*cp_args, "--out", tmp_path / "last", "--select", "last") == 0
    assert json.loads((tmp_path / "last" / "final" / "checkpoint.json").read_text())["step"] == 12

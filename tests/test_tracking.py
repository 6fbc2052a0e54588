"""`--report-to tensorboard`: train and sae train write TensorBoard event files with the numbers of their logs;
a resumed run's events replace what the killed run logged after its checkpoint."""

from __future__ import annotations

import csv
import json

import pytest

from helpers import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.optional]
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def scalars(logdir) -> dict[str, dict[int, float]]:
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bilingual_records):
    path = tmp_path_factory.mktemp("tracking") / "c.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bilingual_records), encoding="utf-8")
    return path


def test_train_writes_the_metrics_as_tensorboard_events(tmp_path, tokenizer_dir, corpus, capsys):
    run = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--context", "64", "--batch-size", "4", "--max-steps", "6",
            "--eval-every", "3", "--eval-batches", "2", "--tokenizer", tokenizer_dir, "--data", corpus,
            "--cache-dir", tmp_path / "cache"]
    assert run_cli(*args, "--out", run, "--report-to", "tensorboard") == 0
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ev = scalars(run / "tensorboard")
    train = {int(r["step"]): float(r["train_loss"]) for r in rows if r["train_loss"]}
    val = {int(r["step"]): float(r["val_loss"]) for r in rows if r["val_loss"]}
    assert sorted(ev["train/loss"]) == sorted(train) == [1, 2, 3, 4, 5, 6] and sorted(ev["eval/loss"]) == [0, 3, 6]
    for step, loss in train.items():
        assert ev["train/loss"][step] == pytest.approx(loss, rel=1e-6)
    for step, loss in val.items():
        assert ev["eval/loss"][step] == pytest.approx(loss, rel=1e-6)
    assert {"train/learning_rate", "train/grad_norm"} <= set(ev)
    # without the flag nothing is written; an unknown tracker is one clean line
    assert run_cli(*args, "--out", tmp_path / "plain") == 0 and not (tmp_path / "plain" / "tensorboard").exists()
    capsys.readouterr()
    assert run_cli(*args, "--out", tmp_path / "bad", "--report-to", "wandb") == 2
    assert "--report-to 'wandb' is not supported" in capsys.readouterr().err


def test_resumed_events_replace_the_killed_runs_tail(tmp_path):
    from babelscope.train.tracking import Tracker

    first = Tracker(tmp_path, ["tensorboard"])
    for step in range(1, 7):  # the killed run logged up to step 6, its last checkpoint was at step 3
        first.log(step, {"train/loss": float(step)})
    first.close()
    resumed = Tracker(tmp_path, ["tensorboard"], start_step=3)
    for step in range(4, 8):
        resumed.log(step, {"train/loss": 10.0 + step})
    resumed.close()
    assert scalars(tmp_path / "tensorboard")["train/loss"] == {1: 1.0, 2: 2.0, 3: 3.0, 4: 14.0, 5: 15.0, 6: 16.0,
                                                              7: 17.0}


def test_sae_train_writes_losses_and_final_metrics(tmp_path, tiny_model_dir, corpus):
    out = tmp_path / "sae"
    assert run_cli("sae", "train", "--model", tiny_model_dir, "--hook", "layers.1.mlp.act", "--data", corpus,
                   "--out", out, "--tokens", "2048", "--val-tokens", "512", "--batch-size", "256",
                   "--buffer-size", "1024", "--k", "4", "--expansion", "2", "--positions", "first:16",
                   "--context-size", "32", "--lr", "1e-3,2e-3", "--log-every", "2", "--warmup-steps", "1",
                   "--report-to", "tensorboard", "--device", "cpu") == 0
    ev = scalars(out / "tensorboard")
    training = json.loads((out / "training.json").read_text())
    history = {h["step"]: h["mse"] for h in training["history"]}
    assert sorted(ev["train/mse/lr_0.001"]) == sorted(history) == [2, 4, 6, 8]
    assert ev["train/mse/lr_0.002"][8] == pytest.approx(history[8][1], rel=1e-6)
    best = {g["lr"]: g for g in training["lr_grid"]}
    assert ev["eval/fve/lr_0.001"][8] == pytest.approx(best[0.001]["fve"], rel=1e-6)
    assert ev["eval/l0/lr_0.002"][8] == pytest.approx(best[0.002]["l0"], rel=1e-6)

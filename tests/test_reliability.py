"""The pieces that keep runs reliable: the reader layer's diagnoses, output checks, strict JSON with the usual
permissions, the sweep of killed writes, the resume guard (by content, not path text), a torn metrics row, and
small corpora (a held-out validation split for continual pre-training, SAE epochs, the study's own advice)."""

from __future__ import annotations

import codecs
import gzip
import json
import math
import os
from pathlib import Path

import pytest

from babelscope.errors import UserError
from helpers import run_cli

# ---- reading ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, says", [
    ('{"text": "hi"}\n'.encode("utf-16"), "UTF-16 LE text (byte-order mark): convert it to UTF-8"),
    ('{"text": "hi"}\n'.encode("utf-16-be"), "UTF-16 BE text without a byte-order mark"),
    ('{"text": "hi"}\n'.encode("utf-16-le"), "UTF-16 LE text without a byte-order mark"),
    (codecs.BOM_UTF32_LE + "x".encode("utf-32-le"), "UTF-32 LE text"),
    (gzip.compress(b'{"text": "hi"}\n'), "gzip-compressed data"),
    (b"PAR1\x00\x00", "a Parquet file"),
    (b"abc\x00def\x01\x02", "binary data (a NUL byte at byte 3)"),
])
def test_what_a_file_is_when_it_is_not_utf8_text(tmp_path, data, says):
    from babelscope.corpus import iter_corpus

    path = tmp_path / "c.jsonl"
    path.write_bytes(data)
    with pytest.raises(UserError, match="not UTF-8 text") as e:
        iter_corpus([path])
    assert says in str(e.value) and str(path) in str(e.value)


def test_a_bad_byte_is_reported_at_its_offset_in_the_file(tmp_path):
    from babelscope.corpus import iter_corpus
    from babelscope.corpus.readers import read_txt

    first = b'{"text": "fine"}\n'
    path = tmp_path / "c.jsonl"
    path.write_bytes(first + b'{"text": "caf\xe9"}\n')
    with pytest.raises(UserError, match=rf"byte 0xe9 at byte offset {len(first) + 13} \(Latin-1"):
        list(iter_corpus([path]))
    txt = tmp_path / "c.txt"
    txt.write_bytes(codecs.BOM_UTF8 + b"a" * 100 + b"<|endoftext|>b\xff")
    with pytest.raises(UserError, match=f"at byte offset {3 + 100 + 13 + 1}"):
        list(read_txt(txt, chunk_chars=7))  # the bad byte falls in a later chunk
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"text": "ok"}\n' * 50)[:40])
    with pytest.raises(UserError, match="truncated or corrupt gzip data"):
        list(iter_corpus([gz]))


def test_corpus_problems_surface_when_the_stream_is_made_not_when_read(tmp_path):
    from babelscope.corpus import iter_corpus

    (tmp_path / "a.jsonl").write_text('{"text": 1}\n')
    with pytest.raises(UserError, match=r"a.jsonl:1: field 'text' is a int"):
        iter_corpus([tmp_path / "a.jsonl"])  # no next(): the first record is checked at once


# ---- writing ----------------------------------------------------------------------------------------------------


def test_json_is_strict_and_files_get_the_umask_permissions(tmp_path):
    from babelscope.files import Journal, write_json_atomic

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"alpha": math.nan, "x": [math.inf, 1.5]})
        with Journal(tmp_path / "j.jsonl", key=lambda r: r["k"]) as j:
            j.append({"k": 1, "v": -math.inf})
    finally:
        os.umask(old)
    strict = {"parse_constant": lambda c: pytest.fail(f"non-standard JSON constant {c}")}
    assert json.loads((tmp_path / "a.json").read_text(), **strict) == {"alpha": None, "x": [None, 1.5]}
    assert json.loads((tmp_path / "j.jsonl").read_text(), **strict) == {"k": 1, "v": None}
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_stale_temporaries_of_killed_writes_are_swept(tmp_path):
    from babelscope.files import sweep_stale

    for name in (".checkpoint.pt.a1b2_c3d.tmp", ".metrics.csv.zzzzzzzz.tmp", ".final.old", ".hidden", "keep.tmp"):
        (tmp_path / name).write_text("x")
    (tmp_path / ".step-20.tmp").mkdir()
    removed = sweep_stale(tmp_path)
    assert sorted(p.name for p in removed) == [".checkpoint.pt.a1b2_c3d.tmp", ".final.old",
                                               ".metrics.csv.zzzzzzzz.tmp", ".step-20.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "keep.tmp"]
    (tmp_path / ".a.x.12345678.tmp").write_text("x")
    assert sweep_stale(tmp_path, names=["b"]) == []  # only the named outputs' leftovers


def test_outputs_are_checked_before_any_work(tmp_path):
    from babelscope.files import check_output

    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="directory exists as a file"):
        check_output(tmp_path / "f", directory=True)
    with pytest.raises(UserError, match=r"is a file, not a directory"):
        check_output(tmp_path / "f" / "sub" / "out", directory=True)
    with pytest.raises(UserError, match="file exists as a directory"):
        check_output(tmp_path, directory=False)
    with pytest.raises(UserError, match="not enough disk space"):
        check_output(tmp_path / "new", directory=True, need=1 << 62)
    assert check_output(tmp_path / "a" / "b", directory=True) == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # nothing created


def test_a_torn_last_metrics_row_does_not_survive_resume(tmp_path):
    from babelscope.train.metrics import MetricsLog

    log = MetricsLog(tmp_path / "metrics.csv")
    log.start()
    for step in range(4):
        log.append({"step": step, "tokens": step * 10, "train_loss": 1.0})
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("4,40,0.00")  # the kill cut this row: it would read as a row for step 4... or 40
    log.resume_at(3)
    assert [r["step"] for r in log.read()] == ["0", "1", "2", "3"]
    log.append({"step": 4, "tokens": 40})
    assert [r["step"] for r in log.read()] == ["0", "1", "2", "3", "4"]


# ---- resuming ---------------------------------------------------------------------------------------------------


def test_the_resume_guard_compares_inputs_by_content(tmp_path, monkeypatch):
    from babelscope.resume import check, record

    data = tmp_path / "c.jsonl"
    data.write_text('{"text": "a"}\n')
    monkeypatch.chdir(tmp_path)
    saved = json.loads(json.dumps(record({"lr": 0.1}, {"data": ["c.jsonl"]})))
    check(saved, record({"lr": 0.1}, {"data": [str(data)]}), where="x")  # the same file, spelled otherwise
    with pytest.raises(UserError, match=r"x: this output was started with other settings or inputs: lr was 0.1, "
                                        r"now 0.2"):
        check(saved, record({"lr": 0.2}, {"data": [str(data)]}), where="x")
    data.write_text('{"text": "b"}\n')
    with pytest.raises(UserError, match=r"data\[0\]: .*c.jsonl has changed since"):
        check(saved, record({"lr": 0.1}, {"data": ["c.jsonl"]}), where="x")


TRAIN = ["--preset", "tiny", "--context", "32", "--batch-size", "4", "--eval-batches", "1", "--eval-every", "2"]


def test_train_resumes_with_the_data_spelled_as_an_absolute_path(tmp_path, monkeypatch, bilingual_records,
                                                                 tokenizer_dir):
    from babelscope.corpus import write_corpus

    write_corpus(tmp_path / "c.jsonl", bilingual_records)
    monkeypatch.chdir(tmp_path)
    args = [*TRAIN, "--tokenizer", tokenizer_dir, "--out", "run", "--max-steps", "4", "--save-every", "2",
            "--cache-dir", "cache"]
    assert run_cli("train", *args, "--data", "c.jsonl") == 0
    assert run_cli("train", *args, "--data", tmp_path / "c.jsonl", "--resume") == 0
    write_corpus(tmp_path / "c.jsonl", bilingual_records[:300])
    assert run_cli("train", *args, "--data", "c.jsonl", "--resume") == 2


# ---- small corpora (issue 11, item 6) ----------------------------------------------------------------------------


def test_continual_pretraining_on_40_stories_holds_out_what_it_needs(tmp_path, bilingual_records, tokenizer_dir,
                                                                    capsys):
    from babelscope.corpus import write_corpus

    write_corpus(tmp_path / "base.jsonl", bilingual_records)
    write_corpus(tmp_path / "native.jsonl", bilingual_records[:40])
    common = ["--batch-size", "4", "--eval-batches", "1", "--cache-dir", tmp_path / "cache", "--max-steps", "2"]
    assert run_cli("train", "--preset", "tiny", "--context", "32", "--tokenizer", tokenizer_dir, "--data",
                   tmp_path / "base.jsonl", "--out", tmp_path / "base", *common) == 0
    capsys.readouterr()
    assert run_cli("train", "--init-from", tmp_path / "base" / "final", "--data", tmp_path / "native.jsonl",
                   "--out", tmp_path / "cp", *common) == 0
    err = capsys.readouterr().err
    assert "a corpus of 40 documents is too small to validate on every 100th one" in err
    info = json.loads((tmp_path / "cp" / "config.json").read_text())
    assert info["shards"]["docs"]["val"] >= 1 and info["shards"]["val_note"]


def test_sae_train_takes_epochs_over_a_small_corpus(tmp_path, bilingual_records, tiny_model_dir, capsys):
    from babelscope.corpus import write_corpus
    from babelscope.sae.io import read_training

    write_corpus(tmp_path / "small.jsonl", bilingual_records[:30])
    assert run_cli("sae", "train", "--model", tiny_model_dir, "--hook", "layers.0.resid_post", "--data",
                   tmp_path / "small.jsonl", "--out", tmp_path / "sae", "--tokens", "2048", "--val-tokens", "64",
                   "--batch-size", "64", "--buffer-size", "256", "--expansion", "2", "--k", "4",
                   "--model-batch-size", "4", "--device", "cpu") == 0
    info = read_training(tmp_path / "sae")
    per_pass = info["activations_per_pass"]
    assert 0 < per_pass < 2048 and info["epochs"] == pytest.approx(2048 / per_pass)
    assert info["metrics"]["train_tokens"] == 2048
    assert f"took {info['epochs']:.2f} passes over it (epochs)" in capsys.readouterr().err


def test_study_on_a_small_corpus_names_its_own_settings(tmp_path, bilingual_records, tiny_model_dir, capsys):
    import shutil

    from babelscope.corpus import write_corpus

    shutil.copytree(tiny_model_dir, tmp_path / "run" / "final")
    (tmp_path / "run" / "final" / "checkpoint.json").write_text('{"step": 1, "tokens": 64}')
    write_corpus(tmp_path / "docs.jsonl", bilingual_records[:40])
    code = run_cli("study", "bilingual", "--runs", tmp_path / "run", "--data", tmp_path / "docs.jsonl", "--out",
                   tmp_path / "study", "--layers", "0", "--eval-frac", "0.5")
    err = capsys.readouterr().err
    assert code == 2 and "--sae-tokens" in err and "--val-tokens" not in err, err


def test_an_error_line_never_shares_a_line_with_a_progress_bar(tmp_path, monkeypatch, capsys, tokenizer_dir):
    monkeypatch.setenv("BABELSCOPE_NO_PROGRESS", "0")
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "fine"}\n' * 3000 + b'{"text": "caf\xe9"}\n')
    assert run_cli("train", "--data", path, "--tokenizer", tokenizer_dir, "--preset", "tiny", "--out",
                   tmp_path / "run", "--cache-dir", tmp_path / "cache") == 2
    err = capsys.readouterr().err
    assert "tokenising" in err  # the bar was drawn
    line = next(x for x in err.replace("\r", "\n").splitlines() if "error:" in x)
    assert line.startswith("babelscope: error:") and "byte 0xe9" in line
    assert Path(tmp_path / "run").exists() is False

"""The bad-input table: every command against every class of bad input it can meet gives exit code 2, one line
on stderr naming the file (or the flag), no traceback, and leaves nothing behind.

The CLI runs in-process (`main()`), on one tiny model, SAE, feature store and run built once for the module.
Tests run as root here, and root writes into a chmod 0555 directory; so the read-only case makes the directory
immutable (`chattr +i`), which binds root too, and is skipped (saying why) where that is not possible.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import random_sae, run_cli

HOOK = "layers.0.resid_post"
URL = "http://127.0.0.1:9/v1"  # the discard port: nothing listens, so any request fails at once

# ---- the inputs -------------------------------------------------------------------------------------------------

CORPUS_CLASSES = {  # name -> file name (built in `world`)
    "empty": "empty.jsonl", "non-json": "nonjson.jsonl", "missing-field": "nofield.jsonl",
    "wrong-type": "wrongtype.jsonl", "utf16": "utf16.jsonl", "utf16-txt": "utf16.txt", "latin1": "latin1.jsonl",
    "binary": "binary.jsonl", "gzip": "gzip.jsonl", "bad-gz": "notgzip.jsonl.gz", "dir": "adir.jsonl",
    "truncated-parquet": "truncated.parquet", "missing": "nothere.jsonl",
}
OUT = ["--out", "{tmp}/out"]
CORPUS_COMMANDS = {
    "tokenizer-train": ["tokenizer", "train", "--data", "{bad}", *OUT, "--vocab-size", "300"],
    "train": ["train", "--data", "{bad}", "--tokenizer", "{tok}", "--preset", "tiny", *OUT, "--max-steps", "1",
              "--cache-dir", "{world}/cache"],
    "train-val": ["train", "--data", "{corpus}", "--val-data", "{bad}", "--tokenizer", "{tok}", "--preset", "tiny",
                  *OUT, "--max-steps", "1", "--cache-dir", "{world}/cache"],
    "eval-perplexity": ["eval", "perplexity", "--model", "{model}", "--data", "{bad}", "--out", "{tmp}/out.csv"],
    "sae-train": ["sae", "train", "--model", "{model}", "--hook", HOOK, "--data", "{bad}", *OUT, "--tokens", "256",
                  "--batch-size", "64", "--buffer-size", "128", "--val-tokens", "64"],
    "sae-eval": ["sae", "eval", "--sae", "{sae}", "--model", "{model}", "--data", "{bad}", "--out", "{tmp}/out.json",
                 "--tokens", "100"],
    "analyze-features": ["analyze", "features", "--model", "{model}", "--sae", "{sae}", "--data", "{bad}", *OUT,
                         "--tokens", "200"],
    "analyze-tsea": ["analyze", "tsea", "--model", "{model}", "--sae", "{sae}", "--sets", "name_then_punct",
                     "--data", "{bad}", *OUT],
    "eval-marks": ["eval", "marks", "--texts", "{bad}", *OUT],
    "eval-judge": ["eval", "judge", "--models", "{model}", "--prompts", "{bad}", "--judge-url", URL,
                   "--judge-model", "j", *OUT, "--max-retries", "0"],
    "translate": ["translate", "{bad}", "{tmp}/out.jsonl", "--model", "{model}"],
    "intervene-inject": ["intervene", "inject", "--full", "{model}", "--mid", "{model}", "--sae", "{sae}",
                         "--data", "{bad}", *OUT],
    "study-bilingual": ["study", "bilingual", "--checkpoints", "{run}/checkpoints", "--data", "{bad}", *OUT],
    "eval-translation": ["eval", "translation", "--hyp", "{bad}", "--ref", "{corpus}", "--out", "{tmp}/out.json"],
}

MODEL_CLASSES = {"file": "{file}", "empty-dir": "{emptydir}", "bad-config": "{world}/model_badcfg",
                 "truncated-weights": "{world}/model_cut"}
MODEL_COMMANDS = {
    "eval-perplexity": ["eval", "perplexity", "--model", "{bad}", "--data", "{corpus}", "--out", "{tmp}/out.csv"],
    "sae-train": ["sae", "train", "--model", "{bad}", "--hook", HOOK, "--data", "{corpus}", *OUT, "--tokens", "256",
                  "--batch-size", "64", "--buffer-size", "128", "--val-tokens", "64"],
    "sae-eval": ["sae", "eval", "--sae", "{sae}", "--model", "{bad}", "--data", "{corpus}"],
    "analyze-features": ["analyze", "features", "--model", "{bad}", "--sae", "{sae}", "--data", "{corpus}", *OUT],
    "analyze-tsea": ["analyze", "tsea", "--model", "{bad}", "--sae", "{sae}", "--sets", "english_names", *OUT],
    "generate": ["generate", "--model", "{bad}", "--prompt", "the cat", "-n", "1", "--max-new-tokens", "2"],
    "train-init-from": ["train", "--init-from", "{bad}", "--data", "{corpus}", *OUT, "--max-steps", "1"],
    "intervene-inject": ["intervene", "inject", "--full", "{model}", "--mid", "{bad}", "--sae", "{sae}",
                         "--data", "{corpus}", *OUT],
    "export-model": ["export", "model", "--model", "{bad}", *OUT],
}

SAE_CLASSES = {"file": "{file}", "empty-dir": "{emptydir}", "non-json-cfg": "{world}/sae_nonjson",
               "wrong-type-cfg": "{world}/sae_wrongtype", "missing-field-cfg": "{world}/sae_nofield",
               "truncated-safetensors": "{world}/sae_cut", "width-mismatch": "{world}/sae_wide",
               "foreign-hook": "{world}/sae_deep"}
SAE_COMMANDS = {
    "sae-eval": ["sae", "eval", "--sae", "{bad}", "--model", "{model}", "--data", "{corpus}",
                 "--out", "{tmp}/out.json"],
    "analyze-features": ["analyze", "features", "--model", "{model}", "--sae", "{bad}", "--data", "{corpus}", *OUT],
    "analyze-tsea": ["analyze", "tsea", "--model", "{model}", "--sae", "{bad}", "--sets", "english_names", *OUT],
    "generate-steer": ["generate", "--model", "{model}", "--sae", "{bad}", "--steer", "0:1", "--prompt", "a",
                       "--max-new-tokens", "2"],
    "dashboard": ["dashboard", "--features", "{store}", *OUT, "--model", "{model}", "--sae", "{bad}"],
    "export-sae": ["export", "sae", "--sae", "{bad}", *OUT],
    "intervene-inject": ["intervene", "inject", "--full", "{model}", "--mid", "{model}", "--sae", "{bad}",
                         "--data", "{corpus}", *OUT],
}

STORE_CLASSES = {"file": "{file}", "empty-dir": "{emptydir}", "non-json-meta": "{world}/store_nonjson",
                 "truncated-parquet": "{world}/store_cut", "garbage-parquet": "{world}/store_garbage"}
STORE_COMMANDS = {
    "export-features": ["export", "features", "--features", "{bad}", *OUT],
    "dashboard": ["dashboard", "--features", "{bad}", *OUT, "--no-model"],
    "analyze-languages": ["analyze", "languages", "--features", "{bad}", *OUT],
    "browse": ["browse", "{bad}", "--no-model", "--port", "1"],
}

# Output paths: a file where a directory goes, a path under a file, a read-only directory, a directory where a
# file goes. {out} is replaced per class.
DIR_OUTPUT_COMMANDS = {
    "tokenizer-train": ["tokenizer", "train", "--data", "{corpus}", "--out", "{out}", "--vocab-size", "300"],
    "train": ["train", "--data", "{corpus}", "--tokenizer", "{tok}", "--preset", "tiny", "--out", "{out}",
              "--max-steps", "1", "--cache-dir", "{world}/cache"],
    "sae-train": ["sae", "train", "--model", "{model}", "--hook", HOOK, "--data", "{corpus}", "--out", "{out}",
                  "--tokens", "256", "--batch-size", "64", "--buffer-size", "128", "--val-tokens", "64"],
    "analyze-features": ["analyze", "features", "--model", "{model}", "--sae", "{sae}", "--data", "{corpus}",
                         "--out", "{out}"],
    "analyze-tsea": ["analyze", "tsea", "--model", "{model}", "--sae", "{sae}", "--sets", "english_names",
                     "--out", "{out}"],
    "analyze-languages": ["analyze", "languages", "--features", "{store}", "--out", "{out}"],
    "dashboard": ["dashboard", "--features", "{store}", "--out", "{out}", "--no-model"],
    "eval-marks": ["eval", "marks", "--texts", "{corpus}", "--out", "{out}"],
    "eval-judge": ["eval", "judge", "--models", "{model}", "--judge-url", URL, "--judge-model", "j", "--out", "{out}",
                   "--max-retries", "0"],
    "intervene-inject": ["intervene", "inject", "--full", "{model}", "--mid", "{model}", "--sae", "{sae}",
                         "--data", "{corpus}", "--out", "{out}"],
    "study-bilingual": ["study", "bilingual", "--checkpoints", "{run}/checkpoints", "--data", "{corpus}",
                        "--out", "{out}"],
    "demo": ["demo", "--out", "{out}"],
    "export-model": ["export", "model", "--model", "{model}", "--out", "{out}"],
    "export-sae": ["export", "sae", "--sae", "{sae}", "--out", "{out}"],
    "export-features": ["export", "features", "--features", "{store}", "--out", "{out}"],
}
FILE_OUTPUT_COMMANDS = {
    "corpus-storyworld": ["corpus", "storyworld", "--stories", "2", "--out", "{out}.jsonl"],
    "eval-perplexity": ["eval", "perplexity", "--model", "{model}", "--data", "{corpus}", "--out", "{out}.csv"],
    "sae-eval": ["sae", "eval", "--sae", "{sae}", "--model", "{model}", "--data", "{corpus}", "--out", "{out}.json"],
    "translate": ["translate", "{corpus}", "{out}.jsonl", "--model", "{model}"],
    "synth": ["synth", "--base-url", URL, "--model", "m", "--n", "2", "--out", "{out}.jsonl", "--max-retries", "0"],
    "eval-translation": ["eval", "translation", "--hyp", "{corpus}", "--ref", "{corpus}", "--key", "id",
                         "--out", "{out}.json"],
}
OUTPUT_CLASSES = {"file-as-dir": "{tmp}/afile", "under-a-file": "{tmp}/afile/sub", "read-only": "{ro}/out"}
FILE_OUTPUT_CLASSES = {"dir-as-file": "{tmp}/adir", "under-a-file": "{tmp}/afile/sub", "read-only": "{ro}/out"}

RESUME_CASES = {  # a corrupt checkpoint where a resume reads it: (argv, the bad file)
    "sae-train-corrupt-checkpoint": (["sae", "train", "--model", "{model}", "--hook", HOOK, "--data", "{corpus}",
                                      "--out", "{tmp}/sae_run", "--tokens", "256", "--batch-size", "64",
                                      "--buffer-size", "128", "--val-tokens", "0", "--resume"],
                                     "{tmp}/sae_run/checkpoint.pt"),
    "train-corrupt-checkpoint": (["train", "--data", "{corpus}", "--out", "{tmp}/lm_run", "--resume",
                                  "--max-steps", "3", "--cache-dir", "{world}/cache"],
                                 "{tmp}/lm_run/checkpoints/step-1/trainer_state.pt"),
}

FLAG_CASES = {  # out-of-range numbers (and a bad settings file): the flag or file named, exit 2
    "features-tokens-negative": (["analyze", "features", "--model", "{model}", "--sae", "{sae}", "--data",
                                  "{corpus}", *OUT, "--tokens", "-5"], "--tokens"),
    "tokenizer-vocab-10": (["tokenizer", "train", "--data", "{corpus}", *OUT, "--vocab-size", "10"], "--vocab-size"),
    "tokenizer-config-vocab-10": (["tokenizer", "train", "--config", "{world}/vocab10.toml"], "vocab10.toml"),
    "sae-train-tokens-0": (["sae", "train", "--model", "{model}", "--hook", HOOK, "--data", "{corpus}", *OUT,
                            "--tokens", "0"], "--tokens"),
    "sae-train-lr-negative": (["sae", "train", "--model", "{model}", "--hook", HOOK, "--data", "{corpus}", *OUT,
                               "--lr", "1e-3,-1"], "--lr"),
    "train-batch-0": (["train", "--data", "{corpus}", "--tokenizer", "{tok}", "--preset", "tiny", *OUT,
                       "--batch-size", "0"], "--batch-size"),
    "train-seed-negative": (["train", "--data", "{corpus}", "--tokenizer", "{tok}", "--preset", "tiny", *OUT,
                             "--seed", "-1"], "--seed"),
    "train-betas-one": (["train", "--data", "{corpus}", "--tokenizer", "{tok}", "--preset", "tiny", *OUT,
                         "--betas", "0.9,1"], "--betas"),
    "train-betas-single": (["train", "--data", "{corpus}", "--tokenizer", "{tok}", "--preset", "tiny", *OUT,
                            "--betas", "0.9"], "--betas"),
    "generate-device-unknown": (["generate", "--model", "{model}", "--prompt", "a", "--device", "banana"], "banana"),
    "languages-sim-threshold-2": (["analyze", "languages", "--features", "{store}", *OUT, "--sim-threshold", "2"],
                                  "--sim-threshold"),
    "train-preset-unknown": (["train", "--data", "{corpus}", "--tokenizer", "{tok}", "--preset", "huge", *OUT],
                             "huge"),
    "perplexity-batch-0": (["eval", "perplexity", "--model", "{model}", "--data", "{corpus}", "--batch-size", "0"],
                           "--batch-size"),
    "generate-n-0": (["generate", "--model", "{model}", "--prompt", "a", "-n", "0"], "-n"),
    "generate-temperature-negative": (["generate", "--model", "{model}", "--prompt", "a", "--temperature", "-1"],
                                      "--temperature"),
    "generate-seed-huge": (["generate", "--model", "{model}", "--prompt", "a", "--seed", str(2**70)], "--seed"),
    "synth-n-0": (["synth", "--base-url", URL, "--model", "m", "--n", "0", "--out", "{tmp}/s.jsonl"], "--n"),
    "judge-concurrency-0": (["eval", "judge", "--models", "{model}", "--judge-url", URL, "--judge-model", "j", *OUT,
                             "--concurrency", "0"], "--concurrency"),
    "storyworld-stories-0": (["corpus", "storyworld", "--stories", "0", "--out", "{tmp}/s.jsonl"], "--stories"),
    "models-list-vocab-0": (["models", "list", "--vocab-size", "0"], "--vocab-size"),
    "dashboard-limit-0": (["dashboard", "--features", "{store}", *OUT, "--limit", "0"], "--limit"),
    "study-k-0": (["study", "bilingual", "--checkpoints", "{run}/checkpoints", "--data", "{corpus}", *OUT,
                   "--k", "0"], "--k"),
    "inject-tau-low": (["intervene", "inject", "--full", "{model}", "--mid", "{model}", "--sae", "{sae}", "--data",
                        "{corpus}", *OUT, "--tau", "0.3"], "--tau"),
    "browse-port-huge": (["browse", "{store}", "--port", "70000"], "--port"),
    "demo-set-unknown": (["demo", *OUT, "--set", "nosuchstage.tokens=5"], "nosuchstage"),
    "translate-beam-0": (["translate", "{corpus}", "{tmp}/t.jsonl", "--model", "{model}", "--beam-size", "0"],
                         "--beam-size"),
    "sae-eval-tokens-0": (["sae", "eval", "--sae", "{sae}", "--model", "{model}", "--data", "{corpus}",
                           "--tokens", "0"], "--tokens"),
    "config-utf16": (["tokenizer", "train", "--config", "{world}/utf16.toml"], "utf16.toml"),
    "config-non-json": (["tokenizer", "train", "--config", "{world}/bad.json"], "bad.json"),
    "config-binary": (["tokenizer", "train", "--config", "{world}/binary.toml"], "binary.toml"),
    "config-wrong-type": (["tokenizer", "train", "--config", "{world}/wrongtype.toml"], "wrongtype.toml"),
    "config-dir": (["tokenizer", "train", "--config", "{emptydir}"], "emptydir"),
}


def _cases() -> list[tuple[str, list[str], str, str | None]]:
    """(id, argv template, the text the error line must hold, the bad file to restore or None)."""
    cases = []
    for cmd, argv in CORPUS_COMMANDS.items():
        for cls, name in CORPUS_CLASSES.items():
            cases.append((f"{cmd}/corpus-{cls}", [a.replace("{bad}", "{world}/" + name) for a in argv], name, None))
    for table, classes, prefix in ((MODEL_COMMANDS, MODEL_CLASSES, "model"), (SAE_COMMANDS, SAE_CLASSES, "sae"),
                                   (STORE_COMMANDS, STORE_CLASSES, "store")):
        for cmd, argv in table.items():
            for cls, path in classes.items():
                if cmd == "export-sae" and cls in ("width-mismatch", "foreign-hook"):
                    continue  # exporting an SAE pairs it with no model
                cases.append((f"{cmd}/{prefix}-{cls}", [a.replace("{bad}", path) for a in argv], path, None))
    for table, classes in ((DIR_OUTPUT_COMMANDS, OUTPUT_CLASSES), (FILE_OUTPUT_COMMANDS, FILE_OUTPUT_CLASSES)):
        for cmd, argv in table.items():
            for cls, path in classes.items():
                cases.append((f"{cmd}/out-{cls}", [a.replace("{out}", path) for a in argv], path, None))
    for name, (argv, bad) in RESUME_CASES.items():
        cases.append((name, argv, bad, bad))
    for name, (argv, expect) in FLAG_CASES.items():
        cases.append((f"flags/{name}", argv, expect, None))
    return cases


CASES = _cases()


# ---- the world the cases run in ------------------------------------------------------------------------------------

def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir, tokenizer_dir, bilingual_records):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from babelscope.analysis.store import StoreConfig, build_store
    from babelscope.corpus import write_corpus
    from babelscope.sae.io import save_sae

    w = tmp_path_factory.mktemp("world")
    write_corpus(w / "corpus.jsonl", bilingual_records)
    # bad corpora
    (w / "empty.jsonl").write_text("")
    (w / "nonjson.jsonl").write_text("this is not JSON\n")
    (w / "nofield.jsonl").write_text('{"txt": "hello"}\n')
    (w / "wrongtype.jsonl").write_text('{"text": 5, "prompt": 5, "id": "a"}\n')
    (w / "utf16.jsonl").write_bytes('{"text": "hi"}\n'.encode("utf-16"))
    (w / "utf16.txt").write_bytes("a story<|endoftext|>".encode("utf-16"))
    (w / "latin1.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    (w / "binary.jsonl").write_bytes(bytes(range(256)) * 8)
    (w / "gzip.jsonl").write_bytes(gzip.compress(b'{"text": "hi"}\n'))
    (w / "notgzip.jsonl.gz").write_text('{"text": "plain text named .gz"}\n')
    (w / "adir.jsonl").mkdir()
    pq.write_table(pa.Table.from_pylist(bilingual_records[:200]), w / "whole.parquet")
    shutil.copy(w / "whole.parquet", w / "truncated.parquet")
    _truncate(w / "truncated.parquet")
    (w / "afile").write_text("a plain file\n")
    (w / "emptydir").mkdir()
    # settings files
    (w / "vocab10.toml").write_text(f'data = ["{w / "corpus.jsonl"}"]\nout = "{w / "never"}"\nvocab_size = 10\n')
    (w / "utf16.toml").write_bytes("vocab_size = 300\n".encode("utf-16"))
    (w / "bad.json").write_text("{vocab_size: 300")
    (w / "binary.toml").write_bytes(bytes(range(256)))
    (w / "wrongtype.toml").write_text('data = 5\nout = "x"\n')
    # models
    for name in ("model_badcfg", "model_cut"):
        shutil.copytree(tiny_model_dir, w / name)
    (w / "model_badcfg" / "config.json").write_text("{not json")
    _truncate(next((w / "model_cut").glob("*.safetensors")))
    # SAEs: a good one on the tiny model's residual stream (width 32), and broken ones
    save_sae(random_sae(32, 64, hook=HOOK), w / "sae")
    save_sae(random_sae(48, 64, hook=HOOK), w / "sae_wide")
    save_sae(random_sae(32, 64, hook="layers.7.resid_post"), w / "sae_deep")
    for name in ("sae_nonjson", "sae_wrongtype", "sae_nofield", "sae_cut"):
        shutil.copytree(w / "sae", w / name)
    (w / "sae_nonjson" / "cfg.json").write_text("not json at all")
    cfg = json.loads((w / "sae" / "cfg.json").read_text())
    cfg["babelscope"]["d_in"] = "thirty-two"
    (w / "sae_wrongtype" / "cfg.json").write_text(json.dumps(cfg))
    cfg = json.loads((w / "sae" / "cfg.json").read_text())
    del cfg["babelscope"], cfg["d_in"]
    (w / "sae_nofield" / "cfg.json").write_text(json.dumps(cfg))
    _truncate(w / "sae_cut" / "sae_weights.safetensors")
    # a feature store, and broken copies
    build_store(tiny_model_dir, w / "sae", [w / "corpus.jsonl"], w / "store", StoreConfig(tokens=300, context=32))
    for name in ("store_nonjson", "store_cut", "store_garbage"):
        shutil.copytree(w / "store", w / name)
    (w / "store_nonjson" / "meta.json").write_text("{")
    _truncate(w / "store_cut" / "features.parquet")
    (w / "store_garbage" / "features.parquet").write_bytes(b"PAR1" + bytes(range(200)) + b"PAR1")
    # a training run's layout: RUN/checkpoints/step-1 (for the study)
    step = w / "run" / "checkpoints" / "step-1"
    shutil.copytree(tiny_model_dir, step)
    (step / "checkpoint.json").write_text(json.dumps({"step": 1, "tokens": 100}))
    (w / "cache").mkdir()
    return w


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A directory nobody can write into, root included (chattr +i), or a skip saying why there is none."""
    d = tmp_path_factory.mktemp("ro")
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    done = subprocess.run(["chattr", "+i", str(d)], capture_output=True, text=True) if shutil.which("chattr") else None
    if done is None or done.returncode != 0:
        pytest.skip("running as root, which ignores permissions, and `chattr +i` is not available here "
                    f"({done.stderr.strip() if done else 'no chattr'}): no directory is read-only for this user")
    yield d
    subprocess.run(["chattr", "-i", str(d)], check=True)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
            for p in root.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clean_line(case, world, request, tmp_path, capsys, monkeypatch):
    name, argv, expect, corrupt = case
    ro = request.getfixturevalue("read_only") if "{ro}" in " ".join(argv) else tmp_path / "unused"
    monkeypatch.setenv("BABELSCOPE_CACHE", str(world / "cache"))
    (tmp_path / "afile").write_text("a file where a directory belongs\n")
    for name in ("adir", "adir.jsonl", "adir.csv", "adir.json"):
        (tmp_path / name).mkdir()
    fill = {"world": str(world), "tmp": str(tmp_path), "ro": str(ro), "file": str(world / "afile"),
            "emptydir": str(world / "emptydir"), "corpus": str(world / "corpus.jsonl"),
            "tok": str(request.getfixturevalue("tokenizer_dir")), "model": str(request.getfixturevalue("tiny_model_dir")),
            "sae": str(world / "sae"), "store": str(world / "store"), "run": str(world / "run")}
    args = [a.format(**fill) for a in argv]
    expect = expect.format(**fill)
    if corrupt is not None:  # a run directory whose checkpoint is garbage
        bad = Path(corrupt.format(**fill))
        if "lm_run" in str(bad):
            shutil.copytree(fill["model"], bad.parent)
            (bad.parent / "checkpoint.json").write_text(json.dumps({"step": 1, "tokens": 100}))
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = run_cli(*args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}; stderr:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err[-3000:]}"
    assert expect in lines[0], f"the error line does not name {expect!r}: {lines[0]}"
    assert "unrecognized arguments" not in lines[0] and "arguments are required" not in lines[0], lines[0]
    assert _snapshot(tmp_path) == before, "the failed command left something behind"
    if ro.exists():
        assert not any(ro.iterdir())

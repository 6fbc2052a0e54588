"""`babelscope translate` killed with SIGKILL mid-run and restarted: every record exactly once, fields kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from babelscope.corpus.storyworld import generate_stories

pytestmark = pytest.mark.slow


def test_translate_survives_sigkill(tmp_path):
    from babelscope.data.tiny_mt import build_tiny_nllb

    records = list(generate_stories(40, seed=9, langs=["en"]))
    model = build_tiny_nllb(tmp_path / "nllb", [r["text"] for r in records])
    src = tmp_path / "en.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    out = tmp_path / "ar.jsonl"
    env = {**os.environ, "BABELSCOPE_CACHE": str(tmp_path / "cache"), "BABELSCOPE_NO_PROGRESS": "1"}
    base = [sys.executable, "-m", "babelscope.cli", "translate", "--model", str(model), "--max-length", "8",
            "--beam-size", "1", "--chunk", "1", "--threads", "1", str(src), str(out)]

    # The transformers backend on CPU is slow enough to be killed in the middle.
    proc = subprocess.Popen([*base, "--backend", "transformers"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = out.read_bytes().count(b"\n")
    assert 3 <= written < len(records)
    with open(out, "a", encoding="utf-8") as f:  # what a kill in the middle of a write leaves
        f.write('{"id": "storyworld-9-')

    res = subprocess.run([*base, "--backend", "ctranslate2"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{len(records)} already" not in res.stderr and f"; {written} already in" in res.stderr

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in records)  # each exactly once
    assert sorted(r["source_index"] for r in rows) == list(range(len(records)))
    by_id = {r["id"]: r for r in records}
    for row in rows:
        original = by_id[row["id"]]
        assert row["source_text"] == original["text"] and row["lang"] == "ar"
        assert {k: row[k] for k in original if k not in ("text", "lang", "spans")} == \
            {k: v for k, v in original.items() if k not in ("text", "lang", "spans")}
        # the source's character spans do not describe the translation: they move to source_spans
        assert row["source_spans"] == original["spans"] and "spans" not in row

"""Corpus translation with NLLB/M2M100-family models: CTranslate2 (int8 on CPU) or transformers backends.

Stories are cut into sentences (quotes kept with their tags, `data.sentences`), translated in batches sorted by
length, and re-joined with the original layout. The output is an append-only JSONL journal: every input field is
kept, `text` becomes the translation, the source goes to `source_text`, and `source_index` (the record's position
in the input) is the resume key and the shard key, so a killed run restarts without losing or repeating a record
and `--shard i/N` jobs on many machines partition the input exactly.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from babelscope.corpus import iter_corpus
from babelscope.data.sentences import join_units, split_units
from babelscope.errors import UserError
from babelscope.files import Journal, write_json_atomic
from babelscope.inputs import read_json
from babelscope.manifest import manifest
from babelscope.progress import progress
from babelscope.resume import check, record
from babelscope.settings import Settings, opt

BACKENDS = ("ctranslate2", "transformers")
NLLB_CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")
CODE_HINT = "expected an NLLB code like eng_Latn or arb_Arab"
M2M_HINT = "expected an M2M100 code like en or ar"
# NLLB codes of the languages babelscope labels elsewhere (`lang` fields); others keep their NLLB code.
ISO = {"eng_Latn": "en", "arb_Arab": "ar", "fra_Latn": "fr", "spa_Latn": "es", "deu_Latn": "de", "pes_Arab": "fa",
       "urd_Arab": "ur", "jpn_Jpan": "ja", "zho_Hans": "zh"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model",
                   "vocab.json", "spm.model", "added_tokens.json")
RESUME_KEYS = ("inputs", "text_field", "src", "tgt", "shard")


class Backend(Protocol):
    name: str

    def translate(self, sentences: list[str]) -> list[str]: ...


# ---- model directories and languages ---------------------------------------------------------------------------

def is_ct2_dir(path: Path) -> bool:
    return (path / "model.bin").is_file()


def check_translation_dir(path: str | Path) -> Path:
    """A CTranslate2 dir or an HF sequence-to-sequence dir; anything else is a one-line UserError."""
    path = Path(path)
    if not path.is_dir():
        raise UserError("model directory does not exist", path=path)
    if is_ct2_dir(path):
        return path
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise UserError("not a translation model directory (no config.json or CTranslate2 model.bin)", path=path)
    cfg = read_json(cfg_path, "config.json")
    if not cfg.get("is_encoder_decoder"):
        what = (cfg.get("architectures") or [cfg.get("model_type", "unknown model")])[0]
        raise UserError(f"not a translation model: this is a {what}; expected an NLLB/M2M100 "
                        "sequence-to-sequence model directory", path=path)
    return path


def load_translation_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    path = Path(path)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise UserError("no tokenizer files here; pass --tokenizer with the HF model directory", path=path)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # transformers raises many types for a broken directory
        raise UserError(f"cannot load tokenizer ({type(e).__name__}: {e})", path=path) from None


def language_codes(tokenizer) -> list[str]:
    """The language codes a translation tokenizer knows (NLLB `eng_Latn`, or M2M100 `en` for `__en__`)."""
    codes = []
    for token in tokenizer.get_vocab():
        if NLLB_CODE.match(token):
            codes.append(token)
        elif token.startswith("__") and token.endswith("__") and 2 <= len(token) - 4 <= 3:
            codes.append(token[2:-2])
    return sorted(set(codes))


def language_token(tokenizer, code: str) -> str:
    """The vocabulary token that names language `code`, or a UserError listing the valid form."""
    vocab = tokenizer.get_vocab()
    for token in (code, f"__{code}__"):
        if token in vocab and (token != code or NLLB_CODE.match(code)):
            return token
    known = language_codes(tokenizer)
    close = difflib.get_close_matches(code, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    sample = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    form = M2M_HINT if known and not any(NLLB_CODE.match(k) for k in known) else CODE_HINT
    raise UserError(f"unknown language code {code!r}: {form}; this model knows {len(known)} codes "
                    f"({sample}){hint}")


def iso_code(code: str) -> str:
    """The `lang` label of translated records: ISO 639-1 where babelscope knows it, else the code itself."""
    return ISO.get(code, code)


# ---- backends --------------------------------------------------------------------------------------------------

def _default_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersBackend:
    """HF `generate` with beam search and the target language forced as the first token."""

    name = "transformers"

    def __init__(self, model_dir: str | Path, src: str, tgt: str, *, beam_size: int = 4, max_length: int = 256,
                 max_input_tokens: int = 256, device: str = "auto", tokenizer: str | Path | None = None):
        import torch
        from transformers import AutoModelForSeq2SeqLM

        path = check_translation_dir(model_dir)
        if is_ct2_dir(path):
            raise UserError("this is a CTranslate2 model; use --backend ctranslate2 or pass the HF model directory",
                            path=path)
        self.tok = load_translation_tokenizer(tokenizer or path)
        language_token(self.tok, src)
        self.tgt_id = self.tok.convert_tokens_to_ids(language_token(self.tok, tgt))
        self.tok.src_lang = src
        self.device = _default_device(device)
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        try:
            self.model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=True, dtype=dtype)
        except Exception as e:  # transformers raises many types for a broken directory
            raise UserError(f"cannot load translation model ({type(e).__name__}: {e})", path=path) from None
        self.model.to(self.device).eval()
        self.beam_size, self.max_length, self.max_input_tokens = beam_size, max_length, max_input_tokens

    def translate(self, sentences: list[str]) -> list[str]:
        import torch

        enc = self.tok(sentences, return_tensors="pt", padding=True, truncation=True,
                       max_length=self.max_input_tokens).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**enc, forced_bos_token_id=self.tgt_id, num_beams=self.beam_size,
                                      max_new_tokens=self.max_length, do_sample=False)
        return self.tok.batch_decode(out, skip_special_tokens=True)


def ct2_cache_root() -> Path:
    return Path(os.environ.get("BABELSCOPE_CACHE", Path.home() / ".cache" / "babelscope")) / "ct2"


def convert_to_ct2(hf_dir: str | Path, *, quantization: str = "int8", cache_dir: str | Path | None = None) -> Path:
    """Convert an HF translation model to CTranslate2 once; later calls return the cached directory.

    The cache key hashes the model's absolute path, its config and weight files (size and mtime) and the
    quantization, so a retrained model is converted again. The conversion is written beside the cache entry and
    renamed into place, so a killed conversion never leaves a half-written model.
    """
    from ctranslate2.converters import TransformersConverter

    hf_dir = check_translation_dir(hf_dir).resolve()
    h = hashlib.sha256(f"{hf_dir}|{quantization}".encode())
    for f in sorted(hf_dir.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    out = Path(cache_dir or ct2_cache_root()) / f"{hf_dir.name}-{quantization}-{h.hexdigest()[:16]}"
    if is_ct2_dir(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    copy = [f for f in TOKENIZER_FILES if (hf_dir / f).is_file()]
    try:
        TransformersConverter(str(hf_dir), copy_files=copy).convert(str(tmp), quantization=quantization, force=True)
    except Exception as e:  # the converter raises ValueError, KeyError, ... for unsupported models
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot convert to CTranslate2 ({type(e).__name__}: {e})", path=hf_dir) from None
    try:
        os.replace(tmp, out)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class CTranslate2Backend:
    """CTranslate2 `Translator` (int8 on CPU by default) fed with the HF tokenizer's subword tokens."""

    name = "ctranslate2"

    def __init__(self, model_dir: str | Path, src: str, tgt: str, *, beam_size: int = 4, max_length: int = 256,
                 max_input_tokens: int = 256, device: str = "auto", compute_type: str = "int8",
                 threads: int = 0, tokenizer: str | Path | None = None, cache_dir: str | Path | None = None):
        import ctranslate2

        path = check_translation_dir(model_dir)
        self.tok = load_translation_tokenizer(tokenizer or path)
        language_token(self.tok, src)
        self.tgt_token = language_token(self.tok, tgt)
        self.tok.src_lang = src
        if not is_ct2_dir(path):
            path = convert_to_ct2(path, quantization=compute_type, cache_dir=cache_dir)
        self.path = path
        self.device = _default_device(device)
        try:
            self.translator = ctranslate2.Translator(str(path), device=self.device, compute_type=compute_type,
                                                     inter_threads=1, intra_threads=threads)
        except Exception as e:  # RuntimeError / ValueError from the C++ side
            raise UserError(f"cannot load CTranslate2 translation model ({e})", path=path) from None
        self.beam_size, self.max_length, self.max_input_tokens = beam_size, max_length, max_input_tokens

    def translate(self, sentences: list[str]) -> list[str]:
        ids = self.tok(sentences, truncation=True, max_length=self.max_input_tokens)["input_ids"]
        source = [self.tok.convert_ids_to_tokens(x) for x in ids]
        results = self.translator.translate_batch(
            source, target_prefix=[[self.tgt_token]] * len(source), beam_size=self.beam_size,
            max_decoding_length=self.max_length, max_batch_size=len(source))
        hyps = [r.hypotheses[0][1:] if r.hypotheses[0][:1] == [self.tgt_token] else r.hypotheses[0] for r in results]
        return [self.tok.decode(self.tok.convert_tokens_to_ids(h), skip_special_tokens=True) for h in hyps]


def load_backend(backend: str, model_dir: str | Path, src: str, tgt: str, **options) -> Backend:
    """Build a backend by name; options not meant for it (e.g. compute_type for transformers) are ignored."""
    if backend == "ctranslate2":
        return CTranslate2Backend(model_dir, src, tgt, **options)
    if backend == "transformers":
        keep = ("beam_size", "max_length", "max_input_tokens", "device", "tokenizer")
        return TransformersBackend(model_dir, src, tgt, **{k: v for k, v in options.items() if k in keep})
    raise UserError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def translate_sentences(backend: Backend, sentences: Sequence[str], batch_size: int = 32) -> list[str]:
    """Translate in batches of similar length (less padding), returning results in input order."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out: list[str] = [""] * len(sentences)
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        for i, t in zip(idx, backend.translate([sentences[i] for i in idx]), strict=True):
            out[i] = t
    return out


# ---- corpus translation ----------------------------------------------------------------------------------------

def parse_shard(text: str) -> tuple[int, int]:
    """`i/N` (0 <= i < N) -> (i, N)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or not 0 <= int(m[1]) < int(m[2]):
        raise UserError(f"bad shard {text!r}; expected i/N with 0 <= i < N, e.g. 0/4")
    return int(m[1]), int(m[2])


def in_shard(index: int, shard: tuple[int, int]) -> bool:
    """The stable partition: record `index` of the input belongs to shard `index mod N`."""
    return index % shard[1] == shard[0]


@dataclass(kw_only=True)
class TranslateJob(Settings):
    """`babelscope translate`: everything a translation run needs (recorded in the output's manifest)."""

    inputs: list[str] = opt(help="input corpus files (JSONL, .txt, Parquet)", positional=True, metavar="IN")
    out: str = opt(help="output JSONL (resumed if it exists)", positional=True, metavar="OUT")
    model: str = opt(help="HF model dir (NLLB/M2M100; converted once into a cache for ctranslate2) or a "
                          "CTranslate2 dir")
    backend: str = opt("ctranslate2", "translation engine", choices=BACKENDS)
    tokenizer: str | None = opt(None, "tokenizer dir, when --model is a CTranslate2 dir without one")
    src: str = opt("eng_Latn", "source language code (NLLB: eng_Latn)")
    tgt: str = opt("arb_Arab", "target language code (NLLB: arb_Arab)")
    text_field: str = opt("text", "the record field holding the text")
    shard: tuple[int, int] = opt((0, 1), "translate only records i, i+N, i+2N, ... (0-based i/N)", parse=parse_shard,
                                 metavar="i/N")
    beam_size: int = opt(4, "beam width", gt=0)
    max_length: int = opt(256, "most tokens per translated sentence", gt=0)
    max_input_tokens: int = opt(256, "longer source sentences are truncated", gt=0)
    max_chars: int = opt(600, "a unit (a long quote) longer than this is cut again at sentence ends", gt=0)
    batch_size: int = opt(32, "sentences per batch (sorted by length)", gt=0)
    chunk_records: int = opt(64, "records read, translated and written together", flag="--chunk", gt=0)
    device: str = opt("auto", "cpu, cuda or auto")
    compute_type: str = opt("int8", "ctranslate2: int8 (CPU default), int8_float16, float16, float32, ...")
    threads: int = opt(0, "ctranslate2 threads (0: all cores)", ge=0)
    ct2_cache: str | None = opt(None, "where converted models are kept (default $BABELSCOPE_CACHE/ct2)")
    ref: str | None = opt(None, "reference translations: BLEU and chrF++ shown as chunks are written, and the "
                                "final scores written to OUT.scores.json", metavar="FILE")
    ref_key: str | None = opt(None, "field pairing an output record with its reference (default: source_index, "
                                    "the input order)", metavar="FIELD")

    def backend_options(self) -> dict:
        """The options `load_backend` takes."""
        return {"beam_size": self.beam_size, "max_length": self.max_length,
                "max_input_tokens": self.max_input_tokens, "device": self.device,
                "compute_type": self.compute_type, "threads": self.threads, "tokenizer": self.tokenizer,
                "cache_dir": self.ct2_cache}


def translated_record(record: dict, index: int, translation: str, src: str, tgt: str) -> dict:
    """Every input field, `text` replaced by the translation; source text, language and index kept (character
    `spans` point into the source, so they move to `source_spans`)."""
    out = dict(record)
    if "spans" in out:
        out["source_spans"] = out.pop("spans")
    out["source_text"] = record["text"]
    out["source_lang"] = record.get("lang", iso_code(src))
    out["text"] = translation
    out["lang"] = iso_code(tgt)
    out["source_index"] = index
    return out


def _manifest_path(out: Path) -> Path:
    return out.with_name(out.name + ".manifest.json")


def _resume_record(job: TranslateJob) -> dict:
    """The settings and inputs (by content) a resumed translation must share with the run it continues."""
    args = _job_args(job)
    return record({k: args[k] for k in RESUME_KEYS if k != "inputs"}, {"inputs": list(job.inputs)})


def _check_resume(job: TranslateJob, out: Path) -> None:
    from babelscope.inputs import read_json

    mpath = _manifest_path(out)
    saved = read_json(mpath, "manifest").get("resume") if mpath.exists() else None
    if saved is not None:
        check(saved, _resume_record(job), where=out, what="this output",
              hint="resume with the same settings or write to a new output file")


def _job_args(job: TranslateJob) -> dict:
    args = asdict(job)
    args["inputs"] = [str(Path(p).resolve()) for p in job.inputs]
    args["shard"] = f"{job.shard[0]}/{job.shard[1]}"
    return args


def check_inputs(paths: Sequence[str], text_field: str = "text") -> int:
    """Read every record now (a bad file, encoding, record or an empty corpus fails before the model loads, not
    hours into the run; reading is cheap beside translating); returns the number of records."""
    return sum(1 for _ in iter_corpus(paths, text_field))


def _count_records(paths: Sequence[str], text_field: str) -> int:
    if all(str(p).endswith(".jsonl") for p in paths):
        n = 0
        for p in paths:
            with open(p, "rb") as f:
                n += sum(1 for line in f if line.strip())
        return n
    return sum(1 for _ in iter_corpus(paths, text_field))


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    buf: list = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


@dataclass
class TranslateStats:
    written: int = 0
    skipped: int = 0
    sentences: int = 0
    seconds: float = 0.0

    @property
    def sentences_per_s(self) -> float:
        return self.sentences / self.seconds if self.seconds else 0.0


def translate_corpus(backend: Backend, job: TranslateJob,
                     on_chunk: Callable[[list[dict]], dict[str, float]] | None = None) -> TranslateStats:
    """Translate this shard of `job.inputs` into `job.out`, resuming what an earlier run wrote.

    The output file (and its manifest) is created only when the first record is ready, so a run that fails
    before any work leaves nothing behind. `on_chunk(records)` sees each chunk of records written and returns
    numbers for the progress bar (`translate --ref` scores as it goes).
    """
    out = Path(job.out)
    _check_resume(job, out)
    journal = Journal(out, key=lambda r: r["source_index"]) if out.exists() else None
    done = set(journal.done) if journal else set()
    total = sum(1 for i in range(_count_records(job.inputs, job.text_field)) if in_shard(i, job.shard))
    todo = total - sum(1 for i in done if isinstance(i, int))
    stats = TranslateStats(skipped=total - todo)
    records = ((i, r) for i, r in enumerate(iter_corpus(job.inputs, job.text_field))
               if in_shard(i, job.shard) and i not in done)
    bar = progress(total=max(todo, 1) * 8, desc=f"translate {job.src}->{job.tgt}", unit="sent")
    t0, n_records = time.perf_counter(), 0
    try:
        for chunk in _chunks(records, job.chunk_records):
            units = [split_units(r["text"], max_chars=job.max_chars) for _, r in chunk]
            flat = [u for us in units for u, _ in us]
            translations = translate_sentences(backend, flat, job.batch_size)
            if journal is None:
                write_json_atomic(_manifest_path(out), {**manifest("translate", _job_args(job)),
                                                        "resume": _resume_record(job)})
                journal = Journal(out, key=lambda r: r["source_index"])
            pos, written = 0, []
            for (index, record), us in zip(chunk, units, strict=True):
                text = join_units(us, translations[pos:pos + len(us)])
                pos += len(us)
                written.append(translated_record(record, index, text, job.src, job.tgt))
                journal.append(written[-1])
            if on_chunk is not None:
                bar.set_postfix({k: f"{v:.1f}" for k, v in on_chunk(written).items()})
            n_records += len(chunk)
            stats.written += len(chunk)
            stats.sentences += len(flat)
            # Re-estimate the bar's total in sentences from the sentences per record seen so far.
            bar.total = int(stats.sentences / n_records * todo) or 1
            bar.update(len(flat))
    finally:
        bar.close()
        if journal is not None:
            journal.close()
        stats.seconds = time.perf_counter() - t0
    return stats

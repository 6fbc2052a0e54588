"""Byte-level BPE tokenizers (HF `tokenizers`), saved as a directory `AutoTokenizer` loads.

Byte-level BPE with no normaliser round-trips any UTF-8 text exactly, Arabic included; decoding never
"cleans up" spaces before punctuation, which would break that.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from babelscope.errors import UserError
from babelscope.settings import Settings, opt

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
SPECIAL_TOKENS = [PAD, BOS, EOS]  # ids 0, 1, 2
VOCAB_SIZES = (8000, 16000, 32000, 85000)


@dataclass(kw_only=True)
class TokenizerConfig(Settings):
    """`babelscope tokenizer train`: a byte-level BPE on a corpus, saved as an HF tokenizer directory."""

    data: list[str] = opt(help="corpus files (JSONL, .txt, Parquet)")
    out: str = opt(help="output directory")
    vocab_size: int = opt(32000, "vocabulary size: 8000, 16000, 32000 (the study's best) or 85000; at least the "
                                 "256 bytes plus the special tokens", ge=256 + len(SPECIAL_TOKENS))
    min_frequency: int = opt(2, "least count of a pair to merge", ge=1)
    text_field: str = opt("text", "the record field holding the text")
    context: int = opt(512, "model_max_length saved with the tokenizer (a model trained with it overwrites it "
                            "with its own context)", gt=0)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path, *, min_frequency: int = 2,
                    model_max_length: int = 512, length: int | None = None):
    """Train a byte-level BPE on `texts` and save it to `out_dir`; returns the `PreTrainedTokenizerFast`.

    The vocabulary can come out smaller than `vocab_size` when the corpus has fewer merges to learn.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=True,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    bos_id = tok.token_to_id(BOS)
    # `tokenizer(text)` prepends BOS, as Llama tokenizers do; `add_special_tokens=False` leaves it out.
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, bos_id)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        clean_up_tokenization_spaces=False, model_max_length=model_max_length,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def load_tokenizer(path: str | Path):
    """Load a tokenizer directory (ours or any HF one) from local files only."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise UserError("tokenizer directory does not exist", path=path)
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        raise UserError("not a tokenizer directory (no tokenizer.json or tokenizer_config.json)", path=path)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # transformers raises many types for a broken directory
        raise UserError(f"cannot load tokenizer ({type(e).__name__}: {e})", path=path) from None


def iter_texts(records: Iterable[dict]) -> Iterator[str]:
    for record in records:
        yield record["text"]


def encode_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of whole documents, no special tokens; uses the Rust tokenizer when there is one (faster, and
    no "longer than the maximum length" warning for text that is windowed afterwards)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]

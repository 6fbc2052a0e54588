"""Shared fixtures: every test builds its own tiny corpus, tokenizer and models; nothing is downloaded."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BABELSCOPE_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

_EN = ["the cat sat on the mat", "a little girl named Lily saw a big tree", "Tim said hello to his mom",
       "the dog ran to the park", "the sun was warm and bright"]
_AR = ["جلست القطة على الحصيرة", "رأت فتاة صغيرة تدعى ليلي شجرة كبيرة", "قال تيم مرحبا لأمه",
       "ركض الكلب إلى الحديقة", "كانت الشمس دافئة ومشرقة"]


@pytest.fixture(scope="session")
def bilingual_records() -> list[dict]:
    """Parallel English/Arabic documents with `lang` labels (a stand-in until storyworld is wired in)."""
    rng = random.Random(0)
    out = []
    for i in range(200):
        picks = rng.sample(range(len(_EN)), 3)
        out.append({"id": f"s{i}", "lang": "en", "text": ". ".join(_EN[j] for j in picks) + "."})
        out.append({"id": f"s{i}", "lang": "ar", "text": ". ".join(_AR[j] for j in picks) + "."})
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, bilingual_records):
    from babelscope.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer((r["text"] for r in bilingual_records), vocab_size=400, out_dir=out, min_frequency=1)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_dir):
    """A randomly initialised `tiny` Llama saved as an HF model dir with its tokenizer beside it."""
    from transformers import LlamaForCausalLM

    from babelscope.models import llama_config
    from babelscope.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config("tiny", len(tok), bos_token_id=tok.bos_token_id,
                                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def story_records() -> list[dict]:
    """300 storyworld stories, English and translated-style Arabic, as separate documents with `lang`."""
    from babelscope.corpus.storyworld import generate_stories

    return list(generate_stories(300, langs=("en", "ar"), style="translated", seed=7))


@pytest.fixture(scope="session")
def story_model_dir(tmp_path_factory, story_records):
    """A `tiny` Llama trained for a few hundred steps on storyworld (its tokenizer saved beside it)."""
    import json

    from babelscope.tokenizer import train_tokenizer
    from babelscope.train.loop import TrainConfig, train

    root = tmp_path_factory.mktemp("story_model")
    data = root / "stories.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in story_records), encoding="utf-8")
    train_tokenizer((r["text"] for r in story_records), vocab_size=1000, out_dir=root / "tok")
    final = train(TrainConfig(out=str(root / "run"), data=[str(data)], preset="tiny", tokenizer=str(root / "tok"),
                              context=128, batch_size=8, lr=3e-3, max_steps=250, eval_every=250, eval_batches=4,
                              warmup=0.05, cache_dir=str(root / "cache")))
    return final


@pytest.fixture
def one_thread():
    """Tiny SAE problems run on one thread: thread hand-off costs more than it gains on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""The story-model family of the first study's Table 1 (TinyStories shapes) as HF Llama configs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from babelscope.errors import UserError


@dataclass(frozen=True)
class Preset:
    name: str
    layers: int
    hidden: int
    heads: int = 16
    intermediate: int | None = None  # default 4 x hidden (the study's SAE fork: 2L-33M has MLP width 4096)
    context: int = 512
    kv_heads: int | None = None  # grouped-query attention when smaller than heads

    @property
    def mlp(self) -> int:
        return self.intermediate or 4 * self.hidden


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("tiny", layers=2, hidden=32, heads=4, intermediate=64, context=128),  # tests
    Preset("mini", layers=4, hidden=64, heads=4, context=256),  # the demo's bilingual study: 4 layers to compare
    Preset("1M", layers=8, hidden=64),
    Preset("3M", layers=8, hidden=128),
    Preset("8M", layers=8, hidden=256),
    Preset("28M", layers=8, hidden=512),
    Preset("33M", layers=4, hidden=768),
    Preset("2L-33M", layers=2, hidden=1024),
    Preset("1L-21M", layers=1, hidden=1024),
]}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def pad_vocab(n: int, multiple: int = 64) -> int:
    """Round the embedding rows up so matrix shapes stay friendly; the extra rows are never produced."""
    return -(-n // multiple) * multiple


def llama_config(preset: Preset | str, vocab_size: int, *, bos_token_id: int = 1, eos_token_id: int = 2,
                 pad_token_id: int = 0, kv_heads: int | None = None, context: int | None = None):
    """An HF `LlamaConfig` (RMSNorm, SwiGLU MLP, RoPE, optional GQA) for a preset and a tokenizer size."""
    from transformers import LlamaConfig

    p = get_preset(preset) if isinstance(preset, str) else preset
    kv = kv_heads or p.kv_heads or p.heads
    if p.heads % kv:
        raise UserError(f"--kv-heads {kv} must divide the preset's {p.heads} heads")
    return LlamaConfig(
        vocab_size=pad_vocab(vocab_size), hidden_size=p.hidden, intermediate_size=p.mlp,
        num_hidden_layers=p.layers, num_attention_heads=p.heads, num_key_value_heads=kv,
        max_position_embeddings=context or p.context, hidden_act="silu", rms_norm_eps=1e-5,
        tie_word_embeddings=False, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
        pad_token_id=pad_token_id, attention_dropout=0.0, initializer_range=0.02,
    )


def param_counts(preset: Preset | str, vocab_size: int) -> tuple[int, int]:
    """(total, without embeddings) parameters of a preset, computed from its shape (no model is built).

    Embeddings are the input embedding and the untied output projection.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    v, d, m = pad_vocab(vocab_size), p.hidden, p.mlp
    head_dim = d // p.heads
    kv = (p.kv_heads or p.heads) * head_dim
    attn = d * d * 2 + d * kv * 2  # q, o and k, v projections, no biases
    block = attn + 3 * d * m + 2 * d  # SwiGLU gate/up/down + two RMSNorm gains
    body = p.layers * block + d  # final norm
    return body + 2 * v * d, body


def preset_table(vocab_size: int) -> list[dict]:
    rows = []
    for p in PRESETS.values():
        total, body = param_counts(p, vocab_size)
        rows.append({**asdict(p), "mlp": p.mlp, "params": total, "params_no_embed": body})
    return rows

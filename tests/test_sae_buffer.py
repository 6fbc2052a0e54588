"""Activation source and shuffling buffer: position selection, mixing across documents, resume, disk cache."""

import pytest
import torch

from babelscope.errors import UserError
from babelscope.sae.buffer import (
    CacheSource,
    ModelSource,
    Positions,
    ShuffleBuffer,
    TensorSource,
    build_cache,
    parse_positions,
    scale_for,
    select_positions,
)


def test_parse_and_select_positions():
    assert parse_positions("all") == Positions("all")
    assert parse_positions("first:64") == Positions("first", 64)
    for bad in ("first", "random:0", "last:3", "all:2"):
        with pytest.raises(UserError, match="bad positions"):
            parse_positions(bad)
    valid = torch.tensor([[False, True, True, True, True, False],
                          [False, True, True, False, False, False]])  # BOS dropped, then padding
    assert select_positions(valid, Positions("all")).equal(valid)
    first = select_positions(valid, Positions("first", 2))
    assert first.tolist() == [[False, True, True, False, False, False], [False, True, True, False, False, False]]
    rnd = select_positions(valid, Positions("random", 3), torch.Generator().manual_seed(0))
    assert rnd.sum(1).tolist() == [3, 2] and not (rnd & ~valid).any()


def _per_document_source(n_docs: int = 400, per_doc: int = 16, d: int = 4) -> TensorSource:
    """Activations in stream order: document i contributes `per_doc` rows whose value is i."""
    docs = torch.arange(n_docs, dtype=torch.float32).repeat_interleave(per_doc)
    return TensorSource(docs[:, None].expand(-1, d).contiguous(), chunk=per_doc * 8)


def test_buffer_mixes_documents_and_serves_every_row_once():
    src = _per_document_source()
    buf = ShuffleBuffer(src, 4, size=2048, batch_size=64, seed=0)
    batches = list(buf)
    rows = torch.cat(batches)[:, 0]
    assert len(rows) == 400 * 16  # nothing dropped or duplicated
    assert torch.equal(rows.sort().values, torch.arange(400.0).repeat_interleave(16))
    # a batch of 64 rows taken in stream order would span 4 documents; shuffled, it spans dozens
    distinct = [len(b[:, 0].unique()) for b in batches[:-1]]
    assert min(distinct) >= 30


def test_buffer_resumes_exactly():
    def run(stop_after: int | None) -> torch.Tensor:
        buf = ShuffleBuffer(_per_document_source(), 4, size=1024, batch_size=32, seed=3)
        out = []
        for i, b in enumerate(buf):
            out.append(b)
            if stop_after is not None and i + 1 == stop_after:
                state = buf.state_dict()
                buf2 = ShuffleBuffer(_per_document_source(), 4, size=1024, batch_size=32, seed=99)
                buf2.load_state_dict(state)
                out.extend(buf2)
                break
        return torch.cat(out)

    torch.testing.assert_close(run(None), run(37))


def test_model_source_and_cache(tmp_path, tiny_model_dir, bilingual_records):
    from babelscope.models import load_model

    model, tok = load_model(tiny_model_dir)
    src = ModelSource(model, tok, lambda: bilingual_records[:40], "layers.1.mlp.act",
                      positions=Positions("first", 3), batch_size=8)
    assert src.d_in == 64
    acts = torch.cat(list(src))
    assert acts.shape == (40 * 3, 64)  # three tokens after BOS from every document
    meta = build_cache(ModelSource(model, tok, lambda: bilingual_records[:40], "layers.1.mlp.act",
                                   positions=Positions("first", 3), batch_size=8),
                       tmp_path / "c", 100, describe={"hook": "layers.1.mlp.act"}, shard_rows=32)
    assert meta["rows"] == 100 and len(meta["shards"]) == 4
    torch.testing.assert_close(torch.cat(list(CacheSource(tmp_path / "c"))), acts[:100])
    torch.testing.assert_close(torch.cat(list(CacheSource(tmp_path / "c", 10, 50, chunk=7))), acts[10:50])
    # reused as long as it matches and is big enough
    assert build_cache(iter(()), tmp_path / "c", 90, describe={"hook": "layers.1.mlp.act"})["rows"] == 100
    with pytest.raises(UserError, match="cache was started with other settings or inputs: hook was"):
        build_cache(iter(()), tmp_path / "c", 90, describe={"hook": "layers.0.mlp.act"})
    with pytest.raises(UserError, match="corpus too small: it gave 120 activations, 500"):
        build_cache(ModelSource(model, tok, lambda: bilingual_records[:40], "layers.1.mlp.act",
                                positions=Positions("first", 3)), tmp_path / "d", 500, describe={})
    with pytest.raises(UserError, match=r"no hook point 'layers\.9\.mlp\.act'"):
        ModelSource(model, tok, lambda: bilingual_records, "layers.9.mlp.act")


def test_scale_gives_mean_norm_sqrt_d():
    x = torch.randn(1000, 16) * 7
    c = scale_for(x)
    assert (x * c).norm(dim=-1).mean().item() == pytest.approx(4.0, rel=1e-5)


def test_model_source_resumes_where_it_stopped(tiny_model_dir, bilingual_records):
    from babelscope.models import load_model

    model, tok = load_model(tiny_model_dir)

    def source() -> ModelSource:
        return ModelSource(model, tok, lambda: bilingual_records[:48], "layers.0.resid_post",
                           positions=Positions("random", 2), batch_size=8, seed=5)

    full = torch.cat(list(source()))
    first = source()
    it = iter(first)
    head = [next(it), next(it)]
    again = source()
    again.load_state_dict(first.state_dict())
    torch.testing.assert_close(torch.cat([*head, *again]), full)

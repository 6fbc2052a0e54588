"""SAE directories: SAELens layout, exact round trips, clear errors for bad directories."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from babelscope.errors import UserError
from babelscope.sae import SAE, SAEConfig, load_sae, read_training, save_sae


def _random_sae(arch: str = "topk", normalize: str = "l2", d_in: int = 12, d_sae: int = 48) -> SAE:
    torch.manual_seed(0)
    sae = SAE(SAEConfig(arch=arch, d_in=d_in, d_sae=d_sae, k=5, hook_name="layers.1.mlp.act", model="m",
                        normalize=normalize, scale=0.7, extra={"positions": "first:64"}))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.3)
        sae.normalize_decoder()
    return sae


@pytest.mark.parametrize(("arch", "normalize"), [("topk", "l2"), ("relu", "none"), ("topk", "scale")])
def test_save_load_round_trip(tmp_path, arch, normalize):
    sae = _random_sae(arch, normalize)
    save_sae(sae, tmp_path, {"metrics": {"fve": 0.9}})
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == ("topk" if arch == "topk" else "standard")
    assert cfg["d_in"] == 12 and cfg["d_sae"] == 48 and cfg["metadata"]["hook_name"] == "blocks.1.mlp.hook_post"
    assert (cfg.get("k") == 5) == (arch == "topk")
    assert cfg.get("rescale_acts_by_decoder_norm", False) == (arch == "topk")
    tensors = load_file(tmp_path / "sae_weights.safetensors")
    assert {n: tuple(t.shape) for n, t in tensors.items()} == {
        "W_enc": (12, 48), "b_enc": (48,), "W_dec": (48, 12), "b_dec": (12,)}
    # unit decoder rows on disk, as tools that fold decoder norms expect
    torch.testing.assert_close(tensors["W_dec"].norm(dim=1), torch.ones(48))
    back = load_sae(tmp_path)
    assert back.cfg == sae.cfg
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(back, name), getattr(sae, name))
    x = torch.randn(4, 12) * 5
    torch.testing.assert_close(back(x), sae(x))
    assert read_training(tmp_path) == {"metrics": {"fve": 0.9}}


def test_metadata_speaks_saelens(tmp_path):
    """A name for the model (the path stays ours), the positions training used, the data, BOS."""
    sae = _random_sae()
    sae.cfg.model = str(tmp_path / "runs" / "base" / "final")
    sae.cfg.context_size = 128
    sae.cfg.extra["dataset_path"] = "/data/stories.jsonl"
    save_sae(sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    meta = cfg["metadata"]
    assert meta["model_name"] == "base" and cfg["babelscope"]["model"] == sae.cfg.model
    assert meta["context_size"] == 65  # first:64 after BOS, of a 128-token context
    assert meta["dataset_path"] == "/data/stories.jsonl" and meta["prepend_bos"] is True
    assert meta["hook_layer"] == 1 and cfg["babelscope_activation_scale"] == pytest.approx(12 ** 0.5)
    assert load_sae(tmp_path / "sae").cfg.hook_name == "layers.1.mlp.act"  # printed in our spelling


def test_directories_of_the_first_layout_still_load(tmp_path):
    """Before unit rows on disk, W_enc / sqrt(d) and W_dec * sqrt(d) carried the l2 input scale."""
    sae = _random_sae("topk", "l2")
    save_sae(sae, tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    del cfg["babelscope_layout"]
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    a = 12 ** 0.5
    save_file({"W_enc": sae.W_enc.detach() / a, "b_enc": sae.b_enc.detach(), "W_dec": sae.W_dec.detach() * a,
               "b_dec": sae.b_dec.detach() * a}, tmp_path / "sae_weights.safetensors")
    back = load_sae(tmp_path)
    x = torch.randn(4, 12) * 3
    torch.testing.assert_close(back.encode(x), sae.encode(x))
    torch.testing.assert_close(back(x), sae(x))


def test_bad_directories_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_sae(tmp_path / "nope")
    with pytest.raises(UserError, match=r"no cfg\.json"):
        load_sae(tmp_path)
    (tmp_path / "cfg.json").write_text("{not json")
    with pytest.raises(UserError, match=r"cfg\.json: not valid JSON"):
        load_sae(tmp_path)
    save_sae(_random_sae(), tmp_path)
    tensors = load_file(tmp_path / "sae_weights.safetensors")
    tensors["W_dec"] = tensors["W_dec"][:10]
    save_file(tensors, tmp_path / "sae_weights.safetensors")
    with pytest.raises(UserError, match=r"sae_weights\.safetensors: tensor 'W_dec' has shape \(10, 12\)"):
        load_sae(tmp_path)
    (tmp_path / "sae_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="truncated or corrupt safetensors file"):
        load_sae(tmp_path)
    (tmp_path / "sae_weights.safetensors").unlink()
    with pytest.raises(UserError, match=r"no sae_weights\.safetensors"):
        load_sae(tmp_path)


def test_loads_a_plain_saelens_directory(tmp_path):
    """A cfg.json as SAELens writes it (no babelscope entry) loads as the same function."""
    sae = _random_sae("topk", "none")
    save_sae(sae, tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    del cfg["babelscope"]
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    back = load_sae(tmp_path)
    assert back.cfg.arch == "topk" and back.cfg.k == 5 and back.cfg.hook_name == "layers.1.mlp.act"
    x = torch.randn(3, 12)
    torch.testing.assert_close(back(x), sae(x))


@pytest.mark.optional
@pytest.mark.parametrize(("arch", "normalize"), [("topk", "l2"), ("relu", "none"), ("topk", "scale")])
def test_saelens_reads_our_directory(tmp_path, arch, normalize):
    """Same reconstruction; SAELens' activations are ours times the recorded scale; folding the decoder norms
    (what dashboards do) is accepted for TopK and changes nothing."""
    sae_lens = pytest.importorskip("sae_lens")
    sae = _random_sae(arch, normalize)
    save_sae(sae, tmp_path)
    scale = json.loads((tmp_path / "cfg.json").read_text())["babelscope_activation_scale"]
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path), device="cpu")
    x = torch.randn(6, 12) * 4
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), sae.encode(x) * scale, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(theirs(x), sae(x), rtol=1e-5, atol=1e-5)
        theirs.fold_W_dec_norm()
        torch.testing.assert_close(theirs(x), sae(x), rtol=1e-5, atol=1e-5)


@pytest.mark.optional
@pytest.mark.slow
def test_saelens_splices_our_sae_into_our_model(tmp_path, tiny_model_dir):
    """SAELens' TransformerBridge finds the hook by the name in cfg.json and gives babelscope's patched logits."""
    pytest.importorskip("sae_lens")
    pytest.importorskip("transformer_lens")
    from sae_lens import SAE as LensSAE
    from sae_lens.analysis.sae_transformer_bridge import SAETransformerBridge

    from babelscope.models import load_model
    from babelscope.models.hooks import hook_width, patch
    from helpers import random_sae

    model, tok = load_model(tiny_model_dir)
    model.set_attn_implementation("eager")  # what the bridge runs; sdpa differs by kernel rounding only
    hook = "layers.1.mlp.act"
    width = hook_width(model, hook)
    sae = random_sae(width, 4 * width, k=8, hook=hook)
    save_sae(sae, tmp_path / "sae")
    ids = tok(["the cat sat on the mat and the dog ran to the park"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        clean = model(input_ids=ids).logits
        with patch(model, hook, sae.reconstruct):
            ours = model(input_ids=ids).logits

    bridge = SAETransformerBridge.boot_transformers(str(tiny_model_dir), device="cpu")
    bridge.add_sae(LensSAE.load_from_disk(str(tmp_path / "sae"), device="cpu"))
    assert list(bridge.acts_to_saes) == ["blocks.1.mlp.hook_post"]  # attached, not skipped
    with torch.no_grad():
        theirs = bridge(ids)
    assert (clean - ours).abs().max() > 1e-3  # the splice changes the logits
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4)

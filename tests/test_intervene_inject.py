"""Feature injection: alpha = 0 and an empty mask reproduce the mid model exactly; the selection is by type and
frequency; a real injection moves perplexity."""

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

import helpers
from babelscope.eval.perplexity import perplexity
from babelscope.intervene.inject import (
    feature_mask,
    injected_forward,
    injection_delta,
    select_features,
)
from babelscope.models import llama_config, load_model

HOOK = "layers.0.resid_post"


def random_sae(d_in: int, d_sae: int, k: int = 4, seed: int = 0):
    return helpers.random_sae(d_in, d_sae, k, seed, hook=HOOK)


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    full, tok = load_model(tiny_model_dir)
    torch.manual_seed(1)
    mid = LlamaForCausalLM(llama_config("tiny", len(tok), bos_token_id=tok.bos_token_id,
                                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).eval()
    return full, mid, tok


def test_select_features_by_type_and_frequency():
    classes = ["en", "mixed", "ar", "mixed", "mixed", "en"]
    freq = np.array([0.5, 0.1, 0.2, 0.3, 0.3, 0.6])
    feats = np.arange(6)
    assert select_features(classes, freq, feats, "mixed", 2).tolist() == [3, 4]  # tie: lower id first
    assert select_features(classes, freq, feats, "mixed", 10).tolist() == [3, 4, 1]  # capped at the class size
    assert select_features(classes, freq, feats, "en", 1).tolist() == [5]
    assert select_features(classes, freq, feats, "ja", 3).tolist() == []
    assert feature_mask([1, 3], 5).tolist() == [0, 1, 0, 1, 0]


def test_injection_delta_hand_worked():
    z = torch.tensor([[2.0, 3.0, 0.0]])
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    mask = feature_mask([1, 2], 3)
    # alpha * scale * (3 * [0, 1] + 0 * [5, 5])
    assert injection_delta(z, mask, w, 0.1, torch.tensor([[10.0]]))[0].tolist() == pytest.approx([0.0, 3.0])
    assert injection_delta(z, feature_mask([], 3), w, 0.1).abs().sum() == 0


def test_alpha_zero_and_empty_mask_reproduce_the_mid_model_exactly(models, bilingual_records):
    full, mid, tok = models
    sae = random_sae(32, 64)
    records = bilingual_records[:12]
    base = perplexity(mid, tok, records, max_tokens=32, batch_size=4)
    everything = feature_mask(range(64), 64)
    zero_alpha = perplexity(mid, tok, records, max_tokens=32, batch_size=4,
                            forward=injected_forward(full, mid, sae, HOOK, everything, 0.0,
                                                     bos_token_id=tok.bos_token_id))
    empty = perplexity(mid, tok, records, max_tokens=32, batch_size=4,
                       forward=injected_forward(full, mid, sae, HOOK, feature_mask([], 64), 0.1,
                                                bos_token_id=tok.bos_token_id))
    assert zero_alpha == base
    assert empty == base
    injected = perplexity(mid, tok, records, max_tokens=32, batch_size=4,
                          forward=injected_forward(full, mid, sae, HOOK, everything, 0.5,
                                                   bos_token_id=tok.bos_token_id))
    assert injected["all"]["ppl"] != base["all"]["ppl"]
    assert set(injected) == {"ar", "en", "all"}


def test_raw_space_rescales_by_the_full_activation_norm(models):
    full, mid, tok = models
    sae = random_sae(32, 64)
    ids = torch.tensor([[tok.bos_token_id, 5, 6, 7]])
    seen = {}
    from babelscope.models.hooks import capture, decoder_layers

    h_full = capture(full, [HOOK], ids)[HOOK]
    h_mid = capture(mid, [HOOK], ids)[HOOK]
    mask = feature_mask(range(64), 64)
    for space in ("raw", "normalised"):
        fwd = injected_forward(full, mid, sae, HOOK, mask, 0.1, space=space, bos_token_id=tok.bos_token_id)
        # What layer 1 receives is layer 0's output after the injection.
        handle = decoder_layers(mid)[1].register_forward_pre_hook(
            lambda m, args, kwargs, space=space: seen.__setitem__(space, (args or (kwargs["hidden_states"],))[0]),
            with_kwargs=True)
        try:
            fwd(ids, torch.ones_like(ids, dtype=torch.bool))
        finally:
            handle.remove()
    delta_raw, delta_norm = seen["raw"] - h_mid, seen["normalised"] - h_mid
    assert delta_raw[0, 0].abs().max() == 0  # BOS is left alone
    torch.testing.assert_close(delta_raw[0, 1:], delta_norm[0, 1:] * h_full[0, 1:].norm(dim=-1, keepdim=True))
    expected = 0.1 * sae.encode(h_full)[0, 1:] @ sae.W_dec
    torch.testing.assert_close(delta_norm[0, 1:], expected)

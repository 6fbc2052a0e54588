import numpy as np
import torch
from torch import nn

from babelscope.analysis.ablation import feature_remover, loss_deltas
from babelscope.analysis.logits import final_norm, folded_unembedding
from babelscope.models import llama_config
from babelscope.models.hooks import capture


class LinearSAE(nn.Module):
    """A ReLU SAE with no input normalisation: decode(f) = f W_dec + b_dec."""

    def __init__(self, d_in: int, d_sae: int):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.W_enc = nn.Parameter(torch.randn(d_in, d_sae, generator=g))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.randn(d_sae, d_in, generator=g))
        self.b_dec = nn.Parameter(torch.randn(d_in, generator=g) * 0.1)

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f):
        return f @ self.W_dec + self.b_dec


def test_loss_delta_equals_hand_computation():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config("tiny", 300)).eval()
    norm = final_norm(model)
    norm.forward = lambda x: x * norm.weight  # linear final norm: the ablated logits follow by hand
    hook = "layers.1.resid_post"
    sae = LinearSAE(32, 16)
    contexts = [[1, 5, 9, 200, 17, 3], [1, 44, 45]]
    feature = 4
    deltas = loss_deltas(model, hook, contexts, feature_remover(sae, feature))
    W_U, _ = folded_unembedding(model)
    for ctx, delta in zip(contexts, deltas, strict=True):
        ids = torch.tensor([ctx])
        x = capture(model, [hook], ids)[hook][0]  # [T, d]
        with torch.no_grad():
            clean = model(ids).logits[0]
            f = sae.encode(x)[:, feature]  # [T]
            ablated = clean - f[:, None] * (W_U @ sae.W_dec[feature])[None, :]
        lp_c = torch.log_softmax(clean, -1)
        lp_a = torch.log_softmax(ablated, -1)
        expected = [0.0] + [float(lp_a[t - 1, ctx[t]] - lp_c[t - 1, ctx[t]]) for t in range(1, len(ctx))]
        # loss_delta = loss_clean - loss_ablated = logp_ablated - logp_clean
        np.testing.assert_allclose(delta, expected, atol=1e-5)
        assert np.abs(delta).max() > 1e-4  # the feature does something here


def test_sign_convention_blue_means_the_feature_helps():
    from transformers import LlamaForCausalLM

    torch.manual_seed(1)
    model = LlamaForCausalLM(llama_config("tiny", 300)).eval()
    hook = "layers.1.resid_post"
    sae = LinearSAE(32, 4)
    W_U, _ = folded_unembedding(model)
    target = 77
    with torch.no_grad():
        sae.W_dec[0] = W_U[target] / W_U[target].norm() * 5  # feature 0 pushes token 77 up
        sae.W_dec[1] = -sae.W_dec[0]  # feature 1 pushes it down
        sae.W_enc.zero_()
        sae.b_enc.fill_(1.0)  # ... and is always on
    contexts = [[1, 8, target, 8, target]]
    delta = loss_deltas(model, hook, contexts, feature_remover(sae, 0))[0]
    assert delta[2] < 0 and delta[4] < 0  # lower loss on the promoted true next token: blue
    delta = loss_deltas(model, hook, contexts, feature_remover(sae, 1))[0]
    assert delta[2] > 0 and delta[4] > 0  # higher loss on the suppressed true next token: red


def test_remover_of_a_normalised_sae_works_in_the_raw_space():
    from babelscope.sae.base import SAE, SAEConfig

    sae = SAE(SAEConfig(arch="topk", d_in=8, d_sae=12, k=3, hook_name="layers.0.resid_post", normalize="l2"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in (sae.W_enc, sae.W_dec, sae.b_dec):
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(2, 5, 8, generator=g) * 7
    f = sae.encode(x)
    feature = int(f.reshape(-1, 12).sum(0).argmax())
    removed = feature_remover(sae, feature)(x)
    # by hand: the feature's decoder row times its activation, scaled back by the input's norm (s(x) = 1/||x||)
    expected = x - f[..., feature:feature + 1] * sae.W_dec[feature] * x.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(removed, expected)
    # ... which is what the SAE's own reconstruction loses when that feature is zeroed
    without = f.clone()
    without[..., feature] = 0
    lost = sae.reconstruct(x) - sae.to_raw(sae.decode(without), x)
    torch.testing.assert_close(x - removed, lost, atol=1e-5, rtol=1e-5)


def _random_sae(arch: str, d_in: int, d_sae: int, hook: str, normalize: str):
    from babelscope.sae.base import SAE, SAEConfig

    sae = SAE(SAEConfig(arch=arch, d_in=d_in, d_sae=d_sae, k=4 if arch == "topk" else None, hook_name=hook,
                        normalize=normalize))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in (sae.W_enc, sae.W_dec, sae.b_dec):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        sae.b_enc.fill_(0.05)
    return sae


def test_many_features_side_by_side_equal_one_at_a_time():
    """ablation_deltas (pairs batched, each pair's contribution computed outside the model) gives what the
    per-feature remover gives, for a ReLU SAE (one encoder column), a TopK SAE (codes per context) and a plain
    module with encode/decode only; contexts of different lengths share forwards."""
    from transformers import LlamaForCausalLM

    from babelscope.analysis.ablation import ablation_deltas

    torch.manual_seed(2)
    model = LlamaForCausalLM(llama_config("tiny", 300)).eval()
    contexts = {7: [1, 5, 9, 200, 17, 3, 8, 8], 9: [1, 44, 45], 12: [1, 60, 61, 62, 63]}
    cases = [("layers.0.mlp.act", _random_sae("relu", 64, 48, "layers.0.mlp.act", "scale")),
             ("layers.1.resid_post", _random_sae("topk", 32, 40, "layers.1.resid_post", "l2")),
             ("layers.1.resid_post", LinearSAE(32, 16))]
    for hook, sae in cases:
        with torch.no_grad():
            acts = capture(model, [hook], torch.tensor([contexts[7]]))[hook]
            fired = sae.encode(acts).reshape(-1, sae.W_dec.shape[0]).sum(0)
        feats = [int(i) for i in fired.argsort(descending=True)[:2]] + [int(fired.argmin())]  # two fire, one may not
        pairs = [(f, c) for f in feats for c in contexts]
        clean: dict = {}
        got = ablation_deltas(model, hook, sae, pairs, contexts, clean=clean, batch_size=4)
        assert sorted(clean) == sorted(contexts)
        moved = 0.0
        for f in feats:
            want = loss_deltas(model, hook, list(contexts.values()), feature_remover(sae, f), batch_size=2)
            for c, w in zip(contexts, want, strict=True):
                np.testing.assert_allclose(got[(f, c)], w, atol=2e-5)
                moved = max(moved, float(np.abs(w).max()))
        assert moved > 1e-4  # some feature does something
        # pairs cut short (a page needs tokens up to its last example's window): the same values, fewer of them
        short = ablation_deltas(model, hook, sae, pairs, contexts, until={pairs[0]: 4, pairs[4]: 2}, batch_size=3)
        assert len(short[pairs[0]]) == 4 and len(short[pairs[4]]) == 2 and len(short[pairs[1]]) == 3
        for pair in pairs:
            np.testing.assert_allclose(short[pair], got[pair][:len(short[pair])], atol=2e-5)

import pytest
import torch
from torch import nn

from babelscope.analysis.logits import final_norm, folded_unembedding, logit_weights, top_bottom
from babelscope.models.hooks import hook_width, patch
from helpers import three_families


def _linearise_final_norm(model: nn.Module) -> None:
    """Make the final norm linear (gain and, for LayerNorm, centring and bias) with a random gain, so the logit
    change from adding a direction at the last layer is exactly linear and the test can be exact."""
    norm = final_norm(model)
    with torch.no_grad():
        norm.weight.copy_(torch.rand_like(norm.weight) * 2 + 0.1)
    if isinstance(norm, nn.LayerNorm):
        norm.forward = lambda x: (x - x.mean(-1, keepdim=True)) * norm.weight + norm.bias
    else:
        norm.forward = lambda x: x * norm.weight



@pytest.mark.parametrize("model", three_families(), ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("kind", ["mlp.act", "mlp.out", "resid_post"])
def test_logit_weights_equal_measured_logit_change(model, kind):
    model.eval()
    _linearise_final_norm(model)
    last = model.config.num_hidden_layers - 1
    hook = f"layers.{last}.{kind}"
    W_dec = torch.randn(5, hook_width(model, hook))
    weights = logit_weights(model, hook, W_dec)
    ids = torch.randint(0, 300, (2, 6))
    with torch.no_grad():
        clean = model(ids).logits
        for f in range(5):
            with patch(model, hook, lambda a, f=f: a + 0.5 * W_dec[f]):
                moved = model(ids).logits
            measured = (moved - clean) / 0.5  # the same at every position
            expected = weights[f].expand_as(measured)
            torch.testing.assert_close(measured, expected, atol=2e-4, rtol=1e-3)


def test_gain_is_folded_and_reported():
    model = three_families()[0].eval()
    norm = final_norm(model)
    with torch.no_grad():
        norm.weight.fill_(3.0)
    W, note = folded_unembedding(model)
    torch.testing.assert_close(W, 3.0 * model.lm_head.weight.detach())
    assert "gain" in note and "folded" in note


def test_top_bottom():
    out = top_bottom(torch.tensor([0.5, -2.0, 3.0, 1.0, -1.0]), k=2)
    assert out["top_ids"] == [2, 3] and out["bottom_ids"] == [1, 4]
    assert out["top_values"] == [3.0, 1.0]

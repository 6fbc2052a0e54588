import pytest
import torch

from babelscope.errors import UserError
from babelscope.models.hooks import HookPoint, capture, hook_module, hook_names, hook_width, parse_hook, patch
from helpers import three_families


@pytest.mark.parametrize("model", three_families(3), ids=lambda m: type(m).__name__)
def test_resid_post_equals_hidden_states(model):
    model.eval()
    ids = torch.randint(0, 300, (2, 9))
    with torch.no_grad():
        hs = model(ids, output_hidden_states=True).hidden_states
    n = model.config.num_hidden_layers
    # HF's last hidden state has the final norm applied; resid_post is the raw layer output, so compare below it.
    names = [f"layers.{i}.resid_post" for i in range(n - 1)]
    acts = capture(model, names, ids)
    for i in range(n - 1):
        torch.testing.assert_close(acts[f"layers.{i}.resid_post"], hs[i + 1])


@pytest.mark.parametrize("model", three_families(3), ids=lambda m: type(m).__name__)
def test_mlp_act_is_down_projection_input_and_patch_changes_output(model):
    model.eval()
    ids = torch.randint(0, 300, (1, 7))
    act = capture(model, ["layers.0.mlp.act"], ids)["layers.0.mlp.act"]
    assert act.shape[-1] == hook_width(model, "layers.0.mlp.act")
    with torch.no_grad():
        clean = model(ids).logits
        with patch(model, "layers.0.mlp.act", torch.zeros_like):
            zeroed = model(ids).logits
            mlp_out = capture(model, ["layers.0.mlp.out"], ids)["layers.0.mlp.out"]
    assert not torch.allclose(clean, zeroed)
    # With the hidden activation zeroed, the MLP output is just the down projection's bias (zero if none).
    down = hook_module(model, parse_hook(model, "layers.0.mlp.act"))
    expected = down.bias if down.bias is not None else torch.zeros(mlp_out.shape[-1])
    torch.testing.assert_close(mlp_out, expected.expand_as(mlp_out))


def test_capture_stops_after_the_deepest_hook():
    model = three_families(3)[0].eval()
    calls = []
    handle = model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    capture(model, ["layers.0.attn.out"], torch.randint(0, 300, (1, 5)))
    handle.remove()
    assert calls == []


def test_bad_hook_name_lists_valid_ones():
    model = three_families(3)[0]
    assert "layers.1.mlp.act" in hook_names(model)
    with pytest.raises(UserError, match=r"valid: layers\.\{0\.\.1\}"):
        capture(model, ["layers.7.mlp.act"], torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(UserError, match=r"no hook point 'blocks\.0\.hook_resid'"):
        capture(model, ["blocks.0.hook_resid"], torch.zeros(1, 3, dtype=torch.long))


def test_transformerlens_spelling_names_the_same_activation():
    model = three_families(3)[0].eval()
    ids = torch.randint(0, 300, (2, 5))
    for ours in ("layers.1.resid_post", "layers.0.mlp.act", "layers.1.mlp.out", "layers.0.attn.out"):
        point = HookPoint.parse(ours)
        tl = point.format("tl")
        assert HookPoint.parse(tl) == point and point.format() == ours
        acts = capture(model, [ours, tl], ids, stop_early=False)
        assert torch.equal(acts[ours], acts[tl])
    assert HookPoint.parse("blocks.3.mlp.hook_post").format("tl") == "blocks.3.mlp.hook_post"
    with pytest.raises(UserError, match=r"expected layers\.L"):
        HookPoint.parse("layers.x.mlp.act")

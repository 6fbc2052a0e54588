"""Steering: value 0 in add mode is plain generation; a large value pushes the output toward the feature's
logit direction; clamp sets the activation; bad features are one-line errors."""


import pytest
import torch

import helpers
from babelscope.errors import UserError
from babelscope.generate import generate
from babelscope.intervene.steer import Steer, parse_steer, steer_delta, steering_fn, steering_patches
from babelscope.models import load_model
from babelscope.models.hooks import patch

HOOK = "layers.1.resid_post"  # the last layer of the tiny preset


def random_sae(d_in: int, d_sae: int, k: int = 4, seed: int = 0):
    return helpers.random_sae(d_in, d_sae, k, seed, hook=HOOK)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def test_parse_steer():
    assert parse_steer("12:-3.5") == Steer(12, -3.5)
    with pytest.raises(ValueError, match="FEATURE:VALUE"):
        parse_steer("12")


def test_delta_hand_worked():
    h = torch.tensor([[3.0, 4.0]])
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    add = steer_delta(h, w, [Steer(1, 2.0)], mode="add", scale=h.norm(dim=-1, keepdim=True))
    assert add.tolist() == [[0.0, 10.0]]  # 2 * ||h|| * d_1
    clamp = steer_delta(h, w, [Steer(0, 1.0)], mode="clamp", acts=torch.tensor([[0.6, 0.8]]))
    assert clamp[0].tolist() == pytest.approx([0.4, 0.0])  # (1 - 0.6) * d_0


def test_add_zero_is_plain_generation(model):
    m, tok = model
    sae = random_sae(32, 16)
    prompts = ["the cat", "قال تيم"]
    for kw in ({"temperature": 0}, {"temperature": 1.0, "seed": 3}):
        plain = generate(m, tok, prompts, max_new_tokens=8, **kw)
        steered = generate(m, tok, prompts, max_new_tokens=8, patches=steering_patches(sae, [Steer(3, 0.0)]), **kw)
        assert steered == plain


def test_large_value_pushes_toward_the_features_logit_direction(model):
    m, tok = model
    sae = random_sae(32, 16)
    f = 5
    ids = tok("the cat sat", return_tensors="pt")["input_ids"]
    # Far along d_f the final RMSNorm output tends to g * d_f / rms(d_f): the favoured token is the argmax of that.
    d = sae.W_dec[f]
    target = int(m.lm_head(m.model.norm.weight * d / d.pow(2).mean().sqrt()).argmax())
    with torch.no_grad():
        plain = m(ids).logits[0, -1].softmax(-1)
        with patch(m, HOOK, steering_fn(sae, [Steer(f, 50.0)])):
            steered = m(ids).logits[0, -1].softmax(-1)
    assert int(steered.argmax()) == target
    assert steered[target] > 1.5 * plain[target]  # a random tiny model is near-uniform, so compare ratios
    # Negative values push the other way.
    with torch.no_grad(), patch(m, HOOK, steering_fn(sae, [Steer(f, -50.0)])):
        assert m(ids).logits[0, -1].softmax(-1)[target] < plain[target]


def test_clamp_sets_the_activation():
    sae = random_sae(32, 16)
    h = torch.randn(3, 32)
    fn = steering_fn(sae, [Steer(2, 0.0)], mode="clamp")
    # Clamping to zero removes the feature's contribution: f_2 * ||h|| * d_2.
    expected = h - sae.encode(h)[:, 2:3] * h.norm(dim=-1, keepdim=True) * sae.W_dec[2]
    torch.testing.assert_close(fn(h), expected)


def test_out_of_range_feature_is_a_user_error():
    with pytest.raises(UserError, match="out of range"):
        steering_fn(random_sae(32, 16), [Steer(16, 1.0)])
    with pytest.raises(UserError, match="steer-mode"):
        steering_fn(random_sae(32, 16), [Steer(1, 1.0)], mode="boost")


def test_generate_cli_with_steering(tiny_model_dir, tmp_path, capsys):
    from babelscope.cli import main
    from babelscope.sae import save_sae

    save_sae(random_sae(32, 16), tmp_path / "sae")
    base = ["generate", "--model", str(tiny_model_dir), "--prompt", "the cat", "--temperature", "0",
            "--max-new-tokens", "6", "--json"]

    def run(extra):
        with pytest.raises(SystemExit) as e:
            main(base + extra)
        out = capsys.readouterr()
        return e.value.code, out.out, out.err

    code, plain, _ = run([])
    assert code == 0
    assert run(["--sae", str(tmp_path / "sae"), "--steer", "3:0"])[:2] == (0, plain)
    code, steered, _ = run(["--sae", str(tmp_path / "sae"), "--steer", "3:80", "--steer", "5:80"])
    assert code == 0 and steered != plain
    code, _, err = run(["--steer", "3:1"])
    assert code == 2 and "--steer needs --sae" in err
    code, _, err = run(["--sae", str(tmp_path / "sae"), "--steer", "99:1"])
    assert code == 2 and "out of range" in err

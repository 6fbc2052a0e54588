"""Hook points with the same meaning on every supported HF causal LM, captured with forward hooks.

    babelscope name         TransformerLens name      what it is
    layers.{L}.resid_post   blocks.{L}.hook_resid_post  the decoder layer's output (residual stream after L)
    layers.{L}.mlp.act      blocks.{L}.mlp.hook_post    the MLP's hidden activation: its down projection's input
    layers.{L}.mlp.out      blocks.{L}.hook_mlp_out     the MLP's output, before it joins the residual stream
    layers.{L}.attn.out     blocks.{L}.hook_attn_out    the attention block's output, before it joins the stream

Both spellings are accepted everywhere (`HookPoint.parse`); SAE files are written with the TransformerLens one
(SAELens and TransformerLens tools read it), babelscope prints its own. Supported layouts: Llama-style
(`model.layers`, also Mistral, Qwen2, ...), GPT-2 (`transformer.h`) and GPT-NeoX (`gpt_neox.layers`).
Capturing stops the forward pass right after the deepest hook needed, so the layers above it and the
unembedding are never computed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from babelscope.errors import UserError

KINDS = ("resid_post", "mlp.act", "mlp.out", "attn.out")
TL_KINDS = {"resid_post": "hook_resid_post", "mlp.act": "mlp.hook_post", "mlp.out": "hook_mlp_out",
            "attn.out": "hook_attn_out"}
_OURS = re.compile(r"^layers\.(\d+)\.(resid_post|mlp\.act|mlp\.out|attn\.out)$")
_TL = re.compile(r"^blocks\.(\d+)\.(hook_resid_post|mlp\.hook_post|hook_mlp_out|hook_attn_out)$")
_FROM_TL = {v: k for k, v in TL_KINDS.items()}
_LAYER_LISTS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")
_MLP = ("mlp", "feed_forward")
_DOWN = ("down_proj", "c_proj", "dense_4h_to_h", "fc2", "fc_out", "w2")
_ATTN = ("self_attn", "attn", "attention")


@dataclass(frozen=True)
class HookPoint:
    """A (layer, kind) place in a decoder stack; `parse` reads either spelling, `format` writes either."""

    layer: int
    kind: str

    @classmethod
    def parse(cls, name: str) -> HookPoint:
        """`layers.3.mlp.act` or `blocks.3.mlp.hook_post` -> HookPoint(3, "mlp.act"); anything else is a UserError."""
        text = str(name).strip()
        if m := _OURS.match(text):
            return cls(int(m[1]), m[2])
        if m := _TL.match(text):
            return cls(int(m[1]), _FROM_TL[m[2]])
        raise UserError(f"no hook point '{name}'; expected layers.L.{{{','.join(KINDS)}}} or the TransformerLens "
                        f"spelling blocks.L.{{{','.join(TL_KINDS.values())}}}")

    def format(self, style: str = "babelscope") -> str:
        """The name in babelscope's spelling (`layers.L.kind`) or TransformerLens' (`style="tl"`)."""
        if style == "tl":
            return f"blocks.{self.layer}.{TL_KINDS[self.kind]}"
        return f"layers.{self.layer}.{self.kind}"

    @property
    def name(self) -> str:
        return self.format()

    def __str__(self) -> str:
        return self.format()


def find_module(obj: nn.Module, dotted: str) -> nn.Module | None:
    """The submodule at a dotted path, or None when the layout has none there."""
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    for dotted in _LAYER_LISTS:
        layers = find_module(model, dotted)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise UserError(f"unsupported model layout ({type(model).__name__}): no decoder layer list found at "
                    f"{', '.join(_LAYER_LISTS)}")


def _child(module: nn.Module, names: tuple[str, ...], what: str) -> nn.Module:
    for n in names:
        child = getattr(module, n, None)
        if isinstance(child, nn.Module):
            return child
    raise UserError(f"unsupported layer layout ({type(module).__name__}): no {what} among {', '.join(names)}")


def hook_names(model: nn.Module) -> list[str]:
    """Every valid hook name for this model (babelscope spelling)."""
    n = len(decoder_layers(model))
    return [f"layers.{i}.{k}" for i in range(n) for k in KINDS]


def from_top(name: str, n_layers: int) -> str:
    """`name` with `last` (or a negative index) as its layer counted from the top of an `n_layers` model: a recipe
    names the last layer of a model it has not trained yet. Other names are returned as they are."""
    m = re.match(r"^(layers|blocks)\.(last|-\d+)\.(.+)$", name)
    if not m:
        return name
    return f"{m[1]}.{n_layers - 1 if m[2] == 'last' else n_layers + int(m[2])}.{m[3]}"


def parse_hook(model: nn.Module, name: str | HookPoint) -> HookPoint:
    """The hook point `name` (either spelling), checked against this model's layer count."""
    n = len(decoder_layers(model))
    try:
        point = name if isinstance(name, HookPoint) else HookPoint.parse(name)
    except UserError:
        point = None
    if point is None or point.layer >= n:
        raise UserError(f"no hook point '{name}'; valid: layers.{{0..{n - 1}}}.{{{','.join(KINDS)}}} "
                        f"(e.g. layers.{n - 1}.mlp.act, or blocks.{n - 1}.mlp.hook_post)")
    return point


def hook_module(model: nn.Module, point: HookPoint) -> nn.Module:
    """The module whose output (or, for `mlp.act`, whose input) is the hook point."""
    layer = decoder_layers(model)[point.layer]
    if point.kind == "resid_post":
        return layer
    if point.kind == "attn.out":
        return _child(layer, _ATTN, "attention module")
    mlp = _child(layer, _MLP, "MLP module")
    return _child(mlp, _DOWN, "down projection") if point.kind == "mlp.act" else mlp


def hook_width(model: nn.Module, name: str) -> int:
    point = parse_hook(model, name)
    module = hook_module(model, point)
    if point.kind == "mlp.act":
        weight = module.weight
        # nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out].
        return weight.shape[0] if type(module).__name__ == "Conv1D" else weight.shape[1]
    return model.config.hidden_size


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, new):
    return (new, *output[1:]) if isinstance(output, tuple) else new


class _Stop(Exception):
    pass


@contextlib.contextmanager
def _registered(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def capture(model: nn.Module, names: list[str], input_ids: torch.Tensor,
            attention_mask: torch.Tensor | None = None, *, stop_early: bool = True) -> dict[str, torch.Tensor]:
    """Run `model` on a batch and return the activations [B, T, d] at each hook point, keyed as `names` spell them."""
    points = {n: parse_hook(model, n) for n in names}
    out: dict[str, torch.Tensor] = {}
    handles = []
    for name, p in points.items():
        module = hook_module(model, p)

        def save(value: torch.Tensor, name: str = name) -> None:
            out[name] = value.detach()
            if stop_early and len(out) == len(points):  # the deepest hook has fired: skip the rest
                raise _Stop

        if p.kind == "mlp.act":
            handles.append(module.register_forward_pre_hook(lambda m, args, save=save: save(args[0])))
        else:
            handles.append(module.register_forward_hook(lambda m, args, output, save=save: save(_first(output))))
    with _registered(handles), torch.no_grad(), contextlib.suppress(_Stop):
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out


@contextlib.contextmanager
def patch(model: nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, the activation at hook `name` is replaced by `fn(activation)` on every forward."""
    point = parse_hook(model, name)
    module = hook_module(model, point)
    if point.kind == "mlp.act":
        handle = module.register_forward_pre_hook(lambda m, args: (fn(args[0]), *args[1:]))
    else:
        handle = module.register_forward_hook(lambda m, args, output: _replace_first(output, fn(_first(output))))
    with _registered([handle]):
        yield

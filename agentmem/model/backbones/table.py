"""Where δ-mem attaches, per architecture: the one table (keyed by ``config.model_type``)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from agentmem.errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class ArchitectureSpec:
    """Module paths inside one decoder family.

    Attributes:
        layers: path of the decoder-layer list from the *ForCausalLM model.
        attention: attribute of a decoder layer holding its attention module.
        q, k, v, o: attribute names of the attention's projections. q's input is x_t.
    """

    layers: str = "model.layers"
    attention: str = "self_attn"
    q: str = "q_proj"
    k: str = "k_proj"
    v: str = "v_proj"
    o: str = "o_proj"

    def projection(self, branch: str) -> str:
        return {"q": self.q, "k": self.k, "v": self.v, "o": self.o}[branch]


_LLAMA_LIKE = ArchitectureSpec()

# Every family here calls q_proj(x) first on the normed attention input, applies any q-norm and
# RoPE after it, and ends with o_proj: exactly where docs/design.md#the-mechanism puts the corrections.
ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "llama": _LLAMA_LIKE,  # Llama 2/3, SmolLM2
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,  # Qwen2, Qwen2.5
    "qwen3": _LLAMA_LIKE,  # q_norm / k_norm per head, after the projections
    "gemma3_text": _LLAMA_LIKE,
    "smollm3": _LLAMA_LIKE,
}


def spec_for(model: nn.Module) -> ArchitectureSpec:
    """The attachment spec of ``model`` or `UnsupportedArchitectureError` naming the table."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"δ-mem does not know architecture {model_type!r}; supported: "
            f"{', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[model_type]


def decoder_layers(model: nn.Module, spec: ArchitectureSpec) -> nn.ModuleList:
    """The decoder-layer list, from a *ForCausalLM or its bare base model."""
    for path in (spec.layers, spec.layers.split(".", 1)[-1]):
        try:
            layers = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList):
            return layers
    raise UnsupportedArchitectureError(f"no decoder layers at {spec.layers!r} in "
                                       f"{type(model).__name__}")

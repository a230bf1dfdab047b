"""Shared fixtures: tiny random backbones built from configs (no downloads)."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            pad_token_id=0, bos_token_id=1, eos_token_id=2)


def tiny_config(model_type: str) -> tf.PretrainedConfig:
    """A 2-layer random config of ``model_type`` (every family of the attachment table)."""
    if model_type == "llama":
        return tf.LlamaConfig(**TINY)
    if model_type == "mistral":
        return tf.MistralConfig(**TINY, sliding_window=None)
    if model_type == "qwen2":
        return tf.Qwen2Config(**TINY)
    if model_type == "qwen3":
        return tf.Qwen3Config(**TINY, head_dim=16)
    if model_type == "gemma3_text":
        return tf.Gemma3TextConfig(**TINY, head_dim=16, sliding_window=8, query_pre_attn_scalar=16)
    if model_type == "smollm3":
        return tf.SmolLM3Config(**TINY)
    raise KeyError(model_type)


def tiny_model(model_type: str = "llama", seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = tiny_config(model_type)
    for k, v in overrides.items():
        setattr(config, k, v)
    config._attn_implementation = "sdpa"
    return tf.AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture
def llama():
    return tiny_model("llama")


@pytest.fixture(scope="session")
def default_backbone():
    """The real default backbone (converted once into the cache, then ~1.5 s loads)."""
    from agentmem.model.backbones import load_backbone

    return load_backbone()


@pytest.fixture(scope="session")
def default_tokenizer(default_backbone):
    return default_backbone[1]

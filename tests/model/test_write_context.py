"""The protocol options a faithful run of the authors' adapters needs: a history written as one
sequence (``write_context``), chat-template message spans (``message_span``), bf16 numerics."""

from __future__ import annotations

import json

import pytest
import torch

from agentmem import DeltaMemConfig
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import load_backbone
from agentmem.model.chat_template import encode_chat
from agentmem.model.history import HistoryWriter, encode_turns, write_histories_grad, write_history
from agentmem.model.passes import write_tokens
from agentmem.ops import fused
from tests.chat.tiny import SMOL_TEMPLATE, byte_tokenizer, tiny_backbone_dir

HISTORY = [{"role": "user", "content": "Hi! My sister Lin lives in Porto."},
           {"role": "assistant", "content": "Noted."},
           {"role": "user", "content": "My dog Biscuit is four."},
           {"role": "assistant", "content": "Lovely."},
           {"role": "user", "content": "I work in Lyon."}]


def attached(seed: int = 0, **config):
    folder = tiny_backbone_dir("qwen3")  # built on first use, which draws from torch's RNG
    torch.manual_seed(seed)
    model, tok = load_backbone(folder)
    dm = attach_delta_mem(model, DeltaMemConfig(rank=4, num_states=2, **config))
    with torch.no_grad():  # a trained-looking adapter: reads that matter
        for p in dm.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return dm, tok


def test_new_options_stay_out_of_the_json_at_their_defaults():
    assert set(json.loads(DeltaMemConfig().to_json())) == {
        "alpha", "beta_bias", "branches", "init", "init_gain", "num_states", "rank",
        "target_layers", "write_mode"}
    c = DeltaMemConfig(write_mode="message", numerics="bf16", write_context="history",
                       message_span="template")
    assert DeltaMemConfig.from_json(c.to_json()) == c
    assert {"numerics", "write_context", "message_span"} <= set(json.loads(c.to_json()))
    g = DeltaMemConfig(write_context="history", generation_writes=True)
    assert DeltaMemConfig.from_json(g.to_json()) == g and "generation_writes" in g.to_json()


@pytest.mark.parametrize("kwargs, match", [
    ({"numerics": "fp16"}, "numerics"), ({"write_context": "thread"}, "write_context"),
    ({"write_mode": "message", "message_span": "sentence"}, "message_span"),
    ({"message_span": "template"}, "needs write_mode='message'"),
    ({"write_mode": "message", "write_reads": False, "numerics": "bf16"}, "rounds the state"),
    ({"generation_writes": True}, "write_context='history'"),
    ({"generation_writes": True, "write_mode": "message", "write_context": "history"},
     "write_mode='token'"), ({"generation_writes": 1}, "expected a bool"),
])
def test_option_values_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeltaMemConfig(**kwargs)


def test_template_spans_are_each_messages_whole_render():
    tok = byte_tokenizer(SMOL_TEMPLATE)  # adds a default system prompt before the first message
    enc = encode_chat(tok, HISTORY[:3], span="template")
    text = tok.apply_chat_template(HISTORY[:3], tokenize=False)
    assert enc.input_ids == tok(text, add_special_tokens=False)["input_ids"]
    assert enc.spans[0][0] == 0 and enc.spans[-1][1] == len(enc.input_ids)  # nothing left over
    assert all(a[1] == b[0] for a, b in zip(enc.spans, enc.spans[1:], strict=False))
    second = tok.decode(enc.input_ids[slice(*enc.spans[1])])
    assert second == "<|im_start|>assistant\nNoted.<|im_end|>\n"
    content = encode_chat(tok, HISTORY[:3]).spans[1]
    assert tok.decode(enc.input_ids[slice(*content)]) == "Noted."
    after = encode_chat(tok, HISTORY[3:], prefix=HISTORY[:3], span="template")
    assert tok.decode(after.input_ids[slice(*after.spans[0])]).startswith("<|im_start|>assistant")
    with pytest.raises(ValueError, match="span"):
        encode_chat(tok, HISTORY, span="sentence")


def test_system_messages_are_never_written():
    tok = byte_tokenizer()
    chat = [{"role": "system", "content": "Be brief."}] + HISTORY[:2]
    for span in ("content", "template"):
        enc = encode_chat(tok, chat, span=span)
        assert enc.written_spans() == enc.spans[1:]
        assert enc.written_spans("user") == enc.spans[1:2]


def test_history_context_encodes_one_sequence_within_the_budget():
    tok = byte_tokenizer()
    config = DeltaMemConfig(write_mode="message", write_context="history", message_span="template")
    (whole,) = encode_turns(tok, HISTORY, config=config)
    assert whole == encode_chat(tok, HISTORY, span="template")
    assert len(encode_turns(tok, HISTORY)) == 3  # default: one pass per turn
    budget = len(encode_chat(tok, HISTORY[2:]).input_ids)
    (cut,) = encode_turns(tok, HISTORY, budget, config=config)
    assert cut == encode_chat(tok, HISTORY[2:], span="template")  # oldest turn dropped
    assert encode_turns(tok, [], config=config) == []


@pytest.mark.parametrize("mode", ["token", "message"])
def test_history_context_writes_the_history_in_one_pass(mode):
    span = "template" if mode == "message" else "content"
    dm, tok = attached(write_mode=mode, write_context="history", message_span=span)
    state = write_history(dm, tok, HISTORY)
    enc = encode_chat(tok, HISTORY, span=span)
    once = write_tokens(dm, torch.tensor([enc.input_ids]), spans=[enc.written_spans()])
    assert torch.equal(state.tensors, once.tensors)
    assert torch.equal(state.tokens_written, once.tokens_written)
    writer = HistoryWriter(dm, tok)  # no prefix reuse: a longer history is a new sequence
    assert torch.equal(writer(HISTORY).tensors, state.tensors)
    assert torch.allclose(writer(HISTORY[:2]).tensors, write_history(dm, tok, HISTORY[:2]).tensors)
    assert torch.equal(writer(HISTORY).tensors, state.tensors)
    grad_state, _ = write_histories_grad(dm, tok, [HISTORY, HISTORY[:2]])
    assert torch.allclose(grad_state.tensors[0], state.tensors[0], atol=1e-5)


def test_bf16_numerics_keep_the_state_in_bf16_between_passes():
    dm, tok = attached(numerics="bf16")
    fp32, _ = attached(numerics="fp32")
    state = write_history(dm, tok, HISTORY)
    assert state.tensors.dtype == torch.float32  # stored as fp32 holding bf16 values
    assert torch.equal(state.tensors, state.tensors.bfloat16().float())
    ref = write_history(fp32, tok, HISTORY)
    assert 0 < (state.tensors - ref.tensors).abs().max() < 0.05
    # fp32 numerics are unchanged: the compiled decode step still applies
    x = torch.randn(1, 1, dm.model.config.hidden_size)
    with torch.no_grad(), fp32.memory() as cache:
        assert fp32.layers[0].decode(x, cache, 0, None) == fused.available()
    with torch.no_grad(), dm.memory() as cache:
        assert not dm.layers[0].decode(x, cache, 0, None)

"""DeltaMemChatModel with a converted adapter of the δ-mem authors: the conversation written as
one sequence each turn, the backbone in bf16, and the calls such an adapter cannot serve."""

from __future__ import annotations

import pytest
import torch
from langchain_core.messages import HumanMessage, SystemMessage

from agentmem import IncompleteHistoryError
from agentmem.model.backbones import load_backbone
from agentmem.model.history import write_history
from agentmem.model.official import convert_official
from tests.chat.conftest import cfg
from tests.chat.tiny import tiny_backbone_dir
from tests.model.official_reference import official_config, official_tensors, write_official_folder


@pytest.fixture(scope="module")
def qwen3_dir() -> str:
    return tiny_backbone_dir("qwen3")


def converted(tmp_path, backbone: str, convert: dict | None = None, **options) -> str:
    model = load_backbone(backbone)[0]
    config = official_config(delta_heads=["q", "o"], **options)
    src = write_official_folder(tmp_path / "src", config, official_tensors(model, config))
    return str(convert_official(src, tmp_path / "out", model, **(convert or {})))


def chat_model(backbone: str, adapter: str, **kwargs):
    from agentmem.chat.chat_model import DeltaMemChatModel

    return DeltaMemChatModel(backbone=backbone, adapter=adapter, max_tokens=6, **kwargs)


def as_dicts(messages) -> list[dict]:
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    return [{"role": roles[m.type], "content": m.content} for m in messages]


@pytest.mark.parametrize("granularity", ["token", "message_mean"])
def test_each_turn_rewrites_the_whole_conversation(tmp_path, qwen3_dir, granularity):
    model = chat_model(qwen3_dir, converted(tmp_path, qwen3_dir, memory_write_granularity=granularity))
    backend = model._backend()
    assert backend.model.dtype == torch.bfloat16  # bf16 numerics: served as it was made
    conversation = [SystemMessage("Be brief.")]
    for question in ["My sister Lin lives in Porto.", "Where does Lin live?"]:
        conversation.append(HumanMessage(question))
        reply = model.invoke(conversation, config=cfg("t"))
        conversation.append(reply)
        saved = model.memory_state(cfg("t"))
        whole = write_history(backend.dm, backend.tokenizer, as_dicts(conversation))
        assert torch.equal(saved.tensors, whole.tensors)
        assert torch.equal(saved.tokens_written, whole.tokens_written)
        assert torch.equal(saved.tensors, saved.tensors.bfloat16().float())
        assert reply.response_metadata["memory"]["tokens_written"] == int(whole.tokens_written[0])
    assert saved.tensors.abs().max() > 0


def test_a_call_without_the_whole_conversation_is_refused(tmp_path, qwen3_dir):
    model = chat_model(qwen3_dir, converted(tmp_path, qwen3_dir))
    first = model.invoke([HumanMessage("My sister Lin lives in Porto.")], config=cfg("t"))
    before = model.memory_state(cfg("t"))
    with pytest.raises(IncompleteHistoryError, match="send all 2 messages"):
        model.invoke([HumanMessage("Where does Lin live?")], config=cfg("t"))
    assert torch.equal(model.memory_state(cfg("t")).tensors, before.tensors)  # nothing written
    model.invoke([HumanMessage("My sister Lin lives in Porto."), first,
                  HumanMessage("Where does Lin live?")], config=cfg("t"))
    model.invoke("A new thread starts anywhere.", config=cfg("other"))


def test_agent_scope_is_refused(tmp_path, qwen3_dir):
    model = chat_model(qwen3_dir, converted(tmp_path, qwen3_dir), memory_scope="agent")
    with pytest.raises(IncompleteHistoryError, match="memory_scope='thread'"):
        model.invoke("My sister Lin lives in Porto.", config=cfg("t", agent="a"))


def test_generation_writes_answer_as_their_chat_session(tmp_path, qwen3_dir):
    from agentmem.model.decoding import BatchDecoder, SamplingParams

    adapter = converted(tmp_path, qwen3_dir, {"generation_writes": True})
    with pytest.raises(ValueError, match="use window=None"):
        chat_model(qwen3_dir, adapter, window=2).invoke("Hi.", config=cfg("w"))
    model = chat_model(qwen3_dir, adapter)
    backend = model._backend()
    conversation = [HumanMessage("My sister Lin lives in Porto.")]
    conversation.append(model.invoke(conversation, config=cfg("t")))
    conversation.append(HumanMessage("Where does Lin live?"))
    reply = model.invoke(conversation, config=cfg("t"))
    prompt = backend.render_prompt(as_dicts(conversation), None)  # all of it, written as read
    decoder = BatchDecoder(backend.model, backend.dm, [prompt], backend.new_state(),
                           SamplingParams(max_new_tokens=6), backend.eos_ids, backend.pad_id,
                           write=True)
    tokens = [step[0] for step in decoder if step[0] is not None]
    text = backend.tokenizer.decode(tokens, skip_special_tokens=True)
    assert reply.content == text.rstrip("\ufffd")  # an unfinished UTF-8 character is cut
    whole = write_history(backend.dm, backend.tokenizer, as_dicts(conversation + [reply]))
    assert torch.equal(model.memory_state(cfg("t")).tensors, whole.tensors)

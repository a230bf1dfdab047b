"""Bad input gives a typed error before anything is written; the memory stays as it was."""

from __future__ import annotations

import pytest
import torch
from langchain_core.messages import ChatMessage, FunctionMessage, HumanMessage

from agentmem.chat.memory_store import MemoryKey
from agentmem.errors import (
    AgentMemError,
    EmptyConversationError,
    InputTooLongError,
    MissingMemoryKeyError,
    StateMismatchError,
    UnknownRoleError,
    UnsupportedContentError,
)
from tests.chat.conftest import cfg
from tests.chat.tiny import tiny_backbone_dir

SMALL_CONTEXT = 256  # tokens; the byte tokenizer makes one token per byte


def assert_unchanged(model, config, before) -> None:
    after = model.store.load(model.scope(config).key)
    assert after.checkpoint_id == before.checkpoint_id
    assert torch.equal(after.state.tensors, before.state.tensors)


@pytest.mark.parametrize("bad, error", [
    ([], EmptyConversationError),
    ([ChatMessage(role="narrator", content="Once upon a time")], UnknownRoleError),
    ([FunctionMessage(name="f", content="1")], UnknownRoleError),
    ([HumanMessage(content=[{"type": "text", "text": "What is this?"},
                            {"type": "image", "base64": "AAAA", "mime_type": "image/png"}])],
     UnsupportedContentError),
])
def test_bad_messages_raise_typed_errors_and_write_nothing(make_model, bad, error):
    model = make_model()
    model.invoke("Hi.", config=cfg("t"))
    before = model.store.load(model.scope(cfg("t")).key)
    with pytest.raises(error) as info:
        model.invoke(bad, config=cfg("t"))
    assert isinstance(info.value, AgentMemError) and isinstance(info.value, ValueError)
    with pytest.raises(error):
        list(model.stream(bad, config=cfg("t")))
    assert_unchanged(model, cfg("t"), before)


def test_a_message_longer_than_the_context_is_refused_before_any_write(make_model):
    model = make_model(backbone=tiny_backbone_dir("qwen2", "qwen", ctx=SMALL_CONTEXT))
    model.invoke("Hi.", config=cfg("t"))
    before = model.store.load(model.scope(cfg("t")).key)
    long = "x" * (SMALL_CONTEXT + 10)
    with pytest.raises(InputTooLongError, match="read pass"):
        model.invoke(long, config=cfg("t"))
    with pytest.raises(InputTooLongError, match="write pass"):
        model.remember(long, config=cfg("t"))
    assert_unchanged(model, cfg("t"), before)
    # the read pass fits with window=0 but the unwritten history does not fit one write pass
    history = [HumanMessage("y" * 150), HumanMessage("z" * 150), HumanMessage("Hi.")]
    with pytest.raises(InputTooLongError, match="write pass"):
        make_model(backbone=tiny_backbone_dir("qwen2", "qwen", ctx=SMALL_CONTEXT), window=0).invoke(
            history, config=cfg("t"))


def test_a_bad_row_fails_alone_in_a_batch(make_model):
    model = make_model()
    results = model.batch([[], "Hello"], [cfg("a"), cfg("b")], return_exceptions=True)
    assert isinstance(results[0], EmptyConversationError)
    assert results[1].content and results[1].response_metadata["memory"]["thread_id"] == "b"
    assert model.memory_state(cfg("a")) is None
    with pytest.raises(EmptyConversationError):
        model.batch([[], "Hello"])


def test_memory_operations_need_a_key(make_model):
    model = make_model()
    for op in (model.forget, model.memory_state):
        with pytest.raises(MissingMemoryKeyError):
            op({})
    with pytest.raises(MissingMemoryKeyError):
        model.remember("note", config={"configurable": {"agent_id": "a"}})  # thread scope
    agent = make_model(memory_scope="agent")
    assert agent.remember("note", config=cfg(agent="a"))["scope"] == "agent"


def test_a_state_from_another_adapter_is_refused(make_model, smol_dir):
    model, other = make_model(), make_model(backbone=smol_dir)
    other.invoke("Hi.", config=cfg("t"))
    key = model.scope(cfg("t")).key
    assert key == MemoryKey("default", "t")
    record = other.store.load(key)
    model.store.save(key, record.state, record.metadata, parent=None)
    with pytest.raises(StateMismatchError):
        model.invoke("Hi.", config=cfg("t"))


def test_per_call_model_override_is_refused(make_model):
    with pytest.raises(ValueError, match="per-call backbone"):
        make_model().invoke("Hi.", model="another-model")


def test_invalid_fields_are_refused():
    from pydantic import ValidationError

    from agentmem.chat.chat_model import DeltaMemChatModel

    for bad in ({"window": -1}, {"max_tokens": 0}, {"top_p": 0.0}, {"memory_scope": "global"},
                {"temperature": -1.0}):
        with pytest.raises(ValidationError):
            DeltaMemChatModel(**bad)

"""What a LangChain user expects of a chat model (ChatOllama / ChatHuggingFace habits): token
counting by the backbone's own tokenizer, batch rows that fail alone, ``model=`` naming the
backbone, refusal of unknown arguments, errors at bind time, plain callback parameters."""

from __future__ import annotations

import re
import socket

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, trim_messages
from pydantic import ValidationError

from agentmem.chat.chat_model import DeltaMemChatModel
from agentmem.chat.shared_backbone import get_tokenizer
from tests.chat.conftest import cfg


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_tokens_are_counted_by_the_backbones_tokenizer_offline(make_model, tiny_dir,
                                                               no_network) -> None:
    chat = make_model()
    text = "Hello world, how are you today?"
    want = len(get_tokenizer(tiny_dir).encode(text, add_special_tokens=False))
    assert chat.get_num_tokens(text) == want > 0
    history = [SystemMessage("Be brief."), *[HumanMessage(f"Message number {i}.") for i in range(8)]]
    total = chat.get_num_tokens_from_messages(history)
    assert total > sum(chat.get_num_tokens(m.content) for m in history)  # the template's markup
    trimmed = trim_messages(history, max_tokens=total // 2, token_counter=chat,
                            strategy="last", include_system=True)
    assert 1 < len(trimmed) < len(history) and trimmed[0] == history[0]
    assert chat.get_num_tokens_from_messages(trimmed) <= total // 2


def test_a_bad_batch_row_fails_alone_with_return_exceptions(make_model) -> None:
    chat = make_model()
    out = chat.batch(["Hi.", 42, "Hello."], return_exceptions=True)
    assert isinstance(out[0], AIMessage) and isinstance(out[2], AIMessage)
    assert isinstance(out[1], ValueError)
    with pytest.raises(ValueError):
        chat.batch(["Hi.", 42])


def test_model_names_the_backbone_like_other_chat_models(tiny_dir) -> None:
    assert DeltaMemChatModel(model=tiny_dir).backbone == tiny_dir
    assert DeltaMemChatModel(model_name=tiny_dir).backbone == tiny_dir
    assert DeltaMemChatModel(backbone=tiny_dir, max_new_tokens=7).max_tokens == 7


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"num_predict": 5}, "num_predict"),
    ({"foo": 1}, "'foo'"),
    ({"max_token": 5}, "did you mean 'max_tokens'"),
    ({"timeout": 30}, "timeout"),
])
def test_unknown_constructor_arguments_are_refused(tiny_dir, kwargs, said) -> None:
    with pytest.raises(ValidationError, match=re.escape(said)):
        DeltaMemChatModel(backbone=tiny_dir, **kwargs)


@pytest.mark.parametrize(("kwargs", "error", "said"), [
    ({"temperature": -1}, ValueError, "temperature=-1"),
    ({"top_p": 0}, ValueError, "top_p=0"),
    ({"max_tokens": 0}, ValueError, "max_tokens=0"),
    ({"max_new_tokens": 0}, ValueError, "max_new_tokens=0"),
    ({"foo": 1}, TypeError, "'foo'"),
    ({"num_predict": 3}, TypeError, "num_predict"),
])
def test_bad_per_call_arguments_are_refused_and_nothing_is_written(make_model, kwargs, error,
                                                                   said) -> None:
    chat = make_model()
    with pytest.raises(error, match=re.escape(said)):
        chat.invoke("Hi.", config=cfg("t"), **kwargs)
    with pytest.raises(error, match=re.escape(said)):
        chat.batch(["Hi."], config=cfg("t"), **kwargs)
    assert chat.memory_state(cfg("t")) is None
    assert chat.invoke("Hi.", temperature=0.5, seed=1, max_tokens=3).content is not None


def test_constructor_ranges_name_the_argument(tiny_dir) -> None:
    with pytest.raises(ValidationError, match="max_tokens|max_new_tokens"):
        DeltaMemChatModel(backbone=tiny_dir, max_tokens=0)


def test_callbacks_get_plain_parameters_and_ids_match_invoke(make_model) -> None:
    seen: list[dict] = []

    class Recorder(BaseCallbackHandler):
        def on_chat_model_start(self, serialized, messages, **kwargs):
            seen.append(kwargs["invocation_params"])

    chat = make_model()
    one = chat.invoke("Hi.", config={**cfg("t", agent="ada"), "callbacks": [Recorder()]})
    many = chat.batch(["Hi.", "Hello."], config={"callbacks": [Recorder()]})
    params = seen[0]
    assert "memory" not in params and "cancel" not in params
    assert (params["thread_id"], params["agent_id"], params["memory_scope"]) == ("t", "ada",
                                                                                 "thread")
    assert all(isinstance(v, str | int | float | bool | list | dict | type(None))
               for p in seen for v in p.values())
    shape = re.compile(r"lc_run--[0-9a-f-]{36}-0")
    assert shape.fullmatch(one.id) and all(shape.fullmatch(m.id) for m in many)


def test_remembering_what_memory_holds_adds_no_checkpoint(make_model) -> None:
    chat = make_model()
    first = chat.remember("A note about Lisbon.", config=cfg("t"))
    again = chat.remember("A note about Lisbon.", config=cfg("t"))
    assert first["checkpoint_id"] is not None
    assert again["checkpoint_id"] == first["checkpoint_id"]
    assert again["tokens_written"] == first["tokens_written"]
    assert chat.remember("Another note.", config=cfg("t"))["parent_checkpoint_id"] == \
        first["checkpoint_id"]


def test_a_memory_state_prints_in_one_line(make_model) -> None:
    chat = make_model()
    chat.invoke("Hi.", config=cfg("t"))
    text = repr(chat.memory_state(cfg("t")))
    assert text.startswith("MemoryState(batch=1") and "tensor(" not in text and len(text) < 300

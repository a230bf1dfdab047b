"""DeltaMemChatModel memory semantics: read pass = frozen model on a zero state, one write per
message, threads kept apart, agent scope, forget, remember, save conflicts."""

from __future__ import annotations

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from transformers import AutoModelForCausalLM, AutoTokenizer

from agentmem.chat.memory_store import InProcessMemoryStore
from agentmem.chat.shared_backbone import ChatBackend
from agentmem.model.chat_template import encode_chat
from agentmem.model.passes import write_chat
from tests.chat.conftest import cfg

HISTORY = [SystemMessage("Be brief."), HumanMessage("My name is Ada."), AIMessage("Hi Ada."),
           HumanMessage("My name is Ada.")]


def plain_generate(folder, messages: list[dict], max_new_tokens: int) -> tuple[str, int]:
    """Greedy answer of the untouched transformers model: (text, generated tokens without EOS)."""
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)[0, ids.shape[1]:]
    out = out[out != tok.eos_token_id]
    return tok.decode(out, skip_special_tokens=True), len(out)


def as_dicts(messages) -> list[dict]:
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    return [{"role": roles[m.type], "content": m.content} for m in messages]


@pytest.mark.parametrize("backbone", ["tiny_dir", "smol_dir"])
def test_zero_state_full_window_equals_transformers_generate(backbone, request, make_model):
    folder = request.getfixturevalue(backbone)
    model = make_model(backbone=folder, max_tokens=40)
    reply = model.invoke(HISTORY, config=cfg("fresh"))  # a new thread: zero state, window = all
    text, n = plain_generate(folder, as_dicts(HISTORY), 40)
    assert n > 5  # the comparison covers a real continuation
    assert reply.content == text
    assert reply.usage_metadata["output_tokens"] == n


@pytest.mark.slow
def test_default_backbone_equals_transformers_generate(default_backbone):
    from agentmem.chat.chat_model import DeltaMemChatModel
    from agentmem.model.backbones import resolve_backbone

    model = DeltaMemChatModel(max_tokens=20, device="cpu")
    messages = [HumanMessage("What is the capital of France?")]
    reply = model.invoke(messages, config=cfg("fresh"))
    text, n = plain_generate(resolve_backbone("smollm2-135m-instruct"), as_dicts(messages), 20)
    assert reply.content == text and reply.usage_metadata["output_tokens"] == n


def test_each_message_is_written_exactly_once(make_model):
    """A full-history client over three turns: the state is the chain of one write per turn."""
    model = make_model()
    backend: ChatBackend = model._backend()
    conversation, state, tokens = [], backend.new_state(), 0
    for i, question in enumerate(["My name is Ada.", "I live in Porto.", "Where do I live?"]):
        conversation.append(HumanMessage(question))
        reply = model.invoke(conversation, config=cfg("t"))
        turn = [{"role": "user", "content": question}, {"role": "assistant", "content": reply.content}]
        prefix = as_dicts(conversation[:-1])
        tokens += len(encode_chat(backend.tokenizer, turn, prefix=prefix).input_ids)
        state = write_chat(backend.dm, backend.tokenizer, turn, state, prefix=prefix)
        conversation.append(reply)
        saved = model.memory_state(cfg("t"))
        assert int(saved.tokens_written[0]) == tokens == reply.response_metadata["memory"][
            "tokens_written"], f"turn {i}"
        assert torch.equal(saved.tensors, state.tensors)
    again = model.invoke(conversation, config=cfg("t"))  # nothing new: only the answer is written
    extra = encode_chat(backend.tokenizer, [{"role": "assistant", "content": again.content}],
                        prefix=as_dicts(conversation))
    assert int(model.memory_state(cfg("t")).tokens_written[0]) == tokens + len(extra.input_ids)


def test_window_and_stateless_clients_write_nothing_twice(make_model):
    """Callers that send only the last messages, or only the new one, are matched too."""
    model = make_model(window=2)
    first = model.invoke([HumanMessage("My name is Ada.")], config=cfg("w"))
    n1 = int(model.memory_state(cfg("w")).tokens_written[0])
    window = [HumanMessage("My name is Ada."), first, HumanMessage("I live in Porto.")]
    second = model.invoke(window, config=cfg("w"))
    turn = [{"role": "user", "content": "I live in Porto."},
            {"role": "assistant", "content": second.content}]
    added = len(encode_chat(model._backend().tokenizer, turn, prefix=as_dicts(window[:2])).input_ids)
    assert int(model.memory_state(cfg("w")).tokens_written[0]) == n1 + added
    model.invoke([HumanMessage("Thanks.")], config=cfg("w"))  # stateless client: all new
    assert int(model.memory_state(cfg("w")).tokens_written[0]) > n1 + added


def test_threads_keep_separate_states(make_model):
    shared = make_model()
    shared.invoke("My name is Ada.", config=cfg("a"))
    shared.invoke("My name is Bob.", config=cfg("b"))
    shared.invoke([HumanMessage("I like tea.")], config=cfg("a"))
    alone = make_model()  # own store: thread a without any other thread
    alone.invoke("My name is Ada.", config=cfg("a"))
    alone.invoke([HumanMessage("I like tea.")], config=cfg("a"))
    a, b = shared.memory_state(cfg("a")), shared.memory_state(cfg("b"))
    assert torch.equal(a.tensors, alone.memory_state(cfg("a")).tensors)
    assert not torch.equal(a.tensors, b.tensors)


def spy_read_states(monkeypatch) -> list:
    """Record the memory every read pass starts from."""
    seen, original = [], ChatBackend.decoder
    monkeypatch.setattr(ChatBackend, "decoder", lambda self, prompts, states, params: (
        seen.extend(states), original(self, prompts, states, params))[1])
    return seen


def test_a_call_reads_its_threads_memory(make_model, monkeypatch):
    model = make_model()
    read = spy_read_states(monkeypatch)
    model.invoke("My name is Ada.", config=cfg("t"))
    saved = model.memory_state(cfg("t"))
    model.invoke("Who am I?", config=cfg("t"))
    assert not read[0].tensors.any() and saved.tensors.any()
    assert torch.equal(read[1].tensors, saved.tensors)


def test_an_abandoned_stream_saves_nothing(make_model):
    model = make_model(max_tokens=30)
    stream = model.stream("My name is Ada.", config=cfg("t"))
    assert next(stream).content
    stream.close()
    assert model.memory_state(cfg("t")) is None


def test_agent_scope_starts_a_new_thread_from_the_agents_latest_state(make_model, monkeypatch):
    model = make_model(memory_scope="agent")
    read = spy_read_states(monkeypatch)
    t1 = model.invoke("My name is Ada.", config=cfg("t1", agent="ada")).response_metadata["memory"]
    head_t1 = model.store.load(model.scope(cfg("t1", agent="ada")).key)
    t2 = model.invoke("Who am I?", config=cfg("t2", agent="ada")).response_metadata["memory"]
    assert torch.equal(read[1].tensors, head_t1.state.tensors) and head_t1.state.tensors.any()
    assert t2["inherited_from"] == t1["checkpoint_id"] and t2["parent_checkpoint_id"] is None
    assert t2["tokens_written"] > t1["tokens_written"]  # t1's memory plus t2's turn
    model.invoke([HumanMessage("My name is Ada."), HumanMessage("Bye.")], config=cfg("t1", agent="ada"))
    assert torch.equal(read[2].tensors, head_t1.state.tensors)  # t1 goes on from its own head
    model.invoke("Hi.", config=cfg("t3", agent="ada"))
    latest = model.store.latest_for_agent("ada")
    assert latest.checkpoint_id == model.store.load(model.scope(cfg("t3", agent="ada")).key).checkpoint_id
    model.invoke("Hi.", config=cfg("t1", agent="bob"))  # another agent starts empty
    assert not read[4].tensors.any()
    model.forget(cfg("t2", agent="ada"))  # agent scope: every thread of the agent
    assert model.memory_state(cfg("t1", agent="ada")) is None
    assert model.memory_state(cfg("t9", agent="ada")) is None
    assert model.memory_state(cfg("t1", agent="bob")) is not None
    thread_model = make_model()  # thread scope: a new thread starts empty
    thread_model.invoke("My name is Ada.", config=cfg("t1", agent="ada"))
    assert thread_model.memory_state(cfg("t2", agent="ada")) is None


def test_forget_resets_the_memory(make_model):
    model = make_model()
    fresh = model.invoke(HISTORY, config=cfg("t"))
    model.invoke([*HISTORY, fresh, HumanMessage("Bye.")], config=cfg("t"))
    model.forget(cfg("t"))
    assert model.memory_state(cfg("t")) is None
    again = model.invoke(HISTORY, config=cfg("t"))
    assert again.content == fresh.content
    assert again.response_metadata["memory"]["tokens_written"] == \
        fresh.response_metadata["memory"]["tokens_written"]
    assert again.response_metadata["memory"]["parent_checkpoint_id"] is None


def test_checkpoints_chain_and_calls_without_a_key_save_nothing(make_model):
    model = make_model()
    one = model.invoke("Hi.", config=cfg("t")).response_metadata["memory"]
    two = model.invoke("Hi again.", config=cfg("t")).response_metadata["memory"]
    assert two["parent_checkpoint_id"] == one["checkpoint_id"] != two["checkpoint_id"]
    assert two["tokens_written"] > one["tokens_written"] > 0
    assert model.invoke("Hi.").response_metadata["memory"] is None
    assert model.store.keys() == [model.scope(cfg("t")).key]


def test_remember_writes_once(make_model):
    model = make_model()
    doc = "Ada's sister Lin lives in Porto."
    info = model.remember(doc, config=cfg("t"))
    tokens = len(encode_chat(model._backend().tokenizer, [{"role": "user", "content": doc}]).input_ids)
    assert info["tokens_written"] == tokens
    assert model.remember(doc, config=cfg("t"))["tokens_written"] == tokens  # already written
    reply = model.invoke("Where does Lin live?", config=cfg("t"))
    assert reply.response_metadata["memory"]["tokens_written"] > tokens


def test_batch_equals_sequential_calls(make_model):
    prompts = ["My name is Ada.", "Tell me about Paris", "b c d", "Hello"]
    configs = [cfg("a"), cfg("b"), cfg("a"), cfg(None)]  # thread a twice: two waves
    batched = make_model(max_tokens=24)
    results = batched.batch(prompts, configs)
    sequential = make_model(max_tokens=24)
    expected = [sequential.invoke(p, config=c) for p, c in zip(prompts, configs, strict=True)]
    assert [r.content for r in results] == [e.content for e in expected]
    for thread in ("a", "b"):
        got, want = batched.memory_state(cfg(thread)), sequential.memory_state(cfg(thread))
        assert torch.allclose(got.tensors, want.tensors, atol=1e-5)
        assert torch.equal(got.tokens_written, want.tokens_written)
    assert results[2].response_metadata["memory"]["parent_checkpoint_id"] == \
        results[0].response_metadata["memory"]["checkpoint_id"]


class RacingStore(InProcessMemoryStore):
    """Another writer saves between our load and our first save."""

    def __init__(self) -> None:
        super().__init__()
        self.rival = lambda: None
        self.raced = False

    def save(self, key, state, metadata, *, parent):
        if not self.raced:
            self.raced = True
            self.rival()
        return super().save(key, state, metadata, parent=parent)


def test_a_save_conflict_redoes_the_write_on_the_newer_head(make_model):
    store = RacingStore()
    model, rival = make_model(store=store), make_model(store=store)
    store.rival = lambda: rival.remember("Rival note.", config=cfg("t"))
    reply = model.invoke("My name is Ada.", config=cfg("t"))
    rival_tokens = make_model().remember("Rival note.", config=cfg("t"))["tokens_written"]
    solo = make_model().invoke("My name is Ada.", config=cfg("t")).response_metadata["memory"]
    memory = reply.response_metadata["memory"]
    assert store.raced and memory["parent_checkpoint_id"] is not None  # the rival's checkpoint
    assert memory["tokens_written"] == rival_tokens + solo["tokens_written"]
    assert int(model.memory_state(cfg("t")).tokens_written[0]) == memory["tokens_written"]

"""Decoding pieces: streamed text, sampling, batched decoding, turn planning and the store."""

from __future__ import annotations

import pytest
import torch

from agentmem.chat.memory_store import InProcessMemoryStore, MemoryKey
from agentmem.chat.turn_plan import ThreadLog, fingerprint, plan_turn
from agentmem.errors import EmptyConversationError, MemoryConflictError
from agentmem.model.decoding import SamplingParams, TextStream, pick_tokens
from tests.chat.conftest import cfg
from tests.chat.tiny import byte_tokenizer

TOK = byte_tokenizer()


def stream_text(text: str, **kwargs) -> tuple[list[str], TextStream]:
    s = TextStream(TOK, **kwargs)
    pieces = [s.push(t) for t in TOK(text, add_special_tokens=False)["input_ids"]]
    pieces.append(s.flush())
    return [p for p in pieces if p], s


def test_stop_strings_are_cut_and_never_emitted():
    pieces, s = stream_text("Hello you there", stop=["you"])
    assert "".join(pieces) == "Hello " and s.stopped and s.text == "Hello "
    assert all("y" not in p for p in pieces)  # "y" was held back until it could be ruled out
    pieces, s = stream_text("Hello yonder", stop=["you"])
    assert "".join(pieces) == "Hello yonder" and not s.stopped


def test_multibyte_characters_are_emitted_whole():
    pieces, _ = stream_text("你好 ok")
    assert "".join(pieces) == "你好 ok"
    assert all("\ufffd" not in p for p in pieces)


def test_hold_markers_hold_back_everything_after_them():
    pieces, s = stream_text("Sure <tool_call>{}", hold=["<tool_call>"])
    assert "".join(pieces) == "Sure " and s.text == "Sure <tool_call>{}"


def test_greedy_and_degenerate_sampling_agree():
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    greedy = pick_tokens(logits, SamplingParams(), [None] * 3)
    assert torch.equal(greedy, logits.argmax(-1))
    gens = [torch.Generator().manual_seed(1) for _ in range(3)]
    assert torch.equal(pick_tokens(logits, SamplingParams(temperature=1.0, top_k=1), gens), greedy)
    assert torch.equal(pick_tokens(logits, SamplingParams(temperature=1.0, top_p=1e-6), gens), greedy)
    assert torch.equal(pick_tokens(logits, SamplingParams(temperature=1.0, do_sample=False), gens),
                       greedy)


def test_seeded_sampling_is_reproducible(make_model):
    a = make_model(temperature=1.0, seed=3, max_tokens=16).invoke("Hello").content
    b = make_model(temperature=1.0, seed=3, max_tokens=16).invoke("Hello").content
    c = make_model(temperature=1.0, seed=4, max_tokens=16).invoke("Hello").content
    assert a == b != c


def test_stop_sequence_cuts_the_answer(make_model):
    full = make_model(max_tokens=30).invoke("My name is Ada.").content
    stop = full[8:10]
    assert len(full) > 12
    cut = make_model(max_tokens=30).invoke("My name is Ada.", stop=[stop])
    assert cut.content == full[: full.index(stop)]
    assert make_model(max_tokens=30, stop=[stop]).invoke("My name is Ada.").content == cut.content


def test_batched_decoding_with_left_padding_matches_single_rows(make_model):
    model = make_model(max_tokens=20)
    backend = model._backend()
    prompts = [backend.render_prompt([{"role": "user", "content": t}])
               for t in ("Hi", "Tell me about Paris, the capital of France")]
    assert len(prompts[0]) != len(prompts[1])
    params = SamplingParams(max_new_tokens=20)
    states = [backend.new_state(), backend.new_state()]

    def run(rows):
        decoder = backend.decoder([prompts[r] for r in rows], [states[r] for r in rows], params)
        out = [[] for _ in rows]
        for tokens in decoder:
            for b, t in enumerate(tokens):
                if t is not None:
                    out[b].append(t)
        return out

    together = run([0, 1])
    assert together == run([0]) + run([1])
    assert 0 < len(together[0]) < len(together[1])  # row 0 leaves the batch early


def test_plan_turn_window_and_new_messages():
    msgs = [{"role": "system", "content": "S"}] + [
        {"role": r, "content": f"{r}{i}"} for i in range(3) for r in ("user", "assistant")
    ] + [{"role": "user", "content": "now"}]
    log = ThreadLog()
    log.record([fingerprint(m) for m in msgs[1:5]], 0, [])  # u0 a0 u1 a1 written
    plan = plan_turn(msgs, log, window=2)
    assert [m["content"] for m in plan.visible] == ["S", "user2", "assistant2", "now"]
    assert [m["content"] for m in plan.new] == ["user2", "assistant2", "now"]
    assert [m["content"] for m in plan.prefix] == ["S", "user0", "assistant0", "user1", "assistant1"]
    assert [m["content"] for m in plan_turn(msgs, log, window=0).visible] == ["S", "now"]
    assert plan_turn(msgs, log, window=None).visible == msgs
    with pytest.raises(EmptyConversationError):
        plan_turn([], log, None)


def test_thread_log_matches_history_window_or_nothing():
    fps = [f"m{i}" for i in range(6)]
    log = ThreadLog()
    log.record(fps[:4], 0, [])
    assert log.unwritten_start(fps) == 4  # whole history resent
    assert log.unwritten_start(fps[2:]) == 2  # only the last messages resent
    assert log.unwritten_start(["new"]) == 0  # only the new message
    assert log.unwritten_start(fps[:3]) == 0  # a rewound history shares no suffix


def test_fingerprint_ignores_whitespace_and_call_ids_but_not_content():
    a = {"role": "assistant", "content": " Hi\n", "tool_calls": [{"name": "f", "args": {}, "id": "1"}]}
    b = {"role": "assistant", "content": "Hi", "tool_calls": [{"name": "f", "args": {}, "id": "2"}]}
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint({**b, "content": "Ho"})
    assert fingerprint(b) != fingerprint({**b, "role": "user"})


def test_in_memory_store_compare_and_set(make_model):
    model = make_model()
    model.invoke("Hi", config=cfg("t"))
    store, key = InProcessMemoryStore(), MemoryKey("a", "t")
    state = model.memory_state(cfg("t"))
    first = store.save(key, state, {"n": 1}, parent=None)
    with pytest.raises(MemoryConflictError):
        store.save(key, state, {"n": 2}, parent=None)
    loaded = store.load(key)
    loaded.state.tensors.zero_()  # a copy: the stored record is untouched
    assert store.load(key).state.tensors.abs().sum() > 0 and loaded.checkpoint_id == first
    assert store.save(key, state, {"n": 2}, parent=first) != first
    store.delete(key)
    assert store.load(key) is None


def test_waves_put_repeated_keys_in_later_waves():
    from agentmem.chat.turn_engine import Scope, waves

    a, b = MemoryKey("x", "a"), MemoryKey("x", "b")
    scopes = [Scope(a), Scope(b), Scope(a), Scope(None), Scope(a), Scope(None)]
    assert waves(scopes) == [[0, 1, 3, 5], [2], [4]]


def test_chat_model_is_exported_lazily():
    import subprocess
    import sys

    code = ("import sys, agentmem; assert 'langchain_core' not in sys.modules; "
            "from agentmem import DeltaMemChatModel; assert 'langchain_core' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_read_pass_reads_the_memory(make_model):
    from agentmem.model.state import MemoryState

    backend = make_model()._backend()
    prompt = backend.render_prompt([{"role": "user", "content": "Tell me about Paris"}])
    zero = backend.new_state()
    torch.manual_seed(0)
    noisy = MemoryState(torch.randn_like(zero.tensors) * 10, zero.tokens_written, zero.layer_indices,
                        zero.adapter_fingerprint, zero.backbone_id, zero.config)

    def tokens(state) -> list[int | None]:
        return [t[0] for t in backend.decoder([prompt], [state], SamplingParams(max_new_tokens=8))]

    assert tokens(zero) != tokens(noisy)

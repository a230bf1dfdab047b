"""Converted adapters compute what the authors' module computes: logits and states against the
float64 model of their module in ``official_reference`` (TSW, MSW, SSW; q/o and all four
corrections; writes on and off; their write schedule; their bf16 numerics)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from agentmem.model import decoding
from agentmem.model.adapters import load_adapter
from agentmem.model.backbones import load_backbone
from agentmem.model.chat_template import encode_chat
from agentmem.model.decoding import BatchDecoder, SamplingParams
from agentmem.model.history import write_history
from agentmem.model.official import convert_official
from agentmem.model.passes import read_logits, write_tokens
from tests.chat.tiny import byte_tokenizer, tiny_backbone_dir
from tests.conftest import tiny_model
from tests.model.official_reference import (
    Reference,
    message_ids,
    official_config,
    official_tensors,
    write_official_folder,
)

TEXT = ["My sister Lin lives in Porto and works as a glassblower.",
        "The dog is called Biscuit; he is four.", "Remember: the code is 4711."]
HISTORY = [{"role": "user", "content": "Hi! My sister Lin lives in Porto."},
           {"role": "assistant", "content": "Noted: Lin lives in Porto."},
           {"role": "user", "content": "My dog Biscuit is four years old."},
           {"role": "assistant", "content": "Biscuit sounds lovely."}]
QUESTION = [{"role": "user", "content": "Where does Lin live?"}]
FP32_TOL = 1e-5  # fp32 implementation vs float64 reference (measured ≤ 1e-6)


@functools.cache
def backbone_dir(model_type: str) -> str:
    """Tiny Qwen3 (q/k norms) or SmolLM3 (its second layer without RoPE) with a chat template."""
    if model_type == "qwen3":
        return tiny_backbone_dir("qwen3")
    tok = byte_tokenizer()
    model = tiny_model("smollm3", vocab_size=len(tok), no_rope_layers=[1, 0])
    folder = Path(tempfile.mkdtemp(prefix="agentmem-tiny-smollm3-nope-"))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def pair(tmp_path, model_type, *, numerics="fp32", write_context="turn", message_span="template",
         generation_writes=False, dtype=torch.float32, **options):
    """(our attached model, the float64 reference of theirs, tokenizer) for one adapter."""
    folder = backbone_dir(model_type)
    model, tok = load_backbone(folder, dtype=dtype)
    config = official_config(**options)
    tensors = official_tensors(model, config, seed=1)
    src = write_official_folder(tmp_path / "src", config, tensors)
    out = convert_official(src, tmp_path / "out", model, numerics=numerics,
                           write_context=write_context, message_span=message_span,
                           generation_writes=generation_writes)
    ref = Reference(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64), tensors,
                    config, rounding=torch.bfloat16 if numerics == "bf16" else None)
    return load_adapter(model, out), ref, tok


def ids_of(tok, text: str) -> torch.Tensor:
    return torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


CASES = {
    "tsw-qo": {"delta_heads": ["q", "o"]},
    "msw-qo": {"delta_heads": ["q", "o"], "num_state_heads": 4, "rank": 4},
    "tsw-qkvo": {},
    "msw-qkvo": {"num_state_heads": 2, "rank": 4},
}


@pytest.mark.parametrize("model_type", ["qwen3", "smollm3"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_token_writes_and_reads_match_their_module(tmp_path, model_type, case):
    dm, ref, tok = pair(tmp_path, model_type, **CASES[case])
    state = None
    for text in TEXT:  # writes on: logits of the writing pass, then the state it leaves
        ids = ids_of(tok, text)
        with torch.no_grad(), dm.memory(state, write=True) as cache:
            ours = dm.model(ids).logits
        state = dm.to_state(cache)
        theirs = ref(ids, write=True)
        assert diff(ours, theirs) < FP32_TOL and diff(state.tensors, ref.states()) < FP32_TOL
    ids = ids_of(tok, "Where does Lin live, and what is the code?")
    ours, theirs = read_logits(dm, ids, state), ref(ids, write=False)  # writes off
    assert diff(ours, theirs) < FP32_TOL and diff(state.tensors, ref.states()) < FP32_TOL
    with torch.no_grad():
        frozen = dm.model(ids).logits
    assert diff(frozen, theirs) > 0.05  # the memory matters: agreement is not trivial


@pytest.mark.parametrize("model_type", ["qwen3", "smollm3"])
@pytest.mark.parametrize("options", [{"delta_heads": ["q", "o"]}, {"num_state_heads": 2, "rank": 4}],
                         ids=["ssw-qo", "msw-ssw-qkvo"])
def test_message_writes_match_their_segments(tmp_path, model_type, options):
    dm, ref, tok = pair(tmp_path, model_type, memory_write_granularity="message_mean", **options)
    system, state = [{"role": "system", "content": "Be brief."}], None
    for chat in (system + HISTORY[:2], system + HISTORY[2:]):
        enc = encode_chat(tok, chat, span="template")
        ids, owner = message_ids(tok, chat)
        assert enc.input_ids == ids
        segments = [(owner.index(j), len(owner) - owner[::-1].index(j)) for j in sorted(set(owner) - {-1})]
        assert enc.written_spans() == segments  # system span left out, as theirs
        x = torch.tensor([ids])
        with torch.no_grad(), dm.memory(state, write=True, spans=[enc.written_spans()]) as cache:
            ours = dm.model(x).logits
        state = dm.to_state(cache)
        theirs = ref(x, write=True, ids=owner)
        assert diff(ours, theirs) < FP32_TOL and diff(state.tensors, ref.states()) < FP32_TOL
    assert ref.states().abs().max() > 0.1


@pytest.mark.parametrize("granularity", ["token", "message_mean"])
def test_history_written_as_one_sequence_matches_theirs(tmp_path, granularity):
    """Their evaluation writes the history in one pass (writes on), then reads the question with
    writes off; ``write_context="history"`` does the same."""
    dm, ref, tok = pair(tmp_path, "qwen3", write_context="history", delta_heads=["q", "o"],
                        memory_write_granularity=granularity)
    state = write_history(dm, tok, HISTORY)
    ids, owner = message_ids(tok, HISTORY)
    ref(torch.tensor([ids]), write=True, ids=owner if granularity == "message_mean" else None)
    assert diff(state.tensors, ref.states()) < FP32_TOL
    prompt = torch.tensor([tok.apply_chat_template(QUESTION, add_generation_prompt=True,
                                                   tokenize=True, return_dict=False)])
    assert diff(read_logits(dm, prompt, state), ref(prompt, write=False)) < FP32_TOL
    from dataclasses import replace

    from agentmem.model.attach import attach_delta_mem

    dm.detach()
    turn = attach_delta_mem(dm.model, replace(dm.config, write_context="turn"))
    turn.load_adapter_state_dict(dm.adapter_state_dict())
    assert diff(write_history(turn, tok, HISTORY).tensors, state.tensors) > 1e-3  # it matters


def test_bf16_numerics_match_their_bf16_module(tmp_path):
    """bf16 numerics round where their bf16 module rounds: states agree exactly with the reference
    that rounds the same way, and differ from our fp32 numerics by bf16 rounding."""
    dm, ref, tok = pair(tmp_path / "bf16", "qwen3", numerics="bf16", delta_heads=["q", "o"])
    fp32, exact, _ = pair(tmp_path / "fp32", "qwen3", delta_heads=["q", "o"])
    state = state32 = None
    for text in TEXT:  # three passes: the state is kept in bf16 between them
        ids = ids_of(tok, text)
        state, state32 = write_tokens(dm, ids, state), write_tokens(fp32, ids, state32)
        ref(ids, write=True)
        exact(ids, write=True)
        assert torch.equal(state.tensors, state.tensors.bfloat16().float())
        assert (state.tensors.double() - ref.states()).abs().mean() < 1e-5
        assert (state32.tensors.double() - ref.states()).abs().mean() > 1e-4
        assert diff(state32.tensors, exact.states()) < FP32_TOL
    ids = ids_of(tok, "Where does Lin live?")
    assert diff(read_logits(dm, ids, state), ref(ids, write=False)) < 1e-3
    assert diff(read_logits(fp32, ids, state32), exact(ids, write=False)) < FP32_TOL


def test_bf16_numerics_on_a_bf16_backbone(tmp_path):
    """As served: a bf16 backbone, the state bf16 between passes, close to the float64 reference
    of their bf16 module (the backbone's own bf16 rounding dominates the difference)."""
    dm, ref, tok = pair(tmp_path, "qwen3", numerics="bf16", dtype=torch.bfloat16,
                        delta_heads=["q", "o"])
    state = None
    for text in TEXT:
        state = write_tokens(dm, ids_of(tok, text), state)
        ref(ids_of(tok, text), write=True)
    assert state.tensors.dtype == torch.float32
    assert torch.equal(state.tensors, state.tensors.bfloat16().float())
    assert diff(state.tensors, ref.states()) < 0.05
    ids = ids_of(tok, "Where does Lin live?")
    assert diff(read_logits(dm, ids, state), ref(ids, write=False)) < 0.1


def decode_logits(dm, prompts, monkeypatch, steps=6, write=True):
    """Greedy decoding of ``prompts`` from an empty memory: (tokens per row, logits per step)."""
    seen, pick = [], decoding.pick_tokens

    def record(logits, params, generators):
        seen.append(logits.clone())
        return pick(logits, params, generators)

    monkeypatch.setattr(decoding, "pick_tokens", record)
    pad = 40  # a byte with a non-zero embedding: padding that wrote would change the memory
    decoder = BatchDecoder(dm.model, dm, prompts, dm.new_state(len(prompts)),
                           SamplingParams(max_new_tokens=steps), (), pad, write=write)
    tokens = [[t for t in step] for step in decoder]
    return [list(row) for row in zip(*tokens, strict=True)], torch.stack(seen, dim=1)


def test_generation_writes_match_their_chat_session(tmp_path, monkeypatch):
    """Their session writes the prompt and each generated token before the next one is decoded.
    Decoding with writes gives at every step the logits of their module over the prompt and the
    tokens so far, written as read (the reference: one writing pass, float64)."""
    dm, ref, tok = pair(tmp_path, "qwen3", write_context="history", generation_writes=True,
                        delta_heads=["q", "o"])
    prompt = tok.apply_chat_template(HISTORY + QUESTION, add_generation_prompt=True,
                                     tokenize=True, return_dict=False)
    (generated,), logits = decode_logits(dm, [prompt], monkeypatch)
    theirs = ref(torch.tensor([prompt + generated[:-1]]), write=True)[0, len(prompt) - 1:]
    assert diff(logits[0], theirs) < FP32_TOL
    _, read_only = decode_logits(dm, [prompt], monkeypatch, write=False)
    assert diff(read_only[0, 0], theirs[0]) > 0.05  # writing while reading matters


def test_generation_writes_in_a_batch_leave_padding_unwritten(tmp_path, monkeypatch):
    dm, _, tok = pair(tmp_path, "smollm3", write_context="history", generation_writes=True,
                      num_state_heads=2, rank=4)
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXT[:2]]
    tokens, logits = decode_logits(dm, prompts, monkeypatch)
    for b, prompt in enumerate(prompts):
        alone_tokens, alone = decode_logits(dm, [prompt], monkeypatch)
        assert tokens[b] == alone_tokens[0] and diff(logits[b], alone[0]) < FP32_TOL

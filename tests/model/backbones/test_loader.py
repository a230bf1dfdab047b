"""Offline backbone resolution; the real default backbone where realism matters."""

from __future__ import annotations

import pytest
import torch

from agentmem import BackboneError, DeltaMemConfig
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import backbone_id, cache_dir, load_backbone, resolve_backbone
from agentmem.model.chat_template import encode_chat
from agentmem.model.passes import write_chat
from tests.conftest import tiny_model


@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-135M-Instruct", "no-such-backbone"])
def test_unknown_names_never_download(name):
    with pytest.raises(BackboneError, match="never downloads"):
        resolve_backbone(name)


def test_cache_dir_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv("AGENTMEM_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path


def test_local_folder_loads(tmp_path):
    model = tiny_model("qwen2")
    model.save_pretrained(tmp_path / "m")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(128)} | {"[UNK]": 0}, "[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(tmp_path / "m")
    loaded, _ = load_backbone(str(tmp_path / "m"))
    x = torch.randint(0, 128, (1, 9))
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
    assert backbone_id(loaded) == backbone_id(model)
    assert backbone_id(loaded.to(torch.bfloat16)) == backbone_id(model)  # dtype-independent id
    assert backbone_id(tiny_model("qwen2", seed=3)) != backbone_id(model)


@pytest.mark.slow
def test_default_backbone_zero_state_equals_frozen(default_backbone):
    model, tok = default_backbone
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    with torch.no_grad():
        ref = model(**enc).logits
        dm = attach_delta_mem(model)
        try:
            with dm.memory():
                out = model(**enc).logits
            with dm.memory(write=True):
                gen = model.generate(**enc, max_new_tokens=8, do_sample=False)
        finally:
            dm.detach()
    assert (out - ref).abs().max().item() <= 1e-5
    assert "Paris" in tok.decode(gen[0, enc["input_ids"].shape[1]:])


@pytest.mark.slow
def test_chat_spans_cover_exactly_the_message_contents(default_tokenizer):
    tok = default_tokenizer
    history = [{"role": "user", "content": "My sister Lin lives in Porto."},
               {"role": "assistant", "content": "Noted: Lin lives in Porto."}]
    turn = [{"role": "user", "content": "My dog is Biscuit."},
            {"role": "assistant", "content": "Biscuit is a fine name!"}]
    enc = encode_chat(tok, turn, prefix=history)
    assert [tok.decode(enc.input_ids[s:e]).strip() for s, e in enc.spans] == \
        [m["content"] for m in turn]
    rendered = tok.apply_chat_template(history + turn, tokenize=False)
    assert rendered.endswith(tok.decode(enc.input_ids))


@pytest.mark.slow
def test_default_backbone_ssw_turns(default_backbone):
    model, tok = default_backbone
    dm = attach_delta_mem(model, DeltaMemConfig(write_mode="message"))
    try:
        turn = [{"role": "user", "content": "I live in Lyon."},
                {"role": "assistant", "content": "Lyon is lovely."}]
        state = write_chat(dm, tok, turn)
        state = write_chat(dm, tok, turn, state, prefix=turn)
    finally:
        dm.detach()
    assert state.tokens_written.item() == 2 * sum(e - s for s, e in encode_chat(tok, turn).spans)
    assert state.is_finite() and state.tensors.abs().sum() > 0

"""MemoryState bytes, and continuing from a state equals never having stopped."""

from __future__ import annotations

import pytest
import torch

from agentmem import DeltaMemConfig, MemoryState, StateFormatError, StateMismatchError
from agentmem.model.attach import attach_delta_mem
from tests.conftest import tiny_model


def state(seed=0, B=1, L=3, N=1, r=8, fp="fp-a", bb="bb-1"):
    g = torch.Generator().manual_seed(seed)
    return MemoryState(torch.randn(B, L, N, r, r, generator=g), torch.arange(B) + 5,
                       tuple(range(L)), fp, bb, DeltaMemConfig(rank=r, num_states=N))


def test_bytes_round_trip_is_bit_exact():
    s = state(B=2, N=4)
    back = MemoryState.from_bytes(s.to_bytes())
    assert torch.equal(back.tensors, s.tensors) and torch.equal(back.tokens_written,
                                                                s.tokens_written)
    assert (back.layer_indices, back.adapter_fingerprint, back.backbone_id, back.config) == \
        (s.layer_indices, s.adapter_fingerprint, s.backbone_id, s.config)


@pytest.mark.parametrize("mutate", [
    lambda b: b[:-3], lambda b: b"", lambda b: b"\x00" * 8 + b[8:], lambda b: b"junk" * 40,
])
def test_corrupt_bytes_raise_typed_error(mutate):
    with pytest.raises(StateFormatError):
        MemoryState.from_bytes(mutate(state().to_bytes()))


def test_foreign_safetensors_refused():
    from safetensors.torch import save
    with pytest.raises(StateFormatError):
        MemoryState.from_bytes(save({"state": torch.zeros(1, 1, 1, 8, 8)}))


def test_shape_and_dtype_validated():
    with pytest.raises(StateFormatError, match="float32"):
        MemoryState(torch.zeros(1, 2, 1, 8, 8, dtype=torch.float64), torch.zeros(1).long(),
                    (0, 1), "f", "b", DeltaMemConfig())
    with pytest.raises(StateFormatError, match=r"\[B, L, N, r, r\]"):
        MemoryState(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1).long(), (0, 1), "f", "b",
                    DeltaMemConfig())


def test_compatibility_checks():
    s = state()
    s.check_compatible("fp-a", "bb-1", (3, 1, 8, 8))
    for args in [("fp-b", "bb-1"), ("fp-a", "bb-2"), ("fp-a", "bb-1", (2, 1, 8, 8))]:
        with pytest.raises(StateMismatchError):
            s.check_compatible(*args)


def test_row_and_stack():
    s = state(B=3)
    assert torch.equal(MemoryState.stack([s.row(0), s.row(1), s.row(2)]).tensors, s.tensors)
    picked = s.rows([2, 0, 0, 1])
    assert torch.equal(picked.tensors,
                       MemoryState.stack([s.row(2), s.row(0), s.row(0), s.row(1)]).tensors)
    assert picked.tokens_written.tolist() == [s.tokens_written[i].item() for i in (2, 0, 0, 1)]
    with pytest.raises(StateMismatchError):
        MemoryState.stack([s.row(0), state(fp="other")])


def test_state_from_another_adapter_or_backbone_is_refused():
    dm_a = attach_delta_mem(tiny_model("llama", seed=0))
    dm_b = attach_delta_mem(tiny_model("llama", seed=1))  # other backbone weights
    s = dm_a.new_state()
    with pytest.raises(StateMismatchError, match="backbone"), dm_b.memory(s):
        pass
    model = tiny_model("llama", seed=0)
    torch.manual_seed(7)
    dm_c = attach_delta_mem(model)  # same backbone, differently initialised adapter
    with pytest.raises(StateMismatchError, match="adapter"), dm_c.memory(s):
        pass
    dm_r16 = attach_delta_mem(tiny_model("llama", seed=0), DeltaMemConfig(rank=16))
    with pytest.raises(StateMismatchError):
        dm_r16.check_state(s)


def test_write_a_then_b_equals_write_a_plus_b_through_bytes():
    """TSW: write(A), save → load, write(B) continuing the KV cache == write(A+B)."""
    model = tiny_model("llama")
    dm = attach_delta_mem(model)
    x = torch.randint(0, 128, (2, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        with dm.memory(batch_size=2, write=True) as c:
            model(x)
        whole = dm.to_state(c)
        with dm.memory(batch_size=2, write=True) as c:
            kv = model(x[:, :13], use_cache=True).past_key_values
        restored = MemoryState.from_bytes(dm.to_state(c).to_bytes())
        with dm.memory(restored, write=True) as c:
            model(x[:, 13:], cache=kv, use_cache=True)
        split = dm.to_state(c)
    assert (split.tensors - whole.tensors).abs().max() <= 1e-5
    assert split.tokens_written.tolist() == whole.tokens_written.tolist() == [30, 30]


def test_padding_never_writes():
    model = tiny_model("llama")
    dm = attach_delta_mem(model)
    x = torch.randint(3, 128, (1, 12), generator=torch.Generator().manual_seed(2))
    padded = torch.cat((torch.zeros(1, 4, dtype=torch.long), x), 1)
    mask = torch.cat((torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 12, dtype=torch.long)), 1)
    with torch.no_grad():
        with dm.memory(write=True) as c:
            model(x)
        alone = dm.to_state(c)
        with dm.memory(write=True, attention_mask=mask) as c:
            model(padded, attention_mask=mask)
        left_padded = dm.to_state(c)
    assert left_padded.tokens_written.item() == 12
    assert (left_padded.tensors - alone.tensors).abs().max() <= 1e-5

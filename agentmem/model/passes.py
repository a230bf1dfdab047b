"""Write and read passes over an attached backbone (docs/design.md#the-conversation-protocol)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from agentmem.model.attach import DeltaMemModel
from agentmem.model.chat_template import encode_chat
from agentmem.model.state import MemoryState


@torch.no_grad()
def write_tokens(dm: DeltaMemModel, input_ids: Tensor, state: MemoryState | None = None, *,
                 attention_mask: Tensor | None = None,
                 spans: list[list[tuple[int, int]]] | None = None) -> MemoryState:
    """One write pass over ``input_ids`` [B, T]; returns the new state.

    Only the decoder runs (no LM head): a write pass needs no logits. With message-level writes
    and no span to write (e.g. a reply under write_policy "user") nothing runs and ``state``
    comes back unchanged.
    """
    if dm.config.write_mode == "message" and spans is not None and not any(spans):
        return state if state is not None else dm.new_state(input_ids.shape[0])
    device = dm.model.device
    input_ids = input_ids.to(device)
    mask = attention_mask.to(device) if attention_mask is not None else None
    with dm.memory(state, write=True, batch_size=input_ids.shape[0], attention_mask=mask,
                   spans=spans) as cache:
        dm.model.get_decoder()(input_ids=input_ids, attention_mask=mask, use_cache=False)
    return dm.to_state(cache)


def write_chat(dm: DeltaMemModel, tokenizer: Any, messages: list[dict[str, str]],
               state: MemoryState | None = None, *,
               prefix: list[dict[str, str]] | None = None) -> MemoryState:
    """Write one turn's messages (rendered after ``prefix``) into ``state``.

    Token writes (TSW) write every rendered token; message writes (SSW) write each message's
    span (content, or template span: ``DeltaMemConfig.message_span``) once. This is one turn's
    pass whatever the adapter's ``write_context``: `agentmem.model.history.write_history`
    writes a whole history as the adapter's config says.
    """
    enc = encode_chat(tokenizer, messages, prefix=prefix, span=dm.config.message_span)
    ids = torch.tensor([enc.input_ids])
    return write_tokens(dm, ids, state, spans=[enc.written_spans(dm.config.write_policy)])


@torch.no_grad()
def read_logits(dm: DeltaMemModel, input_ids: Tensor, state: MemoryState | None = None, *,
                attention_mask: Tensor | None = None) -> Tensor:
    """Logits [B, T, V] of a read pass (writes off) over ``input_ids`` with ``state``."""
    device = dm.model.device
    with dm.memory(state, batch_size=input_ids.shape[0]):
        mask = attention_mask.to(device) if attention_mask is not None else None
        return dm.model(input_ids=input_ids.to(device), attention_mask=mask).logits

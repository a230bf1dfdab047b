"""Memory-agent graphs with an adapter that writes the whole conversation as one sequence (a
converted adapter of the δ-mem authors): every turn sends it the whole conversation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from langchain_core.messages import AIMessage

from agentmem.model.backbones import load_backbone
from agentmem.model.history import write_history
from agentmem.model.official import convert_official
from graphs import MemoryContext, build_memory_agent, sqlite_checkpointer
from tests.graphs.conftest import say, written_state
from tests.model.official_reference import official_config, official_tensors, write_official_folder


@pytest.fixture
def adapter(tiny_backbone: str, tmp_path: Path) -> str:
    model = load_backbone(tiny_backbone)[0]
    config = official_config(delta_heads=["q", "o"])
    src = write_official_folder(tmp_path / "src", config, official_tensors(model, config))
    return str(convert_official(src, tmp_path / "converted", model, numerics="fp32"))


def test_each_turn_writes_the_whole_conversation(tiny_backbone, adapter, db):
    ctx = MemoryContext.open(str(db), backbone=tiny_backbone, adapter=adapter, max_new_tokens=4,
                             device="cpu", window=2)
    ctx.repository.setup()
    assert ctx.whole_conversation and ctx.model.window == 2
    saver = sqlite_checkpointer(db)
    graph = build_memory_agent(saver, context=ctx)
    for text in ["My sister Lin lives in Porto.", "My dog is Biscuit.", "I work in Lyon.",
                 "Where does Lin live?"]:  # more turns than the window: no IncompleteHistoryError
        values = say(graph, "t", text)
    history = [{"role": "assistant" if isinstance(m, AIMessage) else "user", "content": m.content}
               for m in values["messages"]]
    backend = ctx.model._backend()
    whole = write_history(backend.dm, backend.tokenizer, history)
    assert torch.equal(written_state(ctx, values).tensors, whole.tensors)
    saver.conn.close()
    ctx.repository.close()


def test_agent_scope_is_refused(tiny_backbone, adapter, db):
    with pytest.raises(ValueError, match="scope='thread'"):
        MemoryContext.open(str(db), backbone=tiny_backbone, adapter=adapter, scope="agent")


def test_an_adapter_that_writes_while_answering_shows_everything(tiny_backbone, db, tmp_path):
    model = load_backbone(tiny_backbone)[0]
    config = official_config(delta_heads=["q", "o"])
    src = write_official_folder(tmp_path / "src2", config, official_tensors(model, config))
    adapter = convert_official(src, tmp_path / "session", model, generation_writes=True)
    ctx = MemoryContext.open(str(db), backbone=tiny_backbone, adapter=str(adapter), window=2)
    assert ctx.whole_conversation and ctx.model.window is None

"""agentmem 0.1's import paths and names keep working for one release, with a DeprecationWarning,
and resolve to the very objects of the new layout."""

from __future__ import annotations

import importlib
import sys

import pytest

from agentmem._deprecated import MOVED


def _fresh(name: str):
    sys.modules.pop(name, None)
    return importlib.import_module(name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_warn_and_forward(old):
    with pytest.warns(DeprecationWarning, match=old.replace(".", r"\.")):
        alias = _fresh(old)
    new = importlib.import_module(MOVED[old][0])
    public = [n for n in getattr(new, "__all__", dir(new)) if not n.startswith("_")]
    assert public, new.__name__
    for name in public:
        assert getattr(alias, name) is getattr(new, name)


def test_split_protocol_module_finds_every_old_name():
    with pytest.warns(DeprecationWarning):
        protocol = _fresh("agentmem.protocol")
    from agentmem.eval.regimes import generate_answer
    from agentmem.model.history import write_history
    from agentmem.model.prompts import read_prompt
    from agentmem.model.scoring import score_candidates

    assert protocol.write_history is write_history
    assert protocol.read_prompt is read_prompt
    assert protocol.score_candidates is score_candidates
    assert protocol.generate_answer is generate_answer
    with pytest.raises(AttributeError):
        protocol.no_such_name  # noqa: B018


def test_old_submodule_of_a_moved_package():
    with pytest.warns(DeprecationWarning):
        loader = _fresh("agentmem.backbones.loader")
    from agentmem.model.backbones.loader import load_backbone

    assert loader.load_backbone is load_backbone


def test_renamed_classes_warn_and_resolve():
    import agentmem
    import store
    from agentmem.chat.memory_store import InProcessMemoryStore
    from agentmem.model.pass_context import PassContext
    from store import MemoryCheckpoint

    with pytest.warns(DeprecationWarning, match="InProcessMemoryStore"):
        assert agentmem.InMemoryStore is InProcessMemoryStore
    with pytest.warns(DeprecationWarning, match="MemoryCheckpoint"):
        assert store.Checkpoint is MemoryCheckpoint
    with pytest.warns(DeprecationWarning):
        runtime = _fresh("agentmem.runtime")
    with pytest.warns(DeprecationWarning, match="PassContext"):
        assert runtime.Runtime is PassContext


def test_new_paths_do_not_warn(recwarn):
    for name in ("agentmem.model.attach", "agentmem.chat.memory_store", "agentmem.eval.regimes"):
        importlib.import_module(name)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)
                and "agentmem" in str(w.message)]

"""Import paths and names of agentmem 0.1, kept working for one release with a DeprecationWarning.

The flat modules of 0.1 moved into role packages (docs/design.md#architecture). ``import
agentmem.inject`` still works: a finder on ``sys.meta_path`` answers each old path with a small
module that forwards attribute access to the new one(s) and warns once, on import. Renamed
classes (``InMemoryStore``, ``Runtime``, ``Checkpoint``) resolve to their new names the same way.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

REMOVAL = "agentmem 0.3"

# old module → the module(s) that now hold its names (searched in order)
MOVED: dict[str, tuple[str, ...]] = {
    "agentmem.adapters": ("agentmem.model.adapters",),
    "agentmem.backbones": ("agentmem.model.backbones",),
    "agentmem.backbones.loader": ("agentmem.model.backbones.loader",),
    "agentmem.backbones.table": ("agentmem.model.backbones.table",),
    "agentmem.backend": ("agentmem.chat.shared_backbone",),
    "agentmem.calls": ("agentmem.chat.call",),
    "agentmem.chat_model": ("agentmem.chat.chat_model",),
    "agentmem.chat_template": ("agentmem.model.chat_template",),
    "agentmem.config": ("agentmem.model.config",),
    "agentmem.conversation": ("agentmem.chat.turn_plan",),
    "agentmem.devices": ("agentmem.model.devices",),
    "agentmem.engine": ("agentmem.model.passes",),
    "agentmem.eval_report": ("agentmem.eval.report",),
    "agentmem.evaluate": ("agentmem.eval.regimes",),
    "agentmem.generation": ("agentmem.model.decoding",),
    "agentmem.inject": ("agentmem.model.attach",),
    "agentmem.layer": ("agentmem.model.layer",),
    "agentmem.memory_store": ("agentmem.chat.memory_store",),
    "agentmem.metrics": ("agentmem.eval.metrics",),
    "agentmem.protocol": ("agentmem.model.history", "agentmem.model.prompts",
                          "agentmem.model.scoring", "agentmem.eval.regimes"),
    "agentmem.reply_harm": ("agentmem.eval.reply_harm", "agentmem.model.scoring",
                            "agentmem.model.decoding"),
    "agentmem.runtime": ("agentmem.model.pass_context",),
    "agentmem.state": ("agentmem.model.state",),
    "agentmem.tools": ("agentmem.chat.tools",),
    "agentmem.turns": ("agentmem.chat.turn_engine",),
}

# old class name → new name, per new module
RENAMED: dict[str, dict[str, str]] = {
    "agentmem.chat.memory_store": {"InMemoryStore": "InProcessMemoryStore"},
    "agentmem.model.pass_context": {"Runtime": "PassContext"},
    "agentmem.chat.turn_engine": {"Checkpoint": "TurnCheckpoint"},
}


def renamed(module: str, name: str, new: str, value: Any) -> Any:
    """``value`` (the object now called ``new``), after a DeprecationWarning for the old name."""
    warnings.warn(f"{module}.{name} is now {new}; the old name is removed in {REMOVAL}",
                  DeprecationWarning, stacklevel=3)
    return value


def _forwarder(old: str, targets: tuple[str, ...]) -> types.ModuleType:
    modules = [importlib.import_module(t) for t in targets]
    alias = types.ModuleType(old, f"Deprecated alias of {', '.join(targets)}.")

    def __getattr__(name: str) -> Any:
        for m in modules:
            if hasattr(m, name):
                return getattr(m, name)
            new = RENAMED.get(m.__name__, {}).get(name)
            if new is not None:
                return renamed(old, name, new, getattr(m, new))
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({n for m in modules for n in dir(m)})

    alias.__getattr__ = __getattr__  # type: ignore[method-assign]
    alias.__dir__ = __dir__  # type: ignore[method-assign]
    if len(targets) == 1 and hasattr(modules[0], "__path__"):
        alias.__path__ = []  # a package: its old submodules resolve through this finder too
    return alias


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        targets = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {' / '.join(targets)}; the old path is removed in "
                      f"{REMOVAL}", DeprecationWarning, stacklevel=2)
        return _forwarder(spec.name, targets)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())

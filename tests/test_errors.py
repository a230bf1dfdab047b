"""Optional dependencies missing at run time give a typed error that names the extra to install."""

from __future__ import annotations

import pytest

from agentmem.errors import AgentMemError, MissingDependencyError, require


def test_require_returns_an_installed_module():
    import json

    assert require("json", "train") is json


def test_require_names_the_extra_when_the_module_is_missing():
    with pytest.raises(MissingDependencyError, match=r"agentmem\[postgres\]") as e:
        require("agentmem_no_such_module", "postgres")
    assert isinstance(e.value, ImportError) and isinstance(e.value, AgentMemError)

"""Fixtures of the transcript tests: the graph tests' tiny chat backbone and one torch thread."""

from __future__ import annotations

from tests.graphs.conftest import one_torch_thread, tiny_backbone  # noqa: F401  (shared fixtures)

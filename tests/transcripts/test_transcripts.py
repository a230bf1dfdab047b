"""Plays every transcript under tests/transcripts/ through the compiled graph (see README.md)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from agentmem.model.adapters import shipped_adapter
from agentmem.model.backbones import DEFAULT_BACKBONE
from tests.transcripts.harness import PG_ENV, Harness, Target, context_factory
from tests.transcripts.player import Player, Transcript

HERE = Path(__file__).parent
TRANSCRIPTS = sorted(HERE.glob("*.toml"))


def _cases() -> list:
    cases = []
    for path in TRANSCRIPTS:
        t = Transcript.load(path)
        marks = [pytest.mark.slow] if t.backbone == "default" else []
        for mode in t.modes:
            for db in t.databases:
                cases.append(pytest.param(t, mode, db, id=f"{t.name}-{mode}-{db}", marks=marks))
    return cases


def test_there_are_enough_transcripts():
    assert len(TRANSCRIPTS) >= 10
    names = {p.stem for p in TRANSCRIPTS}
    assert all(Transcript.load(p).steps for p in TRANSCRIPTS), names


def _backbone(t: Transcript, tiny: str) -> str:
    if t.backbone == "tiny":
        return tiny
    if t.requires == "trained-adapter" and shipped_adapter(DEFAULT_BACKBONE) is None:
        pytest.skip("its memory expectations need a trained adapter; none ships for "
                    f"{DEFAULT_BACKBONE} yet")
    return DEFAULT_BACKBONE


@pytest.mark.parametrize(("transcript", "mode", "database"), _cases())
def test_transcript(transcript: Transcript, mode: str, database: str, tiny_backbone: str,
                    tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if transcript.requires == "trained-adapter" and shipped_adapter(DEFAULT_BACKBONE) is not None:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=(
            "the shipped adapter recalls through memory alone only values seen in training (bAbI "
            "locations); on open-vocabulary facts like this transcript's its "
            "memory-only accuracy is at chance and the swap test shows no recall (synthetic test "
            "split, see its model card); strict, so this fails loudly once an adapter that "
            "recalls unseen values ships")))
    if database == "postgresql" and not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL cases need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    torch.manual_seed(0)
    target = Target.make(database, tmp_path)
    make_context = context_factory(transcript.context, _backbone(transcript, tiny_backbone))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "no δ-mem adapter ships")
        harness = Harness(target, mode, transcript.graph == "router", make_context)
        try:
            Player(harness).play(transcript)
        finally:
            harness.shutdown()
            target.drop()

"""The candidate adapter in candidates/ recalls through memory alone on bAbI-qa1-style stories
written here (not the bAbI files), with the swap test as the proof that the written value, not a
prior, decides the answer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agentmem.adapters import load_adapter, read_adapter
from agentmem.backbones import load_backbone
from agentmem.protocol import read_prompt, score_candidates, write_history

CANDIDATE = Path(__file__).parents[2] / "candidates" / "smollm2-135m-instruct-qa1-recall"
PEOPLE = ["Mary", "John", "Sandra", "Daniel"]
PLACES = ["bathroom", "bedroom", "garden", "hallway", "kitchen", "office"]
VERBS = ["moved to", "went to", "journeyed to", "travelled to", "went back to"]


def story(rng: random.Random) -> tuple[list[dict[str, str]], str, int, str]:
    """A qa1-style story, the person asked about, the index of the line that answers, the answer."""
    lines = [(p, rng.choice(VERBS), rng.choice(PLACES)) for p in rng.sample(PEOPLE, 4)]
    lines += [(rng.choice(PEOPLE), rng.choice(VERBS), rng.choice(PLACES)) for _ in range(2)]
    who = rng.choice([p for p, _, _ in lines])
    last = max(i for i, (p, _, _) in enumerate(lines) if p == who)
    history = []
    for p, verb, place in lines:
        history += [{"role": "user", "content": f"{p} {verb} the {place}."},
                    {"role": "assistant", "content": "OK."}]
    return history, who, last, lines[last][2]


def predict(dm, tok, history, who):
    state = write_history(dm, tok, history)
    _, mean = score_candidates(dm, tok, read_prompt("memory-only", history, f"Where is {who}?"),
                               PLACES, state)
    return PLACES[int(mean.argmax())]


@pytest.mark.slow
def test_candidate_recalls_and_follows_swapped_values():
    read_adapter(CANDIDATE)  # checksum / fingerprint checked before use
    model, tok = load_backbone()
    dm = load_adapter(model, CANDIDATE)
    rng = random.Random(0)
    n, correct, follow, base = 24, 0, 0, 0
    for _ in range(n):
        history, who, line, answer = story(rng)
        other = rng.choice([p for p in PLACES if p != answer])
        swapped = [dict(m) for m in history]
        swapped[2 * line]["content"] = swapped[2 * line]["content"].replace(answer, other)
        pred = predict(dm, tok, history, who)
        correct += pred == answer
        base += pred == other
        follow += predict(dm, tok, swapped, who) == other
    chance = n / len(PLACES)
    assert correct >= 2 * chance, (correct, n)  # memory-only ≥ 2× chance (8 of 24)
    assert follow >= max(2 * base, 2 * chance), (follow, base, n)  # follows what was written

"""The shipped adapter recalls through memory alone on bAbI-qa1-style stories written here (not
the bAbI files), with the swap test as the proof that the written value, not a prior, decides the
answer. (An earlier shipped adapter, gpu74 in docs/results.md, scored 2 of 24 here and followed a
swapped location 9 times of 24, as often as it already named it: this test can fail.)"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agentmem.model.adapters import load_adapter, read_adapter
from agentmem.model.backbones import load_backbone
from agentmem.model.history import write_history
from agentmem.model.prompts import read_prompt
from agentmem.model.scoring import score_candidates

ROOT = Path(__file__).parents[2]
SHIPPED = ROOT / "agentmem" / "adapters_shipped" / "smollm2-135m-instruct"
# Memory-only correct answers required, in multiples of chance (48 stories, 6 places: chance 8),
# and how many times as often a swapped location must be followed as it is named by coincidence.
# Measured: the shipped adapter 12 correct, follows the swap 13 times vs 8 by coincidence (1.6×);
# earlier adapters and candidates on the same stories are in docs/results.md (gpu74 failed both).
MIN_CORRECT = 1.5
SWAP_FACTOR = 1.5
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
def test_shipped_adapter_recalls_and_follows_swapped_values():
    read_adapter(SHIPPED)  # checksum / fingerprint checked before use
    model, tok = load_backbone()
    dm = load_adapter(model, SHIPPED)
    rng = random.Random(0)
    n, correct, follow, base = 48, 0, 0, 0
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
    assert correct >= MIN_CORRECT * chance, (correct, n)  # memory-only above chance
    # the written value decides: a swapped location is followed SWAP_FACTOR× as often as by
    # coincidence and more often than a random change of answer would land on it
    assert follow >= max(SWAP_FACTOR * base, MIN_CORRECT * chance), (follow, base, n)

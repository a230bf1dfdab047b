"""The shipped adapter and the candidates recall through memory alone on bAbI-qa1-style
stories written here (not the bAbI files), with the swap test as the proof that the written value,
not a prior, decides the answer. (An earlier shipped adapter, `candidates/…-gpu74`, scored 2 of 24
here and followed a swapped location 9 times of 24, as often as it already named it: this test
can fail.)"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agentmem.adapters import load_adapter, read_adapter
from agentmem.backbones import load_backbone
from agentmem.protocol import read_prompt, score_candidates, write_history

ROOT = Path(__file__).parents[2]
ADAPTERS = {"shipped": ROOT / "agentmem" / "adapters_shipped" / "smollm2-135m-instruct",
            "candidate-qa1": ROOT / "candidates" / "smollm2-135m-instruct-qa1-recall",
            "candidate-babi5": ROOT / "candidates" / "smollm2-135m-instruct-babi5"}
# Memory-only correct answers required, in multiples of chance (48 stories, 6 places: chance 8).
# Measured: shipped (the reply-preservation adapter) ≥ 12 correct, follows the swap 13 times vs 8
# by coincidence: 1.6×, under the 2× its bAbI qa1 test figure meets (40 vs 15 of 100; its card) —
# preserving ordinary replies cost part of this; the adapter shipped before it (qa3/qa4 stage,
# docs/results/smollm2-135m-instruct-q34) 22 correct, follows the swap 13 times vs 5;
# qa1 candidate 23, 19 vs 3; the bAbI qa1-qa5 adapter shipped before it 12, 11 vs 2; the one
# shipped before those (gpu74) 2 of 24 and 9 vs 9 (it fails both).
MIN_CORRECT = {"shipped": 1.5, "candidate-qa1": 2.0, "candidate-babi5": 1.125}
SWAP_FACTOR = {"shipped": 1.5, "candidate-qa1": 2.0, "candidate-babi5": 2.0}  # follow ≥ this × base
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
@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapter_recalls_and_follows_swapped_values(name: str):
    read_adapter(ADAPTERS[name])  # checksum / fingerprint checked before use
    model, tok = load_backbone()
    dm = load_adapter(model, ADAPTERS[name])
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
    assert correct >= MIN_CORRECT[name] * chance, (correct, n)  # memory-only above chance
    # the written value decides: a swapped location is followed SWAP_FACTOR× as often as by
    # coincidence and more often than a random change of answer would land on it
    assert follow >= max(SWAP_FACTOR[name] * base, MIN_CORRECT[name] * chance), (follow, base, n)

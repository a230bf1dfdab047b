"""Reader for LoCoMo conversations (``locomo10.json`` and files of the same format).

A file holds a list of samples (a single sample object is accepted too). Each sample has
``conversation`` (``speaker_a``, ``speaker_b``, ``session_N`` lists of turns
``{"speaker", "dia_id", "text", ["blip_caption"]}`` and ``session_N_date_time``) and ``qa``
(``question``, ``answer``, ``category``, ``evidence``).

History (the same for every question of a sample): for each non-empty session in numeric order, a
system header ``"Session N. Date: <date_time>."``, then one message per turn, ``speaker_a`` as
"user" and ``speaker_b`` as "assistant", content ``"<speaker>: <text>"`` plus
``" [shares <caption>]"`` for a shared image when ``captions`` is on.

Categories follow the numbering of the released data and the official evaluation script
(``task_eval/evaluation.py`` of snap-research/locomo), which differs from the order the paper lists
them in: 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial. Checked on the data:
category 1 questions cite evidence from several sessions, 2 ask "when", 3 ask for inferences
("would ... likely ..."), 4 cite one turn, 5 have only an ``adversarial_answer``. The official
protocol scores 1–4; category 5 is skipped by default (when included, its answer is
:data:`ADVERSARIAL_ANSWER`, the reply the official script counts as correct).

Episodes: ``category`` is the name, ``meta["locomo_category"]`` the number (the metrics need it),
``answer`` is ``str(answer)`` (some answers are years stored as ints), ``candidates`` is None
(LoCoMo is scored by generation), ``meta["evidence_turns"]`` the history indices of the evidence
turns and ``meta["fact_turn"]`` the earliest of them (evidence ids not found in the conversation, a
known quirk of a few LoCoMo entries, are listed in ``meta["evidence_missing"]``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agentmem.data.episodes import Episode

CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
ADVERSARIAL_ANSWER = "Not mentioned in the conversation"
_SESSION = re.compile(r"^session_(\d+)$")
_DIA_ID = re.compile(r"D\d+:\d+")


def conversation_history(conversation: dict[str, Any], captions: bool = True,
                         headers: bool = True) -> tuple[list[dict[str, str]], dict[str, int]]:
    """The chat history of one LoCoMo conversation and the history index of every ``dia_id``.

    Args:
        conversation: A sample's ``conversation`` object.
        captions: Append shared images' captions to the turn text.
        headers: Start each session with a system message naming its number and date.

    Raises:
        ValueError: If a turn's speaker is neither ``speaker_a`` nor ``speaker_b``.
    """
    roles = {conversation["speaker_a"]: "user", conversation["speaker_b"]: "assistant"}
    numbers = sorted(int(m[1]) for k in conversation if (m := _SESSION.match(k)))
    history: list[dict[str, str]] = []
    index: dict[str, int] = {}
    for n in numbers:
        turns = conversation[f"session_{n}"]
        if not turns:
            continue
        if headers:
            date = conversation.get(f"session_{n}_date_time")
            history.append({"role": "system", "content": f"Session {n}. Date: {date}." if date
                            else f"Session {n}."})
        for turn in turns:
            if turn["speaker"] not in roles:
                raise ValueError(f"session_{n}: speaker {turn['speaker']!r} is neither speaker_a nor "
                                 f"speaker_b ({sorted(roles)})")
            content = f"{turn['speaker']}: {turn['text']}"
            if captions and turn.get("blip_caption"):
                content += f" [shares {turn['blip_caption']}]"
            index[turn["dia_id"]] = len(history)
            history.append({"role": roles[turn["speaker"]], "content": content})
    return history, index


def read_locomo(path: str | Path, categories: tuple[int, ...] = (1, 2, 3, 4), captions: bool = True,
                headers: bool = True) -> list[Episode]:
    """Read every QA of every sample of a LoCoMo file as an episode (see the module docstring).

    Args:
        path: The JSON file (one sample or a list of samples).
        categories: Category numbers to keep (the official protocol scores 1–4).
        captions: See :func:`conversation_history`.
        headers: See :func:`conversation_history`.

    Raises:
        ValueError: On an unknown category number, a kept question without an answer, or a
            malformed sample (naming the sample and question).
    """
    bad = [c for c in categories if c not in CATEGORY_NAMES]
    if bad:
        raise ValueError(f"unknown LoCoMo categories {bad}; known: {CATEGORY_NAMES}")
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    samples = data if isinstance(data, list) else [data]
    episodes = []
    for s_no, sample in enumerate(samples):
        sample_id = str(sample.get("sample_id", f"sample{s_no}"))
        try:
            history, index = conversation_history(sample["conversation"], captions, headers)
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path}: sample {sample_id}: {e!r}") from e
        for q_no, qa in enumerate(sample.get("qa", [])):
            if qa.get("category") in categories:
                episodes.append(_episode(f"locomo-{sample_id}-{q_no:03d}", qa, history, index))
    return episodes


def _episode(ep_id: str, qa: dict[str, Any], history: list[dict[str, str]],
             index: dict[str, int]) -> Episode:
    category = qa["category"]
    meta: dict[str, Any] = {"locomo_category": category}
    if category == 5:
        answer = ADVERSARIAL_ANSWER
        meta["adversarial_answer"] = qa.get("adversarial_answer")
    elif qa.get("answer") is None or str(qa["answer"]).strip() == "":
        raise ValueError(f"{ep_id}: category {category} question without an answer: {qa.get('question')!r}")
    else:
        answer = str(qa["answer"])
    evidence = [d for e in qa.get("evidence", []) for d in _DIA_ID.findall(str(e))]
    turns = sorted({index[d] for d in evidence if d in index})
    meta.update(evidence=evidence, evidence_turns=turns)
    missing = [d for d in evidence if d not in index]
    if missing:
        meta["evidence_missing"] = missing
    if turns:
        meta["fact_turn"] = turns[0]
    return Episode(id=ep_id, history=history, question=str(qa["question"]), answer=answer,
                   candidates=None, category=CATEGORY_NAMES[category], meta=meta)

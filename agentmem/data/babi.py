"""Reader for bAbI tasks v1.2 (qa1–qa5 and the same line format).

A file is a sequence of stories; a story's line ids start at 1. A story line is ``"N text"``; a
question line is ``"N question?<TAB>answer<TAB>supporting ids"`` (some copies use
``"N question? |answer|ids"``, which is read the same way). Every question becomes one episode:

- history: the story lines before it (earlier questions are left out), each a user turn followed by
  an assistant acknowledgement (``ack``; None for no assistant turns);
- candidates: every answer observed in the file for questions with the same first word ("where",
  "what", "who" ...), so qa1–qa4 get the six locations and qa5 gets the objects for "What ..."
  and the people for "Who ..." questions;
- category: the task id (``"qa1"``); ``meta``: ``task`` (full task name), ``support_turns``,
  ``fact_turn`` (the supporting line that names the answer, the latest if several) and, when that
  line names the answer exactly once, ``swap`` (it rewritten with another candidate that the
  question does not mention). For qa1 the swapped line decides the answer; for qa2–qa5 it is the
  line that names the answer, so the swap changes the expected answer in the same way.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from agentmem.data.episodes import Episode

_TASK = re.compile(r"^(qa\d+)_(.+)_(train|test)$")
_PIPE_QUESTION = re.compile(r"^(?P<q>.*?)\s*\|(?P<a>[^|]*)\|(?P<s>[\d\s]*)$")


@dataclass(frozen=True)
class _Question:
    line_id: int
    text: str
    answer: str
    support: tuple[int, ...]
    story: tuple[tuple[int, str], ...]  # (line id, text) of the story lines before the question


def _parse_line(lineno: int, raw: str) -> tuple[int, str, tuple[str, str, str] | None]:
    """Split one line into (id, text, (question, answer, support) or None for a story line)."""
    head, _, text = raw.strip().partition(" ")
    if not head.isdigit():
        raise ValueError(f"line {lineno}: expected 'N text', got {raw!r}")
    if "\t" in text:
        parts = text.split("\t") + [""]
        return int(head), text, (parts[0].strip(), parts[1].strip(), parts[2])
    m = _PIPE_QUESTION.match(text)
    if m:
        return int(head), text, (m["q"].strip(), m["a"].strip(), m["s"])
    return int(head), text.strip(), None


def parse_babi(text: str) -> list[_Question]:
    """All questions of a bAbI file's text, each with the story lines that precede it.

    Raises:
        ValueError: On a line that is not ``"N text"`` or a question without an answer.
    """
    questions: list[_Question] = []
    story: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        line_id, body, qa = _parse_line(lineno, raw)
        if line_id == 1:
            story = []
        if qa is None:
            story.append((line_id, body))
            continue
        question, answer, support = qa
        if not question or not answer:
            raise ValueError(f"line {lineno}: question line without question or answer: {raw!r}")
        questions.append(_Question(line_id, question, answer,
                                   tuple(int(s) for s in support.split()), tuple(story)))
    return questions


def _wh(question: str) -> str:
    return question.split()[0].lower()


def _mentions(text: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(word)}\b", text))


def read_babi(path: str | Path, ack: str | None = "OK.") -> list[Episode]:
    """Read one bAbI task file into episodes (see the module docstring).

    Args:
        path: A file named like ``qa1_single-supporting-fact_test.txt`` (other names work: the
            task id is then the file stem).
        ack: Assistant acknowledgement after each story line; None for no assistant turns.

    Raises:
        ValueError: On malformed lines (naming the file and line).
    """
    path = Path(path)
    m = _TASK.match(path.stem)
    task, name = (m[1], f"{m[1]}_{m[2]}") if m else (path.stem, path.stem)
    try:
        questions = parse_babi(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    by_wh: dict[str, set[str]] = {}
    for q in questions:
        by_wh.setdefault(_wh(q.text), set()).add(q.answer)
    episodes = []
    for index, q in enumerate(questions):
        ep_id = f"{path.stem}-{index:05d}"
        episodes.append(_episode(ep_id, task, name, q, sorted(by_wh[_wh(q.text)]), ack))
    return episodes


def _episode(ep_id: str, task: str, name: str, q: _Question, candidates: list[str],
             ack: str | None) -> Episode:
    history: list[dict[str, str]] = []
    turn_of: dict[int, int] = {}
    for line_id, text in q.story:
        turn_of[line_id] = len(history)
        history.append({"role": "user", "content": text})
        if ack is not None:
            history.append({"role": "assistant", "content": ack})
    support = [s for s in q.support if s in turn_of]
    meta: dict = {"task": name, "support_turns": [turn_of[s] for s in support]}
    naming = [s for s in support if _mentions(dict(q.story)[s], q.answer)]
    if naming or support:
        fact_line = max(naming) if naming else support[-1]
        meta["fact_turn"] = turn_of[fact_line]
        swap = _swap(ep_id, dict(q.story)[fact_line], q, candidates)
        if swap is not None:
            meta["swap"] = {"turn": turn_of[fact_line], **swap}
    return Episode(id=ep_id, history=history, question=q.text, answer=q.answer,
                   candidates=candidates, category=task, meta=meta)


def _swap(ep_id: str, line: str, q: _Question, candidates: list[str]) -> dict[str, str] | None:
    """The fact line with the answer replaced by another candidate the question does not mention."""
    if _mentions(line, q.answer) != 1:
        return None
    others = [c for c in candidates if c != q.answer and not _mentions(q.text, c)]
    if not others:
        return None
    value = random.Random(ep_id).choice(others)
    content = re.sub(rf"\b{re.escape(q.answer)}\b", value, line)
    return {"value": value, "content": content}


def read_babi_dir(src: str | Path, split: str, tasks: list[str] | None = None,
                  ack: str | None = "OK.") -> list[Episode]:
    """Read every ``qa*_<split>.txt`` task file of a folder (e.g. ``babi/en``), in task order.

    Args:
        src: The folder.
        split: ``"train"`` or ``"test"``.
        tasks: Task ids to keep (e.g. ``["qa1", "qa2"]``); None keeps all found.
        ack: See :func:`read_babi`.

    Raises:
        ValueError: If a requested task has no file, or nothing matches.
    """
    files = {}
    for f in sorted(Path(src).glob(f"qa*_{split}.txt")):
        m = _TASK.match(f.stem)
        if m:
            files[m[1]] = f
    wanted = tasks if tasks is not None else sorted(files, key=lambda t: int(t[2:]))
    missing = [t for t in wanted if t not in files]
    if missing or not wanted:
        raise ValueError(f"no bAbI {split} file for tasks {missing or wanted} in {src}; "
                         f"found {sorted(files)}")
    return [ep for t in wanted for ep in read_babi(files[t], ack=ack)]

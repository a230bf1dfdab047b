"""Memory-only recall when only part of each history is written: what the other writes cost.

    python scripts/write_ablation.py --adapter DIR --data syn_test.jsonl --limit 150 --out runs/abl

For episodes that record the turn stating the answer (``meta.fact_turn``, the synthetic
generator's episodes), four versions of each history are written and the question read
memory-only (candidate accuracy, no swap test):

- ``fact``: only the fact's user turn and the reply to it;
- ``up-to-fact``: the history up to and including that reply (the writes before the fact);
- ``from-fact``: the fact turn and everything after it (the writes after the fact);
- ``full``: the whole history (what `agentmem eval` scores);
- ``user-turns``: every user turn, no replies (a write gate that skips the assistant);
- ``statements``: only the user turns that state a fact or an update, no replies and no small
  talk (`agentmem.data.synthetic.statement_turns`: what `--gate-weight` trains the gate to keep).

If ``fact`` is well above ``full``, the other writes cost the recall; ``up-to-fact`` and
``from-fact`` tell whether it is the earlier writes (the read cannot pick the asked fact among
several) or the later ones (they overwrite it); ``user-turns`` and ``statements`` bound what a
write gate that skips replies, or replies and small talk, can gain. Each version is an ordinary
episode file under ``--out`` evaluated by `agentmem eval`, so every figure comes with its interval
and command.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from agentmem.cli import main as agentmem_main
from agentmem.data.episodes import Episode, read_jsonl, write_jsonl
from agentmem.data.synthetic import statement_turns

VERSIONS = ("fact", "up-to-fact", "from-fact", "full", "user-turns", "statements")


def cut(episode: Episode, version: str) -> Episode:
    """The episode with the part of its history that `version` keeps (see the module doc)."""
    turn = episode.meta.get("fact_turn")
    history = episode.history
    if not isinstance(turn, int) or not 0 <= turn < len(history) or history[turn]["role"] != "user":
        raise ValueError(f"episode {episode.id!r} has no user fact turn (meta.fact_turn)")
    end = turn + 1
    while end < len(history) and history[end]["role"] != "user":
        end += 1  # the reply (and anything else) before the next user turn
    keep = {"user-turns": lambda: [m for m in history if m["role"] == "user"],
            "statements": lambda: [history[i] for i in statement_turns(history)]}
    kept = keep[version]() if version in keep else {
        "fact": history[turn:end], "up-to-fact": history[:end], "from-fact": history[turn:],
        "full": history}[version]
    meta = {k: v for k, v in episode.meta.items() if k not in ("swap", "fact_turn", "session_starts")}
    return replace(episode, history=list(kept), meta=meta)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None, help="the first N episodes")
    ap.add_argument("--versions", default=",".join(VERSIONS))
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    versions = args.versions.split(",")
    if unknown := sorted(set(versions) - set(VERSIONS)):
        ap.error(f"unknown versions {unknown}; choose from {', '.join(VERSIONS)}")
    episodes = read_jsonl(args.data)[: args.limit]
    lines = []
    for version in versions:
        data = args.out / f"{version}.jsonl"
        write_jsonl(data, [cut(e, version) for e in episodes])
        out = args.out / version
        rc = agentmem_main(["eval", "--data", str(data), "--adapter", args.adapter,
                            "--regimes", "memory-only", "--no-generate", "--no-swap",
                            "--device", args.device, "--out", str(out)])
        if rc:
            return rc
        r = json.loads((out / "results.json").read_text())["summary"]["memory-only"]
        acc = r["mc_acc"]
        lines.append(f"| {version} | {r['n']} | {100 * acc['mean']:.1f} "
                     f"[{100 * acc['lo']:.1f}, {100 * acc['hi']:.1f}] |")
    print("\n| history written | n | memory-only candidate acc % [95 % CI] |\n|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m agentmem.data``: build episode JSONL files and print their statistics.

Examples::

    python -m agentmem.data build --kind synthetic --split train --n 4000 --seed 0 --out train.jsonl
    python -m agentmem.data build --kind babi --split test --src data/babi/en --tasks qa1 --out qa1.jsonl
    python -m agentmem.data build --kind locomo --src locomo10.json --out locomo.jsonl
    python -m agentmem.data stats train.jsonl qa1.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agentmem.data.babi import read_babi, read_babi_dir
from agentmem.data.episodes import Episode, read_jsonl, summarize, write_jsonl
from agentmem.data.locomo import read_locomo
from agentmem.data.synthetic import generate


def _range(text: str) -> int | tuple[int, int]:
    lo, _, hi = text.partition("-")
    return (int(lo), int(hi)) if hi else int(lo)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agentmem.data", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write an episode JSONL file")
    b.add_argument("--kind", required=True, choices=("synthetic", "babi", "locomo"))
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--split", choices=("train", "test"), help="synthetic split; bAbI split of a --src folder")
    b.add_argument("--n", type=int, help="synthetic: episodes to generate; readers: keep the first N")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--src", type=Path, help="bAbI folder or file; LoCoMo JSON file")
    b.add_argument("--tasks", help="bAbI task ids to keep, comma-separated (default: all found)")
    b.add_argument("--ack", default="OK.", help="bAbI assistant acknowledgement ('' for none)")
    b.add_argument("--categories", default="1,2,3,4", help="LoCoMo categories to keep")
    b.add_argument("--facts", type=_range, help="synthetic: facts per episode, N or LO-HI")
    b.add_argument("--fillers", type=_range, help="synthetic: filler turns per session, N or LO-HI")
    b.add_argument("--sessions", type=_range, help="synthetic: sessions per episode, N or LO-HI")
    b.add_argument("--update-prob", type=float, help="synthetic: probability that a fact is updated")
    b.add_argument("--distractors", type=int, help="synthetic: wrong candidates per episode")
    b.add_argument("--session-headers", action="store_true", help="synthetic: system header per session")
    b.add_argument("--max-messages", type=int, help="readers: keep only episodes whose history has at "
                   "most this many messages (applied before --n)")
    s = sub.add_parser("stats", help="print statistics of episode files")
    s.add_argument("files", nargs="+", type=Path)
    return p


def _build(args: argparse.Namespace) -> list[Episode]:
    if args.kind == "synthetic":
        if args.split is None or args.n is None:
            raise SystemExit("--kind synthetic needs --split and --n")
        knobs = {k: getattr(args, k) for k in ("facts", "fillers", "sessions", "update_prob", "distractors")
                 if getattr(args, k) is not None}
        if args.session_headers:
            knobs["session_headers"] = True
        return generate(args.split, args.n, seed=args.seed, **knobs)
    if args.src is None:
        raise SystemExit(f"--kind {args.kind} needs --src")
    if args.kind == "locomo":
        episodes = read_locomo(args.src, categories=tuple(int(c) for c in args.categories.split(",")))
    elif args.src.is_dir():
        if args.split is None:
            raise SystemExit("--kind babi with a --src folder needs --split")
        tasks = args.tasks.split(",") if args.tasks else None
        episodes = read_babi_dir(args.src, args.split, tasks=tasks, ack=args.ack or None)
    else:
        episodes = read_babi(args.src, ack=args.ack or None)
    if args.max_messages is not None:
        episodes = [e for e in episodes if len(e.history) <= args.max_messages]
    return episodes if args.n is None else episodes[: args.n]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "build":
        episodes = _build(args)
        write_jsonl(args.out, episodes)
        print(json.dumps({"path": str(args.out), **summarize(episodes)}))
    else:
        for path in args.files:
            print(json.dumps({"path": str(path), **summarize(read_jsonl(path))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print the evaluation section of an adapter card from `agentmem eval` output folders.

    python scripts/card_evals.py "Synthetic test split=runs/eval/synthetic" "bAbI qa1=..." ...

Each argument is TITLE=FOLDER (a folder holding results.json); the tables are the ones
`agentmem eval` writes, headed by the title, the episodes done and the command that made them.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from agentmem.eval.report import markdown_table


def describe_commands(joined: str) -> str:
    """The commands behind a folder: shards of one run collapse into their first command with
    "and likewise shards 2–N"; runs combined by regime (`eval-merge` of disjoint regime lists)
    are listed one per line."""
    runs: dict[str, list[str]] = {}
    for cmd in joined.split("; "):
        key = re.sub(r" --(shard|out) \S+", "", cmd)
        runs.setdefault(key, []).append(cmd)
    lines = []
    for cmds in runs.values():
        n = len(cmds)
        lines.append(f"`{cmds[0]}`" + (f", and likewise shards 2–{n} of {n}, side by side" if n > 1
                                       else ""))
    if len(joined.split("; ")) > 1:
        lines[-1] += ", merged with `agentmem eval-merge`"
    return "\n".join(f"- {line}" for line in lines) if len(lines) > 1 else lines[0]


def section(title: str, folder: Path) -> str:
    results = json.loads((folder / "results.json").read_text())
    meta, summary = results["meta"], results["summary"]
    done, asked = meta["episodes"], meta.get("episodes_requested", meta["episodes"])
    scope = f"{done} of {asked} episodes" if done != asked else f"{done} episodes"
    device = f", on {meta['device']}" if meta.get("device") else ""
    command = describe_commands(meta["command"])
    return "\n".join([f"### {title} ({scope}{device})", "", command, "",
                      markdown_table(summary), ""])


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for arg in argv:
        title, sep, folder = arg.partition("=")
        if not sep:
            print(f"expected TITLE=FOLDER, got {arg!r}", file=sys.stderr)
            return 2
        print(section(title, Path(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

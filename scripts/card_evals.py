"""Print the evaluation section of an adapter card from `agentmem eval` output folders.

    python scripts/card_evals.py "Synthetic test split=/work/evals/synthetic" "bAbI qa1=..." ...

Each argument is TITLE=FOLDER (a folder holding results.json); the tables are the ones
`agentmem eval` writes, headed by the title, the episodes done and the command that made them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agentmem.eval_report import markdown_table


def section(title: str, folder: Path) -> str:
    results = json.loads((folder / "results.json").read_text())
    meta, summary = results["meta"], results["summary"]
    done, asked = meta["episodes"], meta.get("episodes_requested", meta["episodes"])
    scope = f"{done} of {asked} episodes" if done != asked else f"{done} episodes"
    device = f", on {meta['device']}" if meta.get("device") else ""
    command = f"`{meta['command']}`"
    shards = meta.get("shards") or []
    if len(shards) > 1:  # merged by `agentmem eval-merge`: show the first shard's command
        command = (f"`{meta['command'].split('; ')[0]}`, and likewise shards 2–{len(shards)} of "
                   f"{len(shards)}, side by side, merged with `agentmem eval-merge`")
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

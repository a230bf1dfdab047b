"""Candidate accuracy per regime split by whether the fact has left the prompt window.

    python scripts/fact_window.py --data syn_test.jsonl FOLDER [FOLDER ...]

Each FOLDER is an `agentmem eval` output (results.json + rows.jsonl) made on the --data file;
folders are read together (e.g. an adapter-free baseline run and an adapter's memory regimes). The
window is the runs' own (`meta.options.window`); folders with different windows are refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agentmem.data.episodes import read_jsonl
from agentmem.eval.report import fact_position_split, fact_position_table, load_folder


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("folders", type=Path, nargs="+")
    args = ap.parse_args(argv)
    rows, windows = [], set()
    for folder in args.folders:
        meta, folder_rows, _ = load_folder(folder)
        windows.add(meta["options"]["window"])
        rows += folder_rows
    if len(windows) != 1:
        print(f"the folders were run with different windows: {sorted(windows)}", file=sys.stderr)
        return 2
    window = windows.pop()
    print(f"window = {window} messages\n")
    print(fact_position_table(fact_position_split(rows, read_jsonl(args.data), window)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

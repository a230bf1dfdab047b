"""Copy an adapter with another write protocol (same weights), to measure a protocol without
training: which messages are written and whether write passes read the memory.

    python scripts/set_protocol.py --adapter DIR --out DIR2 [--write-policy user] [--no-write-reads]

The copy is an ordinary adapter folder (new fingerprint: the protocol is part of the config), so
`agentmem eval --adapter DIR2` scores the same weights under the new protocol.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from agentmem.model.adapters import read_adapter, write_adapter
from agentmem.model.config import WRITE_POLICIES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--write-policy", choices=WRITE_POLICIES, default=None,
                    help="default: keep the adapter's")
    ap.add_argument("--no-write-reads", action="store_true", help="read-free write passes")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"set_protocol: {out} is not empty", file=sys.stderr)
        return 2
    config, tensors, meta = read_adapter(args.adapter)
    changes = {}
    if args.write_policy is not None:
        changes["write_policy"] = args.write_policy
    if args.no_write_reads:
        changes["write_reads"] = False
    try:
        config = dataclasses.replace(config, **changes)
    except ValueError as e:
        print(f"set_protocol: {e}", file=sys.stderr)
        return 2
    write_adapter(out, config, tensors, meta["backbone_id"])
    print(f"{out}: {config.to_json()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reply harm of adapters on the default backbone: what reading an unrelated memory does to the
model's ordinary replies (`agentmem.eval.reply_harm`), side by side on the same cases.

Cases: test-split ordinary requests (templates and topics never used in training), each with a
memory of synthetic facts, small talk or (with ``--babi``) a bAbI story of the test split, read
with window 0 (memory only) and window 4. Per adapter and window it prints delta_nats (NLL of
the frozen model's greedy reply under the memory-reading model minus under the frozen model,
nats/token, 95 % bootstrap interval), KL(frozen ‖ memory), the collapsed share and the reply
length ratio, then a few replies side by side, and as its last line JSON with every figure and
whether the targets (delta_nats ≤ 0.15 and collapsed ≤ 10 % at every window) are met.

Usage: python benchmarks/reply_harm.py [--adapter DIR ...] [--cases 72] [--threads 2]
       [--babi ../shared/data/babi/en/qa1_single-supporting-fact_test.txt]
       [--out benchmarks/results/reply_harm]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from agentmem.data.babi import read_babi
from agentmem.eval.reply_harm import (
    babi_stories,
    evaluate_harm,
    harm_cases,
    harm_table,
    side_by_side,
    summarize_harm,
)
from agentmem.model.adapters import load_adapter, shipped_adapter
from agentmem.model.backbones import DEFAULT_BACKBONE, load_backbone

TARGET_DELTA_NATS, TARGET_COLLAPSED = 0.15, 0.10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", action="append", default=None,
                    help="adapter folder (repeatable; default: the shipped adapter)")
    ap.add_argument("--babi", default=None, help="a bAbI test file whose stories are memories too")
    ap.add_argument("--cases", type=int, default=72)
    ap.add_argument("--windows", default="0,4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write <out>.json and <out>.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    stories = babi_stories(read_babi(args.babi)) if args.babi else []
    cases = harm_cases("test", args.cases, stories=stories)
    windows = tuple(int(w) for w in args.windows.split(","))
    adapters = args.adapter or [str(shipped_adapter(DEFAULT_BACKBONE))]
    results, md = {}, []
    for folder in adapters:
        model, tok = load_backbone(DEFAULT_BACKBONE)
        dm = load_adapter(model, folder)
        rows = evaluate_harm(dm, tok, cases, windows)
        summary = summarize_harm(rows)
        met = all(s["delta_nats"]["mean"] <= TARGET_DELTA_NATS and s["collapsed"] <= TARGET_COLLAPSED
                  for s in summary.values())
        results[folder] = {"fingerprint": dm.fingerprint(), "targets_met": met,
                           **{w: {"delta_nats": s["delta_nats"], "kl": s["kl"]["mean"],
                                  "collapsed": s["collapsed"], "length_ratio": s["length_ratio"],
                                  "n": s["n"]} for w, s in summary.items()}}
        block = f"## {folder}\n\n{harm_table(summary)}\n\n{side_by_side(rows, 6)}\n"
        print(block)
        md.append(block)
    figures = {"cases": len(cases), "windows": list(windows), "babi": args.babi,
               "targets": {"delta_nats": TARGET_DELTA_NATS, "collapsed": TARGET_COLLAPSED},
               "adapters": results}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.md").write_text("# Reply harm\n\n" + "\n".join(md))
        Path(f"{args.out}.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

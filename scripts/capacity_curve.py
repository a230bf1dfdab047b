"""Capacity curve: memory-only accuracy against δ-mem state size, from `agentmem eval` folders.

    python scripts/capacity_curve.py --png capacity.png \
        "r=8:64:runs/eval/r8-synthetic" "r=16:256:runs/eval/r16-synthetic" ...

Each entry is LABEL:STATE_FLOATS_PER_LAYER:FOLDER (a folder holding results.json with the
`memory-only` and `no-memory` regimes). Prints a Markdown table (memory-only and no-memory
accuracy with 95 % intervals, swap-follow against its baseline) and plots accuracy against state
size, one line per suite when entries share a label.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def _pct(ci: dict[str, float] | None) -> str:
    return "–" if ci is None else f"{100 * ci['mean']:.1f} [{100 * ci['lo']:.1f}, {100 * ci['hi']:.1f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--png", type=Path, required=True)
    p.add_argument("entries", nargs="+", help="LABEL:STATE_FLOATS:FOLDER")
    args = p.parse_args(argv)
    rows, curves = [], defaultdict(list)
    for entry in args.entries:
        label, floats, folder = entry.split(":", 2)
        results = json.loads((Path(folder) / "results.json").read_text())
        s, suite = results["summary"], Path(folder).name.split("-", 1)[-1]
        mem, base = s["memory-only"], s["no-memory"]
        rows.append(f"| {label} | {int(floats)} | {suite} | {mem['n']} | {_pct(mem['mc_acc'])} | "
                    f"{_pct(base['mc_acc'])} | {100 * mem['chance']:.1f} | "
                    f"{_pct(mem['swap_follow'])} / {_pct(mem['swap_baseline'])} |")
        curves[suite].append((int(floats), label, mem["mc_acc"], mem["chance"]))
    print("| adapter | state floats / layer | suite | n | memory-only % [95 % CI] | no-memory % | "
          "chance % | swap-follow / baseline % |")
    print("|---|---:|---|---:|---|---|---:|---|")
    print("\n".join(rows))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for suite, pts in curves.items():
        pts.sort(key=lambda t: (t[0], t[1]))
        xs = range(len(pts))
        means = [100 * c["mean"] for _, _, c, _ in pts]
        err = [[100 * (c["mean"] - c["lo"]) for _, _, c, _ in pts],
               [100 * (c["hi"] - c["mean"]) for _, _, c, _ in pts]]
        line = ax.errorbar(xs, means, yerr=err, marker="o", capsize=3, label=f"{suite} memory-only")
        ax.axhline(100 * pts[0][3], color=line[0].get_color(), linestyle=":", linewidth=1,
                   label=f"{suite} chance")
        ax.set_xticks(list(xs), [f"{label}\n{f} floats" for f, label, _, _ in pts])
    ax.set_ylabel("candidate accuracy %")
    ax.set_title("memory-only accuracy against state size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

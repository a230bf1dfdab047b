"""Plot one metric of several `agentmem train` logs (train_log.jsonl) on one axis, smoothed.

    python scripts/plot_train_logs.py "rank 8=runs/a/train_log.jsonl" "rank 32=runs/b/train_log.jsonl" \
        --key ce_memory_only --smooth 20 --hline "0.646=answer prior" --ymax 1.2 --png curve.png

Prints, per log, the smoothed value every 100 steps (the table the PNG shows).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def smoothed(path: Path, key: str, window: int) -> tuple[list[int], list[float]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    rows = [r for r in rows if key in r]  # probe keys (memory_gain) are logged every N steps
    steps, values = [], []
    for i in range(window - 1, len(rows)):
        chunk = rows[i - window + 1: i + 1]
        steps.append(rows[i]["step"])
        values.append(sum(r[key] for r in chunk) / window)
    return steps, values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", help="LABEL=train_log.jsonl (split at the last '=')")
    p.add_argument("--key", default="ce_memory_only")
    p.add_argument("--smooth", type=int, default=20, help="moving-average window in steps")
    p.add_argument("--hline", action="append", default=[], help="VALUE=LABEL, a reference line")
    p.add_argument("--ymax", type=float, default=None, help="clip the y axis (zoom past warm-up)")
    p.add_argument("--png", default=None)
    args = p.parse_args(argv)
    curves = []
    for spec in args.logs:
        label, sep, path = spec.rpartition("=")  # a label may hold "=", a path rarely does
        if not sep:
            p.error(f"expected LABEL=PATH, got {spec!r}")
        steps, values = smoothed(Path(path), args.key, args.smooth)
        curves.append((label, steps, values))
        marks = [f"{s}:{v:.3f}" for s, v in zip(steps, values, strict=True) if s % 100 == 0]
        print(f"{label}: {' '.join(marks)}")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4))
        for label, steps, values in curves:
            ax.plot(steps, values, label=label)
        for spec in args.hline:
            value, _, label = spec.partition("=")
            ax.axhline(float(value), color="grey", linestyle="--", label=label or None)
        if args.ymax is not None:
            ax.set_ylim(top=args.ymax)
        ax.set_xlabel("step")
        ax.set_ylabel(f"{args.key} ({args.smooth}-step mean, nats / token)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        plt.close(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

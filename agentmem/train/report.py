"""Training artefacts: loss curve PNG and the adapter's model card."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agentmem.errors import require


def _rows(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(r) for r in log_path.read_text().splitlines() if r]


def write_loss_plot(log_path: Path, png: Path) -> None:
    matplotlib = require("matplotlib", "train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(log_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("loss", "total"), ("ce_memory_only", "answer CE, memory-only views"),
                       ("ce_context", "answer CE, history-visible views")):
        pts = [(r["step"], r[key]) for r in rows if key == "loss" or r[key] > 0]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=label, linewidth=1)
    probe = [(r["step"], r["ce_other_memory"]) for r in rows if "ce_other_memory" in r]
    if probe:  # the memory gain is the gap between this curve and the memory-only one
        ax.plot(*zip(*probe, strict=True), label="answer CE, memory-only, another episode's state",
                linewidth=1, linestyle="--")
    for key, label, style in (("match_loss", "query–key match term", ":"),  # --match-weight
                              ("gate_loss", "write-gate term", "-."),  # --gate-weight
                              ("preserve_kl", "preservation KL(frozen ‖ memory)", (0, (5, 1)))):
        pts = [(r["step"], r[key]) for r in rows if key in r]  # optional terms, unweighted
        if pts:
            ax.plot(*zip(*pts, strict=True), label=label, linewidth=1, linestyle=style)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    if ax.get_legend_handles_labels()[0]:  # a log without rows (nothing trained) plots nothing
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def write_card(adapter: Path, cfg: Any, command: str, log_path: Path, n_episodes: int, *,
               processes: list[int] | None = None) -> None:
    """README.md beside the adapter: data, command, steps, wall time, the processes that trained
    it (one entry per sitting; evaluation appended later)."""
    processes = processes or [1]
    rows = _rows(log_path)
    last = rows[-1] if rows else {}
    lines = [
        "# δ-mem adapter", "",
        f"- backbone: `{cfg.backbone}`",
        f"- adapter config: `{json.dumps(cfg.adapter, sort_keys=True)}`",
        f"- data: {', '.join(f'`{Path(d).name}`' for d in cfg.data)} ({n_episodes} episodes)",
        f"- steps: {last.get('step', 0)} × batch {cfg.batch_size}; wall time "
        f"{last.get('elapsed_s', 0) / 60:.1f} min",
        f"- processes: {_processes(processes, cfg.batch_size)}",
        f"- backbone precision: {cfg.precision}",
        f"- final loss {last.get('loss', float('nan')):.4f}",
        f"- command: `{command}`", "",
        "## Training config", "", "```json", json.dumps(asdict(cfg), indent=1, sort_keys=True),
        "```", "",
    ]
    (adapter / "README.md").write_text("\n".join(lines))


def _processes(sittings: list[int], batch_size: int) -> str:
    """``2 (data parallel, batch 8 = 4 per process)``; with sittings of other sizes, each one."""
    world = sittings[-1]
    text = "1" if world == 1 else (f"{world} (data parallel, batch {batch_size} = "
                                   f"{-(-batch_size // world)} per process)")
    if len(set(sittings)) > 1:
        text += f"; sittings: {', '.join(map(str, sittings))}"
    return text

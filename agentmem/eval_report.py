"""Writing `agentmem eval` results: JSON, a Markdown table, a PNG chart, the last-line JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any


def _fmt(ci: dict[str, float] | None, pct: bool = True) -> str:
    if ci is None:
        return "–"
    k = 100 if pct else 1
    return f"{k * ci['mean']:.1f} [{k * ci['lo']:.1f}, {k * ci['hi']:.1f}]"


def markdown_table(summary: dict[str, Any]) -> str:
    lines = ["| regime | n | candidate acc % [95 % CI] | chance % | EM % | F1 % | swap-follow % "
             "| swap baseline % |", "|---|---|---|---|---|---|---|---|"]
    for regime, s in summary.items():
        chance = f"{100 * s['chance']:.1f}" if s["chance"] is not None else "–"
        lines.append(f"| {regime} | {s['n']} | {_fmt(s['mc_acc'])} | {chance} | {_fmt(s['em'])} | "
                     f"{_fmt(s['f1'])} | {_fmt(s['swap_follow'])} | {_fmt(s['swap_baseline'])} |")
    cats = sorted({c for s in summary.values() for c in s["categories"]})
    if len(cats) > 1:
        lines += ["", "Per category (candidate acc % / F1 %):", "",
                  "| regime | " + " | ".join(cats) + " |", "|---" * (len(cats) + 1) + "|"]
        for regime, s in summary.items():
            cells = []
            for c in cats:
                g = s["categories"].get(c)
                acc = f"{100 * g['mc_acc']['mean']:.1f}" if g and g["mc_acc"] else "–"
                f1 = f"{100 * g['f1']['mean']:.1f}" if g and g["f1"] else "–"
                cells.append(f"{acc} / {f1} (n={g['n'] if g else 0})")
            lines.append(f"| {regime} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(summary: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = list(summary)
    metric = "mc_acc" if any(summary[r]["mc_acc"] for r in regimes) else "f1"
    vals = [summary[r][metric] or {"mean": 0, "lo": 0, "hi": 0} for r in regimes]
    means = [100 * v["mean"] for v in vals]
    err = [[100 * (v["mean"] - v["lo"]) for v in vals], [100 * (v["hi"] - v["mean"]) for v in vals]]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(regimes, means, yerr=err, capsize=4, color="#4C72B0")
    chance = [summary[r]["chance"] for r in regimes if summary[r]["chance"] is not None]
    if metric == "mc_acc" and chance:
        ax.axhline(100 * sum(chance) / len(chance), color="grey", linestyle="--", label="chance")
        ax.legend()
    ax.set_ylabel("candidate accuracy %" if metric == "mc_acc" else "token F1 %")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def last_line(summary: dict[str, Any]) -> str:
    """The JSON the command prints last: {regime: {"mc_acc", "f1", "n"}}."""
    return json.dumps({r: {"mc_acc": s["mc_acc"]["mean"] if s["mc_acc"] else None,
                           "f1": s["f1"]["mean"] if s["f1"] else None, "n": s["n"]}
                       for r, s in summary.items()})


def write_outputs(out: Path, summary: dict[str, Any], rows: list[Any], meta: dict[str, Any]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=1))
    with open(out / "rows.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(asdict(r)) + "\n")
    table = markdown_table(summary)
    (out / "results.md").write_text(f"# Evaluation\n\n`{meta.get('command', '')}`\n\n{table}\n")
    chart(summary, out / "chart.png")
    return table


def merge_folders(folders: list[Path]) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """Summary, rows and meta of shards of one evaluation (``agentmem eval --shard K/N`` run into
    separate folders), as if it had run in one process.

    Refuses (:class:`EvalMergeError`) folders of another adapter, data file, regime list or shard
    count, and a shard given twice."""
    from agentmem.errors import EvalMergeError
    from agentmem.evaluate import Row, summarize

    if not folders:
        raise EvalMergeError("nothing to merge: give the evaluation folders")
    metas, rows, regimes = [], [], None
    for folder in folders:
        results, rows_file = folder / "results.json", folder / "rows.jsonl"
        if not results.is_file() or not rows_file.is_file():
            raise EvalMergeError(f"{folder}: no results.json and rows.jsonl (not an eval folder)")
        meta = json.loads(results.read_text())["meta"]
        folder_rows = [Row(**json.loads(line)) for line in rows_file.read_text().splitlines() if line]
        names = meta.get("regimes") or list(dict.fromkeys(r.regime for r in folder_rows))
        if regimes is not None and names != regimes:
            raise EvalMergeError(f"{folder}: regimes {names} differ from {regimes}")
        regimes = names
        metas.append(meta)
        rows.extend(folder_rows)
    for key in ("adapter_fingerprint", "data", "scoring"):
        values = {m.get(key) for m in metas}
        if len(values) > 1:
            raise EvalMergeError(f"the folders differ in {key}: {sorted(map(str, values))}")
    shards = [m.get("shard", "1/1") for m in metas]
    if len({s.split("/")[1] for s in shards}) > 1 or len(set(shards)) < len(shards):
        raise EvalMergeError(f"shards {shards}: expected distinct shards K/N of one N")
    first = metas[0]
    meta = {"command": "; ".join(m["command"] for m in metas),
            "episodes": sum(m["episodes"] for m in metas),
            "episodes_requested": sum(m.get("episodes_requested", m["episodes"]) for m in metas),
            "device": ", ".join(sorted({str(m.get("device")) for m in metas})),
            "adapter": first.get("adapter"), "adapter_fingerprint": first.get("adapter_fingerprint"),
            "data": first.get("data"), "scoring": first.get("scoring"), "regimes": regimes,
            "shards": sorted(shards, key=lambda s: int(s.split("/")[0]))}
    return summarize(rows), rows, meta

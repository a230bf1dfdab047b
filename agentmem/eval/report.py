"""Writing `agentmem eval` results: JSON, a Markdown table, a PNG chart, the last-line JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agentmem.errors import require


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
    matplotlib = require("matplotlib", "train")
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


BASELINE_KEYS = ("backbone_id", "scoring", "options")


def load_folder(folder: Path) -> tuple[dict[str, Any], list[Any], list[str]]:
    """An eval output folder's meta, rows and regimes; ``EvalMergeError`` if it is not one."""
    from agentmem.errors import EvalMergeError
    from agentmem.eval.regimes import Row

    results, rows_file = folder / "results.json", folder / "rows.jsonl"
    if not results.is_file() or not rows_file.is_file():
        raise EvalMergeError(f"{folder}: no results.json and rows.jsonl (not an eval folder)")
    meta = json.loads(results.read_text())["meta"]
    rows = [Row(**json.loads(line)) for line in rows_file.read_text().splitlines() if line]
    return meta, rows, meta.get("regimes") or list(dict.fromkeys(r.regime for r in rows))


def _same(metas: list[dict[str, Any]], key: str, what: str) -> None:
    from agentmem.errors import EvalMergeError

    values = {json.dumps(m.get(key), sort_keys=True) for m in metas}
    if len(values) > 1:
        raise EvalMergeError(f"the folders differ in {key} ({what}): {sorted(values)}")


def _requested(metas: list[dict[str, Any]]) -> int:
    """Episodes the parts of one run were asked for: the union of their spans of the data file
    (a run stopped early and its resumption by --offset overlap in what they were asked for)."""
    def span(m: dict[str, Any]) -> list[int] | None:
        if "span" in m:
            return m["span"]
        if m.get("shard", "1/1") == "1/1":  # before spans were recorded: no offset, whole file
            return [0, m.get("episodes_requested", m["episodes"])]
        return None

    spans = [span(m) for m in metas]
    if any(s is None for s in spans):
        return sum(m.get("episodes_requested", m["episodes"]) for m in metas)
    return len({i for s in spans for i in range(*s)})


def _disjoint(parts: list[set[str]], regimes: tuple[str, ...]) -> None:
    """Folders of one regime list are parts of one run (shards, or slices by --offset/--limit):
    no episode may be in two of them."""
    from agentmem.errors import EvalMergeError

    seen: set[str] = set()
    for part in parts:
        if twice := seen & part:
            raise EvalMergeError(f"episodes {sorted(twice)[:3]} of regimes {list(regimes)} are in "
                                 "two folders: expected distinct shards or slices (--offset) of one run")
        seen |= part


def merge_folders(folders: list[Path], common_episodes: bool = False,
                  ) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """Summary, rows and meta of several ``agentmem eval`` folders as one evaluation.

    Folders with the same regime list are shards of one run (``eval --shard K/N``): distinct K of
    one N, one adapter. Folders with disjoint regime lists are combined side by side on the same
    episodes, so a new adapter needs only its memory regimes evaluated: the regimes that never
    read the memory (no-memory, window, full-context, bm25) do not depend on the adapter (a zero
    state leaves the frozen model's logits unchanged), so their folders (shards and resumed parts
    too) may come from any adapter of the same backbone; every folder with a memory regime must
    share one adapter fingerprint.

    Args:
        folders: Evaluation output folders (``results.json`` + ``rows.jsonl``).
        common_episodes: When combined regime groups cover different episodes (a run stopped by
            ``--max-minutes``), keep the episodes every group has instead of refusing.

    Raises:
        EvalMergeError: Nothing to merge, a folder that is no eval folder, folders of another
            data file, backbone, scoring or prompt options, memory regimes of two adapters, a
            regime in two groups, a repeated shard, or groups over different episodes.
    """
    from agentmem.errors import EvalMergeError
    from agentmem.eval.regimes import measured, summarize
    from agentmem.model.prompts import MEMORY_REGIMES, REGIMES

    if not folders:
        raise EvalMergeError("nothing to merge: give the evaluation folders")
    groups: dict[tuple[str, ...], list[tuple[dict[str, Any], list[Any]]]] = {}
    for folder in folders:
        meta, rows, regimes = load_folder(folder)
        groups.setdefault(tuple(regimes), []).append((meta, rows))
    metas = [m for members in groups.values() for m, _ in members]
    _same(metas, "data_sha256" if all("data_sha256" in m for m in metas) else "data", "data file")
    for key in BASELINE_KEYS:
        _same(metas, key, "backbone, scoring and prompt options must match")
    mem_metas = [m for m in metas if set(m.get("regimes") or ()) & set(MEMORY_REGIMES)] or metas[:1]
    _same(mem_metas, "adapter_fingerprint", "memory regimes of one adapter")
    seen: dict[str, tuple[str, ...]] = {}
    for regimes, members in groups.items():
        if set(regimes) & set(MEMORY_REGIMES):  # adapter-free parts may come from any adapter
            _same([m for m, _ in members], "adapter_fingerprint", "shards of one evaluation")
        if all(r.episode is not None for _, rows in members for r in rows):
            _disjoint([{r.episode for r in rows} for _, rows in members], regimes)
        else:  # rows of an older agentmem carry no episode ids: only the shard numbers tell
            shards = [m.get("shard", "1/1") for m, _ in members]
            if len({s.split("/")[1] for s in shards}) > 1 or len(set(shards)) < len(shards):
                raise EvalMergeError(f"shards {shards} of regimes {list(regimes)}: expected distinct "
                                     "shards K/N of one N")
        for regime in regimes:
            if regime in seen:
                raise EvalMergeError(f"regime {regime} is in two groups of folders: {list(seen[regime])} "
                                     f"and {list(regimes)} (shards of one run share one regime list)")
            seen[regime] = regimes
    group_rows = {g: [r for _, rows in members for r in rows] for g, members in groups.items()}
    keep = None
    if len(groups) > 1:
        ids = {g: {r.episode for r in rows} for g, rows in group_rows.items()}
        if any(None in s for s in ids.values()):
            raise EvalMergeError("rows without episode ids (evaluated by an older agentmem) can only "
                                 "be merged as shards of one regime list")
        common = set.intersection(*ids.values())
        if any(s != common for s in ids.values()):
            counts = {"+".join(g): len(s) for g, s in ids.items()}
            if not common_episodes:
                raise EvalMergeError(f"the regime groups cover different episodes {counts}; "
                                     "pass --common-episodes to keep the ones all groups have")
            keep = common
    order = {r: i for i, r in enumerate(REGIMES)}
    rows = [r for rs in group_rows.values() for r in rs if keep is None or r.episode in keep]
    rows.sort(key=lambda r: order.get(r.regime, len(order)))  # stable: episode order within a regime
    first = mem_metas[0]
    regimes = list(dict.fromkeys(r.regime for r in rows))
    meta = {"command": "; ".join(m["command"] for m in metas),
            "episodes": sum(1 for r in rows if r.regime == regimes[0] and measured(r)),
            "episodes_requested": max(_requested([m for m, _ in members]) for members in groups.values()),
            "device": ", ".join(sorted({str(m.get("device")) for m in metas})),
            "adapter": first.get("adapter"), "adapter_fingerprint": first.get("adapter_fingerprint"),
            "data": first.get("data"), "scoring": first.get("scoring"), "regimes": regimes,
            "shards": sorted({m.get("shard", "1/1") for m in metas}, key=lambda s: int(s.split("/")[0]))}
    for key in ("data_sha256", *BASELINE_KEYS):
        if key in first:
            meta[key] = first[key]
    others = sorted({m.get("adapter_fingerprint") for m in metas} - {meta["adapter_fingerprint"]})
    if others:
        meta["baseline_adapter_fingerprints"] = others
    if keep is not None:
        meta["common_episodes"] = len(keep)
    return summarize(rows), rows, meta


def fact_position_split(rows: list[Any], episodes: list[Any], window: int) -> dict[str, Any]:
    """Candidate accuracy per regime, split by whether the episode's fact is still in the last
    ``window`` messages of its history ("inside") or has left them ("outside") — the split behind
    the target "memory+window ≥ window + 10 points where the fact has left the window".

    Args:
        rows: ``Row`` objects of an eval run (``rows.jsonl``).
        episodes: The episodes that run read; each row's episode must be among them.
        window: The run's window, in messages (``meta.options.window``).

    Returns:
        ``{regime: {"inside": group, "outside": group}}`` with the groups of ``summarize``; rows
        without a candidate score or whose episode has no ``fact_turn`` are left out.

    Raises:
        ValueError: For a negative window or a row whose episode is not in ``episodes``.
    """
    from collections import defaultdict

    from agentmem.eval.regimes import group_summary
    from agentmem.model.prompts import window_start

    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    by_id = {ep.id: ep for ep in episodes}
    groups: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        ep = by_id.get(row.episode)
        if ep is None:
            raise ValueError(f"row of episode {row.episode!r} has no episode in the data given "
                             "(was the run made on another file?)")
        turn = ep.meta.get("fact_turn")
        if row.correct is None or turn is None:
            continue
        inside = turn >= window_start(len(ep.history), window)
        groups[row.regime]["inside" if inside else "outside"].append(row)
    return {regime: {pos: group_summary(rs) for pos, rs in sorted(g.items())}
            for regime, g in groups.items()}


def fact_position_table(split: dict[str, Any]) -> str:
    """Markdown table of ``fact_position_split``: accuracy % [95 % CI] (n) outside / inside."""
    lines = ["| regime | fact outside the window | fact inside the window |", "|---|---|---|"]
    for regime, g in split.items():
        cells = [f"{_fmt(g[p]['mc_acc'])} (n={g[p]['n']})" if p in g else "–"
                 for p in ("outside", "inside")]
        lines.append(f"| {regime} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

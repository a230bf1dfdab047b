"""The ``agentmem`` command."""

from __future__ import annotations

import argparse
import sys
import time

from agentmem.backbones import DEFAULT_BACKBONE

DEMO_TURNS = [
    [{"role": "user", "content": "Hi! My name is Ada and my sister Lin lives in Porto."},
     {"role": "assistant", "content": "Nice to meet you, Ada. I will remember that Lin lives in Porto."}],
    [{"role": "user", "content": "My dog is called Biscuit and he is four years old."},
     {"role": "assistant", "content": "Biscuit sounds lovely."}],
    [{"role": "user", "content": "I work as a glassblower in Lyon."},
     {"role": "assistant", "content": "Glassblowing is a beautiful craft."}],
]


def _inspect(args: argparse.Namespace) -> int:
    from agentmem.adapters import load_adapter, shipped_adapter
    from agentmem.backbones import load_backbone
    from agentmem.config import DeltaMemConfig
    from agentmem.engine import write_chat
    from agentmem.inject import attach_delta_mem

    t0 = time.perf_counter()
    model, tokenizer = load_backbone(args.backbone)
    print(f"backbone {args.backbone} loaded in {time.perf_counter() - t0:.1f} s")
    folder = args.adapter or shipped_adapter(args.backbone)
    if folder:
        dm = load_adapter(model, folder)
        print(f"adapter: {folder}")
    else:
        dm = attach_delta_mem(model, DeltaMemConfig(write_mode=args.write_mode))
        print("adapter: none shipped for this backbone yet; using a freshly initialised one")
    print(dm.trainable_report())
    state, prefix = dm.new_state(), []
    for turn in DEMO_TURNS:
        t = time.perf_counter()
        state = write_chat(dm, tokenizer, turn, state, prefix=prefix)
        prefix += turn
        print(f"wrote turn {len(prefix) // 2} ({time.perf_counter() - t:.2f} s): "
              f"tokens written so far {int(state.tokens_written[0])}")
    norms = state.tensors[0].flatten(1).norm(dim=1)  # [L]
    print("\nlayer  ‖S‖_F")
    for i, n in zip(state.layer_indices, norms.tolist(), strict=True):
        print(f"{i:5d}  {n:.4f}")
    print(f"\nstate: {len(state.to_bytes())} bytes, tokens written {int(state.tokens_written[0])}, "
          f"adapter {state.adapter_fingerprint[:12]}, backbone {state.backbone_id}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from agentmem.train import TrainConfig, train

    adapter = {"write_mode": args.write_mode, "rank": args.rank, "num_states": args.num_states,
               "beta_bias": args.beta_bias}
    cfg = TrainConfig(data=args.data, out=args.out, backbone=args.backbone, steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                      memory_only_steps=args.memory_only_steps, context_views=args.context_views,
                      budget_tokens=args.budget_tokens, seed=args.seed, save_every=args.save_every,
                      limit=args.limit, stop_after=args.stop_after, max_minutes=args.max_minutes,
                      device=args.device, init_adapter=args.init_adapter,
                      probe_every=args.probe_every, bucket_turns=args.bucket_turns,
                      match_weight=args.match_weight, gate_weight=args.gate_weight,
                      gate_beta=args.gate_beta, preserve_weight=args.preserve_weight,
                      preserve_rows=args.preserve_rows, preserve_prompts=args.preserve_prompts,
                      preserve_windows=args.preserve_windows, adapter=adapter)
    folder = train(cfg, command="agentmem " + " ".join(sys.argv[1:]))
    print(f"adapter written to {folder}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.suite == "reply-harm":
        args.max_new_tokens = args.max_new_tokens or HARM_NEW_TOKENS
        return _eval_harm(args)
    args.max_new_tokens = args.max_new_tokens or 32
    if args.data is None:
        print("agentmem eval: --data is required (except with --suite reply-harm)", file=sys.stderr)
        return 2

    from agentmem.eval_report import last_line, write_outputs
    from agentmem.evaluate import EvalOptions, evaluate, parse_shard, protocol_options, shard_bounds

    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as e:
        print(f"agentmem eval: {e}", file=sys.stderr)
        return 2
    episodes = _eval_episodes(args)
    lo, hi = shard_bounds(len(episodes), *shard) if shard else (0, len(episodes))
    span = [args.offset + lo, args.offset + hi]  # the requested episodes: [start, end) of the file
    episodes = episodes[lo:hi]
    dm, tok = _load_model(args.backbone, args.adapter, args.device)
    opts = EvalOptions(max_minutes=args.max_minutes, regimes=args.regimes.split(","), window=args.window,
                       budget_tokens=args.budget_tokens, generate=not args.no_generate,
                       max_new_tokens=args.max_new_tokens, swap=not args.no_swap,
                       gen_limit=args.gen_limit, prompt_tokens=args.prompt_tokens)
    summary, rows = evaluate(dm, tok, episodes, opts)
    done = summary[opts.regimes[0]]["n"] if summary else 0
    meta = {"command": "agentmem " + " ".join(sys.argv[1:]), "episodes": done,
            "episodes_requested": len(episodes), "device": str(dm.model.device),
            "adapter": str(args.adapter), "adapter_fingerprint": dm.fingerprint(),
            "scoring": "mean log-prob per reply token (length-normalised)",
            "data": str(args.data), "data_sha256": _sha256(args.data), "backbone_id": dm.backbone_id,
            "options": protocol_options(opts), "regimes": opts.regimes, "shard": args.shard or "1/1",
            "span": span}
    print(write_outputs(Path(args.out), summary, rows, meta))
    print(last_line(summary))
    return 0


HARM_CASES = 72  # default cases of --suite reply-harm (8 per request kind)
HARM_NEW_TOKENS = 48  # long enough to tell a sentence from a bare value


def _eval_harm(args: argparse.Namespace) -> int:
    """`agentmem eval --suite reply-harm`: what reading a memory does to ordinary replies."""
    import json
    from pathlib import Path

    from agentmem.reply_harm import (
        babi_stories,
        evaluate_harm,
        harm_cases,
        harm_table,
        rows_as_dicts,
        side_by_side,
        summarize_harm,
    )

    stories = []
    if args.data:  # bAbI stories as a third kind of memory
        from agentmem.data.babi import read_babi, read_babi_dir

        src = Path(args.data)
        eps = read_babi_dir(src, args.split, tasks=None) if src.is_dir() else read_babi(src)
        stories = babi_stories(eps)
    cases = harm_cases(args.split, args.offset + (args.limit or HARM_CASES), seed=args.seed,
                       stories=stories)[args.offset:]
    dm, tok = _load_model(args.backbone, args.adapter, args.device)
    rows = evaluate_harm(dm, tok, cases, args.windows, max_new_tokens=args.max_new_tokens,
                         budget_tokens=args.budget_tokens, max_minutes=args.max_minutes)
    summary = summarize_harm(rows)
    meta = {"command": "agentmem " + " ".join(sys.argv[1:]), "suite": "reply-harm",
            "split": args.split, "seed": args.seed, "cases": len({r.case for r in rows}),
            "cases_requested": len(cases), "windows": list(args.windows), "data": args.data,
            "adapter": str(args.adapter), "adapter_fingerprint": dm.fingerprint(),
            "backbone_id": dm.backbone_id, "max_new_tokens": args.max_new_tokens,
            "device": str(dm.model.device)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"summary": summary, "meta": meta}, indent=1))
    with open(out / "rows.jsonl", "w") as f:
        for r in rows_as_dicts(rows):
            f.write(json.dumps(r) + "\n")
    table = harm_table(summary)
    (out / "report.md").write_text(f"# Reply harm\n\n`{meta['command']}`\n\n{table}\n\n"
                                   "delta_nats: NLL of the frozen model's greedy reply, memory − "
                                   "frozen, nats/token; collapsed: memory reply ≤ 3 words where "
                                   "the frozen one has > 8.\n\n" + side_by_side(rows, 12) + "\n")
    print(table)
    return 0


def _sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _eval_merge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agentmem.errors import EvalMergeError
    from agentmem.eval_report import last_line, merge_folders, write_outputs

    try:
        summary, rows, meta = merge_folders([Path(f) for f in args.folders],
                                            common_episodes=args.common_episodes)
    except EvalMergeError as e:
        print(f"agentmem eval-merge: {e}", file=sys.stderr)
        return 2
    print(write_outputs(Path(args.out), summary, rows, meta))
    print(last_line(summary))
    return 0


def _eval_episodes(args: argparse.Namespace) -> list:
    if args.suite == "babi":
        from agentmem.data.babi import read_babi

        episodes = read_babi(args.data)
    elif args.suite == "locomo":
        from agentmem.data.locomo import read_locomo

        episodes = read_locomo(args.data)
    else:
        from agentmem.data.episodes import read_jsonl

        episodes = read_jsonl(args.data)
    episodes = episodes[args.offset:]
    return episodes[: args.limit] if args.limit else episodes


def _load_model(backbone: str, adapter: str | None, device: str = "auto"):
    from agentmem.adapters import load_adapter, shipped_adapter
    from agentmem.backbones import load_backbone
    from agentmem.devices import resolve_device
    from agentmem.inject import attach_delta_mem

    model, tok = load_backbone(backbone)
    model = model.to(resolve_device(device))
    folder = adapter or shipped_adapter(backbone)
    if folder and str(folder) != "none":
        return load_adapter(model, folder), tok
    print("warning: no adapter given or shipped; using a freshly initialised one", file=sys.stderr)
    return attach_delta_mem(model), tok


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a δ-mem adapter on episodes (JSONL)")
    p.add_argument("--data", action="append", required=True, help="episodes JSONL (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=float, default=0.1)
    p.add_argument("--memory-only-steps", type=int, default=0)
    p.add_argument("--context-views", type=float, default=0.5)
    p.add_argument("--budget-tokens", type=int, default=2048)
    p.add_argument("--write-mode", choices=["token", "message"], default="message")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--num-states", type=int, default=1)
    p.add_argument("--beta-bias", type=float, default=-1.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=50)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None,
                   help="fit the run into this many minutes: a fresh run times its first steps and "
                        "shortens --steps so the whole schedule fits; any sitting stops, "
                        "checkpointed, when the time is spent")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--init-adapter", default=None,
                   help="start from this adapter folder's weights with a fresh schedule; its config "
                        "replaces --rank/--num-states/--write-mode/--beta-bias")
    p.add_argument("--stop-after", type=int, default=None,
                   help="end this sitting after N steps; rerun the same command to resume")
    p.add_argument("--probe-every", type=_non_negative, default=10,
                   help="every N steps log memory_gain: the memory-only answer CE when a row reads "
                        "another episode's state, minus its own (0: never)")
    p.add_argument("--bucket-turns", action="store_true",
                   help="draw each batch from episodes with about as many history turns (one write "
                        "pass per turn: mixed lengths make every row pay for the longest)")
    p.add_argument("--match-weight", type=_non_negative_float, default=0.0,
                   help="add W × the query-key match term: on episodes that record the message "
                        "stating the answer (meta.fact_turn), the memory query that reads the "
                        "answer should match that message's key and no other "
                        "(agentmem.train.match; message-level writes; 0: off)")
    p.add_argument("--gate-weight", type=_non_negative_float, default=0.0,
                   help="add W × the write-gate term: on episodes whose fact statements are known "
                        "(the synthetic generator's), each statement's write gates should be "
                        "--gate-beta and every other message's 0 (agentmem.train.gate; "
                        "message-level writes; 0: off)")
    p.add_argument("--gate-beta", type=_gate_beta, default=0.5,
                   help="the write-gate term's target gate for statements, in (0, 1]")
    p.add_argument("--preserve-weight", type=_non_negative_float, default=0.0,
                   help="add W × the preservation term: with each episode's memory present, the "
                        "read pass on ordinary requests matches the frozen model's next-token "
                        "distribution along its own greedy replies (KL; agentmem.train.preserve; "
                        "0: off)")
    p.add_argument("--preserve-rows", type=_positive, default=8,
                   help="ordinary-request views per step for the preservation term")
    p.add_argument("--preserve-prompts", type=_positive, default=200,
                   help="distinct train-split requests whose frozen replies are generated once "
                        "and cached in the run folder")
    p.add_argument("--preserve-windows", type=_windows, default=(0, 4),
                   help="history messages shown before a request, comma-separated (0: memory "
                        "only); drawn uniformly per view")
    p.set_defaults(func=_train)


def _at_least(low: int):
    """An argparse type: an int ≥ ``low``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} < {low}")
        return value
    return parse


_non_negative, _positive = _at_least(0), _at_least(1)


def _windows(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if any(w < 0 for w in values):
        raise argparse.ArgumentTypeError(f"{text!r} has a negative window")
    return values


def _gate_beta(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value} is not in (0, 1]")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value} is not ≥ 0")
    return value


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate every regime side by side")
    p.add_argument("--data", default=None, help="episodes JSONL, or a bAbI / LoCoMo file (with "
                   "--suite reply-harm: optional bAbI file or folder whose stories are memories)")
    p.add_argument("--suite", choices=["babi", "locomo", "reply-harm"], default=None,
                   help="reply-harm: ordinary requests with an unrelated memory present; the "
                        "frozen model's replies against the memory-reading model's")
    p.add_argument("--split", choices=["train", "test"], default="test",
                   help="reply-harm: the split of requests and memories")
    p.add_argument("--windows", type=_windows, default=(0, 4),
                   help="reply-harm: history messages shown before the request, comma-separated")
    p.add_argument("--seed", type=int, default=0, help="reply-harm: seed of the cases")
    p.add_argument("--adapter", default=None, help="adapter folder ('none': fresh adapter)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--regimes", default="no-memory,window,full-context,memory-only,memory+window,"
                   "memory+full-context,bm25")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--offset", type=_non_negative, default=0,
                   help="skip the first N episodes (with --limit: a slice; resumes a run stopped by "
                        "--max-minutes, merged with eval-merge)")
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--budget-tokens", type=int, default=2048)
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="generated tokens per answer (default 32; 48 with --suite reply-harm)")
    p.add_argument("--no-generate", action="store_true", help="skip generated EM/F1")
    p.add_argument("--no-swap", action="store_true", help="skip the swap test")
    p.add_argument("--prompt-tokens", type=int, default=3072,
                   help="cut shown history from the front beyond this many prompt tokens")
    p.add_argument("--gen-limit", type=int, default=None,
                   help="generate (EM/F1) for the first N episodes only")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes and report the episodes done so far")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--shard", default=None,
                   help="K/N: evaluate only the K-th of N contiguous blocks (merge the folders "
                        "with eval-merge)")
    p.add_argument("--out", default="eval_out")
    p.set_defaults(func=_eval)
    m = sub.add_parser("eval-merge", help="merge eval folders into one: shards of a run (`eval "
                       "--shard K/N`) and runs of disjoint regimes on the same episodes (e.g. a new "
                       "adapter's memory regimes beside an earlier run's adapter-free baselines)")
    m.add_argument("folders", nargs="+", help="eval output folders (results.json + rows.jsonl)")
    m.add_argument("--common-episodes", action="store_true",
                   help="when regime groups cover different episodes (a run stopped by "
                        "--max-minutes), keep the episodes every group has instead of refusing")
    m.add_argument("--out", required=True)
    m.set_defaults(func=_eval_merge)


def _unavailable(error: ImportError):
    """`chat` and `demo` that say which package is missing instead of a traceback."""
    def run(args: argparse.Namespace) -> int:
        print(f"agentmem {args.command} needs LangGraph/LangChain ({error}); "
              "install agentmem with its dependencies", file=sys.stderr)
        return 2

    def add(sub: argparse._SubParsersAction) -> None:
        for name in ("chat", "demo"):
            sub.add_parser(name, help=f"unavailable: {error}").set_defaults(func=run)
    return add


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentmem", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    try:  # lazy: agentmem never imports graphs at import time
        from graphs.cli import add_subcommands
    except ImportError as e:  # a training box with torch + transformers only: train/eval still work
        add_subcommands = _unavailable(e)
    add_subcommands(sub)  # chat, demo
    inspect = sub.add_parser("inspect", help="write a short conversation into δ-mem and print "
                             "the per-layer state norms and tokens written")
    inspect.add_argument("--backbone", default=DEFAULT_BACKBONE)
    inspect.add_argument("--adapter", default=None, help="adapter folder (default: the shipped one)")
    inspect.add_argument("--write-mode", choices=["token", "message"], default="token")
    inspect.set_defaults(func=_inspect)
    _add_train(sub)
    _add_eval(sub)
    args = parser.parse_args(argv)
    from agentmem.errors import UnsupportedLaunchError

    try:
        return args.func(args)
    except UnsupportedLaunchError as e:  # nothing written yet: say why, in one line
        print(f"agentmem {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

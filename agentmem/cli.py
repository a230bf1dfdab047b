"""The ``agentmem`` command: chat with a δ-mem agent, play the demo, inspect, train, evaluate.

Building the parser is cheap: a built-in command's flags are added only when that command is the
one named, and torch, transformers, LangChain and LangGraph load inside the command functions, so
``agentmem --help`` answers at once. ``chat`` and ``demo`` come from the ``agentmem.commands``
entry points (:func:`_plugin_commands`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from agentmem.errors import AdapterError, BackboneError, UnsupportedLaunchError
from agentmem.options import at_least, windows

DESCRIPTION = """\
δ-mem: an online associative memory inside a frozen LLM's attention, for LangChain and LangGraph
agents. Try `agentmem demo`, then talk to a persistent agent with `agentmem chat`; inspect, train,
eval and eval-merge work on δ-mem adapters."""
# = agentmem.model.backbones.DEFAULT_BACKBONE, which imports torch (tests/test_cli_top.py keeps
# the two equal): the flags' defaults are shown without loading the model code.
DEFAULT_BACKBONE = "smollm2-135m-instruct"

DEMO_TURNS = [
    [{"role": "user", "content": "Hi! My name is Ada and my sister Lin lives in Porto."},
     {"role": "assistant", "content": "Nice to meet you, Ada. I will remember that Lin lives in Porto."}],
    [{"role": "user", "content": "My dog is called Biscuit and he is four years old."},
     {"role": "assistant", "content": "Biscuit sounds lovely."}],
    [{"role": "user", "content": "I work as a glassblower in Lyon."},
     {"role": "assistant", "content": "Glassblowing is a beautiful craft."}],
]


def _inspect(args: argparse.Namespace) -> int:
    from agentmem.model.adapters import load_adapter, shipped_adapter
    from agentmem.model.attach import attach_delta_mem
    from agentmem.model.backbones import load_backbone
    from agentmem.model.config import DeltaMemConfig
    from agentmem.model.passes import write_chat

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
    from agentmem.options import values
    from agentmem.train import TrainConfig, train
    from agentmem.train.config import ADAPTER_FLAGS

    cfg = TrainConfig(**values(args, args.train_options), adapter=values(args, ADAPTER_FLAGS))
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

    from agentmem.eval.regimes import EvalOptions, evaluate, parse_shard, protocol_options, shard_bounds
    from agentmem.eval.report import last_line, write_outputs
    from agentmem.options import values

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
    opts = EvalOptions(**values(args, args.eval_options))
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

    from agentmem.eval.reply_harm import (
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
    from agentmem.eval.report import last_line, merge_folders, write_outputs

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
    from agentmem.model.adapters import backbone_dtype, load_adapter, shipped_adapter
    from agentmem.model.attach import attach_delta_mem
    from agentmem.model.backbones import load_backbone
    from agentmem.model.devices import resolve_device

    folder = adapter or shipped_adapter(backbone)
    folder = folder if folder and str(folder) != "none" else None
    model, tok = load_backbone(backbone, dtype=backbone_dtype(folder))
    model = model.to(resolve_device(device))
    if folder:
        return load_adapter(model, folder), tok
    print("warning: no adapter given or shipped; using a freshly initialised one", file=sys.stderr)
    return attach_delta_mem(model), tok


def _train_options(p: argparse.ArgumentParser) -> None:
    from agentmem.model.config import DeltaMemConfig
    from agentmem.options import add_options
    from agentmem.train.config import ADAPTER_DEFAULTS, ADAPTER_FLAGS, TrainConfig

    names = add_options(p, TrainConfig)
    add_options(p, DeltaMemConfig, only=ADAPTER_FLAGS, defaults=ADAPTER_DEFAULTS)
    p.set_defaults(func=_train, train_options=names)


def _inspect_options(p: argparse.ArgumentParser) -> None:
    from agentmem.model.config import DeltaMemConfig
    from agentmem.options import add_options

    p.add_argument("--backbone", type=backbone_arg, default=DEFAULT_BACKBONE,
                   help="embedded backbone name or local HF folder")
    p.add_argument("--adapter", default=None, help="adapter folder (default: the shipped one)")
    add_options(p, DeltaMemConfig, only=("write_mode",))
    p.set_defaults(func=_inspect)


def _eval_options(p: argparse.ArgumentParser) -> None:
    from agentmem.eval.regimes import EvalOptions
    from agentmem.options import add_options

    p.add_argument("--data", default=None, help="episodes JSONL, or a bAbI / LoCoMo file (with "
                   "--suite reply-harm: optional bAbI file or folder whose stories are memories)")
    p.add_argument("--suite", choices=["babi", "locomo", "reply-harm"], default=None,
                   help="reply-harm: ordinary requests with an unrelated memory present; the "
                        "frozen model's replies against the memory-reading model's (default: "
                        "the format of --data: JSONL episodes)")
    p.add_argument("--split", choices=["train", "test"], default="test",
                   help="reply-harm: the split of requests and memories")
    p.add_argument("--windows", type=windows, default="0,4",
                   help="reply-harm: history messages shown before the request, comma-separated")
    p.add_argument("--seed", type=int, default=0, help="reply-harm: seed of the cases")
    p.add_argument("--adapter", default=None,
                   help="adapter folder ('none': fresh adapter; default: the shipped one)")
    p.add_argument("--backbone", type=backbone_arg, default=DEFAULT_BACKBONE,
                   help="embedded backbone name or local HF folder")
    p.add_argument("--limit", type=at_least(1), default=None,
                   help=f"evaluate at most N episodes (default: all; reply-harm: {HARM_CASES} cases)")
    p.add_argument("--offset", type=at_least(0), default=0,
                   help="skip the first N episodes (with --limit: a slice; resumes a run stopped by "
                        "--max-minutes, merged with eval-merge)")
    names = add_options(p, EvalOptions, defaults={"max_new_tokens": None})
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--shard", default=None,
                   help="K/N: evaluate only the K-th of N contiguous blocks (merge the folders "
                        "with eval-merge)")
    p.add_argument("--out", default="eval_out",
                   help="output folder (results.json, rows.jsonl, report.md)")
    p.set_defaults(func=_eval, eval_options=names)


def _eval_merge_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="+", help="eval output folders (results.json + rows.jsonl)")
    p.add_argument("--common-episodes", action="store_true",
                   help="when regime groups cover different episodes (a run stopped by "
                        "--max-minutes), keep the episodes every group has instead of refusing")
    p.add_argument("--out", required=True, help="folder of the merged results")
    p.set_defaults(func=_eval_merge)


# name -> (one-line help, adds the flags); a command's flags are built only when it is named
def _convert_official_options(p: argparse.ArgumentParser) -> None:
    from agentmem.model.official import convert_official_options

    convert_official_options(p)


BUILTIN_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "inspect": ("write a short conversation into δ-mem and print the per-layer state norms and "
                "tokens written", _inspect_options),
    "train": ("train a δ-mem adapter on episodes (JSONL)", _train_options),
    "eval": ("evaluate every regime side by side", _eval_options),
    "eval-merge": ("merge eval folders into one: shards of a run (`eval --shard K/N`) and runs of "
                   "disjoint regimes on the same episodes (e.g. a new adapter's memory regimes "
                   "beside an earlier run's adapter-free baselines)", _eval_merge_options),
    "convert-official": ("convert an adapter released by the δ-mem authors into an agentmem "
                         "adapter folder (docs/official_adapters.md)", _convert_official_options),
}
COMMANDS_GROUP = "agentmem.commands"  # entry points: name = "module:add(subparsers)"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help with each flag's default (not for None, switches, or help that says ``default:``
    itself); descriptions and epilogs keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or isinstance(action.default, bool) or "default:" in text:
            return action.help
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with :class:`HelpFormatter` whose errors are one line, exit code 2."""

    def __init__(self, *args: Any, formatter_class: type = HelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def backbone_arg(text: str) -> str:
    """A flag type: an embedded backbone name or a local HF folder with a ``config.json``.

    Loading (and converting the embedded GGUF) is left to the command; this only refuses a name
    that can be neither, so the error names the flag.
    """
    from agentmem.model.backbones.loader import EMBEDDED, resolve_backbone

    if text not in EMBEDDED:
        try:
            resolve_backbone(text)
        except BackboneError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return text


def adapter_arg(text: str) -> str:
    """A flag type: an adapter folder (its config and weights files present; their contents are
    verified when the adapter loads)."""
    from pathlib import Path

    from agentmem.model.adapters import CONFIG_FILE, WEIGHTS_FILE

    folder = Path(text).expanduser()
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / f).is_file()]
    if missing:
        raise argparse.ArgumentTypeError(f"{text!r} is not an adapter folder (no {' or '.join(missing)})")
    return text


def version() -> str:
    """The installed distribution's version (``agentmem --version``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("agentmem")
    except PackageNotFoundError:
        return "unknown (agentmem is not installed: pip install -e .)"


def _plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands other packages register (``graphs``: ``chat`` and ``demo``) through the
    ``agentmem.commands`` entry points, so that this module imports no layer above it. A
    command whose package cannot be imported says so instead of failing with a traceback."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            add = ep.load()
        except ImportError as e:  # e.g. a training box with torch + transformers only
            _unavailable(sub, ep.name, e)
            continue
        add(sub)


def _unavailable(sub: argparse._SubParsersAction, name: str, error: ImportError) -> None:
    def run(args: argparse.Namespace) -> int:
        print(f"agentmem {name} is unavailable: {error}; install agentmem with its "
              "dependencies", file=sys.stderr)
        return 2

    sub.add_parser(name, help=f"unavailable: {error}").set_defaults(func=run)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``agentmem`` parser; of the built-in commands only ``command`` gets its flags.

    Args:
        command: the command about to run (None: only the command list, e.g. for ``--help``).
    """
    parser = CommandParser(prog="agentmem", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=CommandParser)
    _plugin_commands(sub)  # chat, demo
    for name, (text, add) in BUILTIN_COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        if name == command:
            add(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)  # top-level flags take no value
    args = build_parser(command).parse_args(argv)
    try:
        return args.func(args)
    except (UnsupportedLaunchError, BackboneError, AdapterError) as e:  # nothing written yet
        print(f"agentmem {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nagentmem {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

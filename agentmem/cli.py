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


def _demo(args: argparse.Namespace) -> int:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentmem", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="write a short conversation into δ-mem and show the state")
    demo.add_argument("--backbone", default=DEFAULT_BACKBONE)
    demo.add_argument("--adapter", default=None, help="adapter folder (default: the shipped one)")
    demo.add_argument("--write-mode", choices=["token", "message"], default="token")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

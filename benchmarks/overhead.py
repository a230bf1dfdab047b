"""δ-mem overhead on the default backbone (fp32, CPU): decode, write passes, and the scan.

Prints a table and, as its last line, JSON with decode_ratio_b1 and decode_ratio_b8 (64 greedy
tokens at batch 1 and batch 8; decode_ratio repeats the batch-1 figure under its older name),
write_ratio_512, write_ratio_2048 and scan_speedup_2048. Frozen and δ-mem runs are interleaved
so both sides see the same machine load; ratios use the minimum over repeats (load on a shared
machine only ever adds time, so the minimum is the best estimate of the uncontended cost);
medians are printed beside them.
Usage: python benchmarks/overhead.py [--threads 2] [--repeats 7] [--only decode,write,scan]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # measure this checkout

import torch  # noqa: E402

from agentmem.model.attach import attach_delta_mem  # noqa: E402
from agentmem.model.backbones import load_backbone  # noqa: E402
from agentmem.ops import delta_rule_chunked, delta_rule_reference, fused  # noqa: E402

DECODE_BATCHES = (1, 8)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def paired(frozen, mem, repeats: int) -> tuple[float, float, float, float]:
    """(min frozen, min δ-mem, median frozen, median δ-mem) of interleaved timings."""
    frozen(), mem()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(frozen))
        b.append(timed(mem))
    return min(a), min(b), statistics.median(a), statistics.median(b)


@torch.no_grad()
def decode_times(frozen, dm, batch: int, repeats: int) -> tuple[float, ...]:
    prompt = torch.randint(100, 40000, (batch, 128), generator=torch.Generator().manual_seed(0))
    kw = dict(max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0)
    with dm.memory(write=True, batch_size=batch) as c:  # give the memory something to read
        dm.model.get_decoder()(prompt)
    state = dm.to_state(c)

    def run_mem():
        with dm.memory(state, write=True):  # TSW writes on during decode
            dm.model.generate(prompt, **kw)

    return paired(lambda: frozen.generate(prompt, **kw), run_mem, repeats)


@torch.no_grad()
def write_times(frozen, dm, T: int, repeats: int) -> tuple[float, ...]:
    ids = torch.randint(100, 40000, (1, T), generator=torch.Generator().manual_seed(T))

    def run_mem():
        with dm.memory(write=True):
            dm.model.get_decoder()(ids, use_cache=False)

    return paired(lambda: frozen.get_decoder()(ids, use_cache=False), run_mem, repeats)


@torch.no_grad()
def scan_times(repeats: int) -> tuple[float, float, float]:
    g = torch.Generator().manual_seed(0)
    q, k = (torch.nn.functional.normalize(torch.randn(1, 2048, 1, 8, generator=g), dim=-1)
            for _ in range(2))
    v, beta = torch.randn(1, 2048, 1, 8, generator=g), torch.rand(1, 2048, 1, 8, generator=g)
    S0 = torch.zeros(1, 1, 8, 8)
    ref, chunked = paired(lambda: delta_rule_reference(q, k, v, beta, S0),
                          lambda: delta_rule_chunked(q, k, v, beta, S0), repeats)[:2]
    compiled = min(timed(lambda: fused.recurrence(q, k, v, beta, S0)) for _ in range(repeats + 1))
    return ref, chunked, compiled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="decode,write,scan",
                        help="comma-separated subset of decode, write, scan")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not only or only - {"decode", "write", "scan"}:
        parser.error(f"--only {args.only!r}: expected items of decode, write, scan")
    torch.set_num_threads(args.threads)
    rows, result = {}, {}
    if only & {"decode", "write"}:
        frozen, _ = load_backbone()
        model, _ = load_backbone()
        dm = attach_delta_mem(model)
    if "decode" in only:
        for B in DECODE_BATCHES:
            rows[f"decode 64 tok after 128, B={B}"] = decode_times(frozen, dm, B, args.repeats)
    if "write" in only:
        for T in (512, 2048):
            rows[f"write pass {T} tok"] = write_times(frozen, dm, T, args.repeats)
    print(f"{'measure (min / median s)':30s} {'frozen':>15s} {'δ-mem':>15s} {'ratio':>7s}")
    for name, (a, b, ma, mb) in rows.items():
        print(f"{name:30s} {a:7.3f}/{ma:7.3f} {b:7.3f}/{mb:7.3f} {b / a:7.3f}")
    ratio = {name: v[1] / v[0] for name, v in rows.items()}
    if "decode" in only:
        for B in DECODE_BATCHES:
            result[f"decode_ratio_b{B}"] = round(ratio[f"decode 64 tok after 128, B={B}"], 4)
        result["decode_ratio"] = result["decode_ratio_b1"]  # the older key: batch 1
    if "write" in only:
        result["write_ratio_512"] = round(ratio["write pass 512 tok"], 4)
        result["write_ratio_2048"] = round(ratio["write pass 2048 tok"], 4)
    if "scan" in only:
        ref, fast, compiled = scan_times(args.repeats)
        print(f"{'scan 2048 (ref / chunked)':30s} {ref:15.4f} {fast:15.4f} {ref / fast:6.1f}x")
        print(f"{'scan 2048 (ref / compiled)':30s} {ref:15.4f} {compiled:15.4f} "
              f"{ref / compiled:6.1f}x")
        result["scan_speedup_2048"] = round(ref / fast, 2)  # autograd-capable chunked form
        result["compiled_scan_speedup_2048"] = round(ref / compiled, 1)  # inference kernel
    result |= {"threads": args.threads, "repeats": args.repeats}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

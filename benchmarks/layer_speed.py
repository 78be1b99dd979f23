"""Forward+backward time and peak memory of retrieval per similarity, against torch baselines.

Each case is ``softmax(beta * similarity(K, q)) @ V`` with gradients for q, K and V (``--quick``:
N=1000 only; ``--sorts-only``: the row sorts of ``ahop.sorting`` vs ``torch.sort``). Baselines:
``scaled_dot_product_attention`` (dot), ``-torch.cdist(q, K, p)`` and the same softmax (euclidean,
manhattan), autograd through the adaptive similarity's literal definition (where it fits). Peak
memory: growth of peak RSS in a fresh subprocess per case, with glibc's mmap threshold at 128 KiB
(freed tensors leave RSS at once). Command and results: docs/results.md.
"""
# ruff: noqa: E402

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/layer_speed.py` from anywhere

from ahop.functional import retrieve
from ahop.similarity import DEFAULT_MEMORY_BUDGET, build_similarity
from ahop.sorting import sort_rows_, sort_rows_with_order
from benchmarks.common import PeakMemory, markdown_table, median_time, save_figure

QUERIES = 256
#: similarity -> its torch baseline
BASELINE = {"dot": "sdpa", "euclidean": "cdist", "manhattan": "cdist", "adaptive": "naive autograd"}
MAX_REPEATS = 50
BETA = 0.1
#: Run the naive adaptive baseline only when its autograd graph should fit in this many bytes.
NAIVE_ADAPTIVE_LIMIT = 10 * 2**30
#: Bytes per (query, memory, dimension) element that naive autograd keeps, both bases together:
#: differences, values, sorted values and int64 sort indices.
NAIVE_ADAPTIVE_BYTES = 40


def forward(kind: str, similarity: str, d: int):
    """``(q, k, v) -> softmax(beta * similarity(k, q)) @ v``: ahop's ``retrieve`` (``kind``
    ``"ahop"``) or the torch baseline."""
    if kind == "ahop":
        module = build_similarity(similarity, dim=d)
        return lambda q, k, v: retrieve(q, k, v, similarity=module, beta=BETA)
    if similarity == "dot":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=BETA)
    if similarity != "adaptive":
        p = {"euclidean": 2.0, "manhattan": 1.0}[similarity]
        return lambda q, k, v: (-BETA * torch.cdist(q, k, p=p)).softmax(-1) @ v
    weights = build_similarity("adaptive", dim=d).effective_weights().detach()

    def naive(q, k, v):  # the literal definition through autograd: no blocks, ``torch.sort``
        bases = (-(q.unsqueeze(-2) - k.unsqueeze(-3)).pow(2), q.unsqueeze(-2) * k.unsqueeze(-3))
        score = sum(b.sort(dim=-1, descending=True).values @ w for b, w in zip(bases, weights))
        return (BETA * score).softmax(-1) @ v

    return naive


def run_case(kind: str, similarity: str, n: int, d: int, repeats: int, queries: int = QUERIES):
    """Time one case in this process; report seconds and peak-RSS growth in MiB."""
    torch.manual_seed(0)
    q, k, v = (torch.rand(1, size, d, requires_grad=True) for size in (queries, n, n))
    fn = forward(kind, similarity, d)

    def step() -> None:
        fn(q, k, v).sum().backward()

    with PeakMemory() as memory:
        start = time.perf_counter()
        step()  # warm-up, and a first estimate: millisecond cases get more repeats (up to ~1 s)
        first = time.perf_counter() - start
        repeats = max(repeats, min(MAX_REPEATS, int(1.0 / max(first, 1e-6))))
        seconds = median_time(step, repeats=repeats, warmup=0)
    return {"seconds": seconds, "peak_mib": memory.peak_mib}


def in_subprocess(kind: str, similarity: str, n: int, d: int, repeats: int, queries: int = QUERIES):
    """:func:`run_case` in a fresh process (peak memory of this case only)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from benchmarks.layer_speed import run_case\n"
        f"print(json.dumps(run_case({kind!r}, {similarity!r}, {n}, {d}, {repeats}, {queries})))"
    )
    # a fixed mmap threshold makes glibc return freed blocks to the OS at once, so peak RSS
    # tracks live tensor memory rather than the allocator's cache of freed blocks
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def sorting_speed(rows: int = 25600, d: int = 784) -> list[list[object]]:
    """Row sorts of ``(rows, d)`` float32 values: ``ahop.sorting`` against ``torch.sort``."""
    values = torch.rand(rows, d) - 0.5
    cases = {
        "values only": (lambda: sort_rows_(values.clone()), lambda: values.clone().sort(-1).values),
        "values + order": (lambda: sort_rows_with_order(values), lambda: values.sort(dim=-1)),
    }
    table = []
    for name, (ours, theirs) in cases.items():
        ours_s, theirs_s = median_time(ours, repeats=5), median_time(theirs, repeats=5)
        table.append([name, rows, d, ours_s * 1e3, theirs_s * 1e3, f"{theirs_s / ours_s:.1f}x"])
    return table


def plot(records: list[tuple[str, float, float, float]]) -> Path:
    """Times (ahop, baseline) and their ratio per case ``(label, ours s, baseline s, ratio)``."""
    figure = Figure(figsize=(12, 4.5))
    times, ratios = figure.subplots(1, 2)
    labels, ours_s, ref_s, ratio_values = zip(*records)
    x = range(len(records))
    times.bar([i - 0.2 for i in x], [t * 1e3 for t in ours_s], 0.4)
    times.bar([i + 0.2 for i in x], [t * 1e3 for t in ref_s], 0.4)
    times.legend(["ahop", "baseline (sdpa / cdist / naive autograd)"], fontsize=8)
    times.set(ylabel="forward+backward ms", yscale="log")
    ratios.bar(x, ratio_values, color="tab:green")
    for target, name in ((1.2, "dot target 1.2x"), (1.5, "distance target 1.5x")):
        ratios.axhline(target, linestyle="--", linewidth=1, color="gray")
        ratios.text(len(records) - 0.5, target, name, ha="right", va="bottom", fontsize=7)
    ratios.set_ylabel("time ratio ahop / baseline (lower is better)")
    for axis in (times, ratios):
        axis.set_xticks(list(x), labels, rotation=90, fontsize=7)
    return save_figure(figure, "layer_speed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=1000 only, fewer repeats")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sorts-only", action="store_true", help="only the row-sort table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sort_headers = ["sort", "rows", "d", "ahop.sorting ms", "torch.sort ms", "torch / ahop"]
    if args.sorts_only:
        print(markdown_table(sort_headers, sorting_speed()))
        return
    rows, records = [], []
    sizes = [1000] if args.quick else [1000, 10000]
    for n, d, similarity in itertools.product(sizes, (64, 784), BASELINE):
        repeats = 1 if similarity == "adaptive" and n > 1000 else 2 if args.quick else 3
        ours = in_subprocess("ahop", similarity, n, d, repeats)
        peak, elements = ours["peak_mib"], QUERIES * n * d  # of the naive (Q, N, d) tensors
        if similarity != "adaptive" or elements * NAIVE_ADAPTIVE_BYTES <= NAIVE_ADAPTIVE_LIMIT:
            ref = in_subprocess("torch", similarity, n, d, repeats)
            ratio, ref_s = ours["seconds"] / ref["seconds"], ref["seconds"]
            cells = [ref_s * 1e3, BASELINE[similarity], f"{ratio:.2f}x", peak, ref["peak_mib"]]
        else:
            ratio, ref_s, cells = 0.0, 0.0, ["-", "naive autograd: does not fit", "-", peak, "-"]
        rows.append(
            [similarity, QUERIES, n, d, ours["seconds"] * 1e3, *cells, elements * 4 / 2**20]
        )
        records.append((label := f"{similarity} N={n} d={d}", ours["seconds"], ref_s, ratio))
        print(f"done {label}", file=sys.stderr, flush=True)
    headers = ["similarity", "Q", "N", "d", "ahop ms", "baseline ms", "baseline", "time ratio"]
    headers += ["ahop peak MiB", "baseline peak MiB", "naive (Q,N,d) fp32 MiB"]
    budget = f"memory budget {DEFAULT_MEMORY_BUDGET / 2**20:.0f} MiB per block"
    print(f"forward+backward, {args.threads} threads, {budget}\n")
    print(markdown_table(headers, rows))
    print("\nrow sorts (float32, ascending), the adaptive similarity's inner loop:\n")
    print(markdown_table(sort_headers, sorting_speed()))
    print(f"\nplot: {plot(records)}")


if __name__ == "__main__":
    main()

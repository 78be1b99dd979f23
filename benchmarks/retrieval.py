"""Associative-memory retrieval experiments: Universal Hopfield Networks (UHN) and A-Hop.

``python benchmarks/retrieval.py <experiment> --dataset <dataset>`` runs one of :data:`EXPERIMENTS`
(1. capacity, 2. robustness, 3. separation, 4. adaptive, 5. classical, 6. paper) or ``all``
(``--quick``: small sizes, a smoke run), prints markdown tables and its wall time and writes
``benchmarks/out/retrieval_<experiment>_<dataset>.{png,json}``; commands and results:
docs/results_retrieval.md. Datasets: ``mnist`` = the 8,000-image "train" carve of the offline MNIST
10k test split in ``../shared/data``; ``digits`` = scikit-learn's 8x8 digits (train carve, 1,437
images); ``cifar10`` = torchvision's pickles in ``--data-dir``. Seed ``s`` draws the memories of
run ``s``; test queries use ``stream_seed(s, STREAMS["test"], N)``, A-Hop training its own stream.
"""
# ruff: noqa: E402

from __future__ import annotations

import argparse
import copy
import itertools
import math
import statistics
import sys
import time
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/retrieval.py` from anywhere

import torch
from matplotlib.figure import Figure
from torch import Tensor

from ahop.classical import CAPACITY_THEORY, recall_statistics
from ahop.functional import retrieve
from ahop.objectives import fraction_correctly_retrieved, retrieval_accuracy, train_similarity
from ahop.separation import build_separation
from ahop.similarity import SIMILARITIES, AdaptiveSimilarity
from ahop.uhop import UHopSimilarity
from ahop.variants import Variant, build_variant
from benchmarks.common import machine, markdown_table, save_figure, save_json
from datamodules.retrieval import MEMORY_SOURCES, STREAMS, make_queries, stream_seed
from tasks.reports import format_mean_std

SHARED = ROOT.parent / "shared" / "data"
FIXED_SIMILARITIES = ("dot", "euclidean", "manhattan", "cosine")
#: UHN's softmax inverse temperature (large: close to picking the best match, see docs)
BETA = 1000.0
#: UHN criterion: summed squared pixel error <= 50 for 28x28 images in [0, 1]
UHN_THRESHOLD, UHN_PIXELS = 50.0, 784
#: noise of the capacity / separation query set (Gaussian, clamped to [0, 1])
NOISE_SIGMA = 0.5
#: dataset -> ``carve_from`` of its ``MEMORY_SOURCES`` options (memories from the train split)
DATASETS = {"mnist": "test", "digits": None, "cifar10": None}
#: memories of a run's pool: smaller memory sets are subsets of it
MAX_MEMORIES = 1000
#: synthetic memories of experiment 6 (our choice: the paper's generator is not published)
SYNTHETIC_DIM = 50


@dataclass
class Context:
    """What every experiment needs: data, seeds (all ``runs``; this experiment's), sizes (full or
    ``--quick``), and the pools of memories and image shape drawn so far."""

    dataset: str
    data_dir: Path
    quick: bool
    runs: list[int]
    seeds: list[int] = field(default_factory=list)
    shape: tuple[int, ...] = ()
    _pools: dict[int, Tensor] = field(default_factory=dict)

    def draw(self, source: str, num: int, seed: int) -> tuple[Tensor, tuple[int, ...]]:
        """``num`` patterns ``(num, D)`` of a dataset or ``"synthetic"`` (U[0, 1]^50), and shape."""
        options = {"split": "train", "data_dir": str(self.data_dir), "synthetic_dim": SYNTHETIC_DIM}
        options["carve_from"] = DATASETS.get(source)
        name = "uniform" if source == "synthetic" else source
        patterns, shape = MEMORY_SOURCES[name](num, torch.Generator().manual_seed(seed), options)
        return patterns.float().contiguous(), tuple(shape)

    def memories(self, seed: int, num: int) -> Tensor:
        """``num`` memories of run ``seed``: a random subset of its pool (nested across N)."""
        if seed not in self._pools:
            self._pools[seed], self.shape = self.draw(self.dataset, MAX_MEMORIES, seed)
        generator = torch.Generator().manual_seed(stream_seed(seed, 3, num))
        pool = self._pools[seed]
        return pool[torch.randperm(len(pool), generator=generator)[:num]]

    @property
    def threshold(self) -> float:
        """UHN's 50, scaled down for images under 28x28 (digits: 64 pixels); CIFAR keeps 50."""
        pixels = math.prod(self.shape[1:]) if self.shape else UHN_PIXELS
        return UHN_THRESHOLD * min(1.0, pixels / UHN_PIXELS)

    def variant(self, name: str, **kwargs: Any) -> Variant:
        """A query variant for this data's images (``image_shape`` ignored where not taken)."""
        if not self.shape:
            self.memories(self.seeds[0], 1)
        return build_variant(name, image_shape=self.shape, **kwargs)


def fmt(values: Sequence[float]) -> str:
    """``mean ± std`` (population std), 3 decimals; the statistics module's arithmetic (that of
    :func:`tasks.reports.mean_std` differs in the last bit, flipping a third decimal at times)."""
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return format_mean_std(statistics.fmean(values), std, digits=3, missing="nan")


def _curve(ax, xs: Sequence[float], runs: list[list[float]], label: str) -> None:
    means = [statistics.fmean(r) for r in runs]
    stds = [statistics.pstdev(r) if len(r) > 1 else 0.0 for r in runs]
    ax.errorbar(xs, means, yerr=stds, marker="o", ms=3, capsize=2, label=label)


def _bold_table(title: str, headers: Sequence[str], rows: list[list[Any]]) -> None:
    print(f"\n**{title}**\n\n{markdown_table(headers, rows)}")


# -- 1.-3. sweeps of the fixed retrieval ------------------------------------------------------


def sweep(ctx, panels, settings, caption, title, header="{}", num=None, by_level=True) -> dict:
    """Fraction retrieved (UHN's criterion) per seed, ``results[panel][setting][level]``, printed
    (rows: levels, or settings) and plotted. ``panels``: name -> (levels, level -> variant) at
    ``num`` memories (None: N = level); ``settings``: label -> (similarity, separation, options).
    All N memories are corrupted once and retrieved in one batched call."""
    results = {p: {k: {v: [] for v in lv} for k in settings} for p, (lv, _) in panels.items()}
    for seed, (name, (levels, make)) in itertools.product(ctx.seeds, panels.items()):
        for level in levels:
            memories = ctx.memories(seed, n := num or int(level))
            seed_q = stream_seed(seed, STREAMS["test"], n)
            queries, sources = make_queries(memories, make(level), 1, seed_q)
            for label, (sim, sep, opts) in settings.items():
                out = retrieve(queries, memories, similarity=sim, separation=sep, beta=BETA, **opts)
                score = fraction_correctly_retrieved(out, memories[sources], ctx.threshold)
                results[name][label][level].append(float(score))
    figure = Figure(figsize=(10, 3.8))
    for i, (panel, per_setting) in enumerate(results.items()):
        labels, levels = list(per_setting), panels[panel][0]
        if by_level:
            rows = [[v, *(fmt(per_setting[k][v]) for k in labels)] for v in levels]
            table = markdown_table([header.format(panel), *labels], rows)
        else:
            rows = [[k, *(fmt(per_setting[k][v]) for v in levels)] for k in labels]
            table = markdown_table([header.format(panel), *map(str, levels)], rows)
        print(f"\n{caption.format(panel)}\n\n{table}")
        ax = figure.add_subplot(1, len(results), i + 1)
        for label in labels:
            _curve(ax, levels, [per_setting[label][v] for v in levels], label)
        xlabel = panel if num else "stored patterns N"
        ax.set(xlabel=xlabel, ylabel="fraction retrieved", ylim=(-0.05, 1.05))
        if not num:
            ax.set(xscale="log", title=panel)
        ax.legend(fontsize=8 if by_level else 7)
    figure.suptitle(title)
    return {"results": results, "figure": figure}


def _size_sweep(ctx: Context, settings: dict, caption: str, title: str, **table: Any) -> dict:
    """Capacity / separation: N stored patterns; masked (bottom half) and noisy queries."""
    sizes = [2, 10, 100] if ctx.quick else [2, 5, 10, 20, 50, 100, 200, 500, 1000]
    variants = {"mask": ctx.variant("mask", fraction=0.5, mode="bottom")}
    variants[f"noise {NOISE_SIGMA}"] = ctx.variant("noise", sigma=NOISE_SIGMA)
    panels = {name: (sizes, lambda n, v=v: v) for name, v in variants.items()}
    return {"sizes": sizes, **sweep(ctx, panels, settings, caption, title, **table)}


def capacity(ctx: Context) -> dict[str, Any]:
    """Fraction correctly retrieved vs number of stored patterns, per similarity and query set."""
    settings = {s: (s, "softmax", {}) for s in FIXED_SIMILARITIES}
    caption = f"**{ctx.dataset}, queries: {{}}** (fraction correctly retrieved)"
    title = f"UHN capacity, {ctx.dataset}, softmax beta={BETA:g}"
    return _size_sweep(ctx, settings, caption, title, header="N")


#: label -> (separation name, options); dot similarity throughout
SEPARATION_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "identity": ("identity", {}),
    "identity (sum-normalised)": ("polynomial", {"order": 1}),
    "square": ("polynomial", {"order": 2}),
    "cube": ("polynomial", {"order": 3}),
    "polynomial-10": ("polynomial", {"order": 10}),
    f"softmax (beta={BETA:g})": ("softmax", {}),
    "max": ("max", {}),
}


def separation(ctx: Context) -> dict[str, Any]:
    """Dot similarity with each separation function, vs number of stored patterns."""
    settings = {k: ("dot", sep, opts) for k, (sep, opts) in SEPARATION_SETTINGS.items()}
    caption = f"**{ctx.dataset}, dot similarity, queries: {{}}** (fraction retrieved)"
    title = f"Separation functions with dot similarity, {ctx.dataset}"
    return _size_sweep(ctx, settings, caption, title, header="separation \\ N", by_level=False)


def robustness(ctx: Context) -> dict[str, Any]:
    """N = 100 stored patterns; vary the noise sigma and the masked fraction (bottom rows)."""
    num = 100
    sigmas = [0.1, 0.5, 1.5] if ctx.quick else [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5]
    fractions = [0.1, 0.5, 0.9] if ctx.quick else [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    panels = {"noise sigma": (sigmas, lambda v: ctx.variant("noise", sigma=v))}
    masked = (fractions, lambda v: ctx.variant("mask", fraction=v, mode="bottom"))
    panels["masked fraction (bottom rows)"] = masked
    settings = {s: (s, "softmax", {}) for s in FIXED_SIMILARITIES}
    caption = f"**{ctx.dataset}, N={num}, {{}}** (fraction correctly retrieved)"
    title = f"UHN robustness, {ctx.dataset}, N={num}, softmax beta={BETA:g}"
    return {"num_memories": num, **sweep(ctx, panels, settings, caption, title, num=num)}


# -- 4. A-Hop vs fixed ------------------------------------------------------------------------

#: ablation label -> AdaptiveSimilarity options (the first is the full A-Hop similarity)
ABLATIONS: dict[str, dict[str, Any]] = {
    "A-Hop (distance+dot, sort, cumsum)": {},
    "no sort": {"sort": False},
    "no cumulative sum": {"cumulative": False},
    "distance only": {"bases": ("distance",)},
    "dot only": {"bases": ("dot",)},
}
#: A-Hop training: the init of configs/retrieval.yaml (start as 0.1 (<k,q> - ||k-q||²)); Adam at a
#: constant lr 0.01 (the config's 0.03 with its cosine schedule oscillated here without one)
ADAPTIVE_INIT = {"beta_dis": 0.1, "beta_dot": 0.1}
ADAPTIVE_BETA = 1.0


#: sizes of experiments 4 and 6: memories, Adam steps, batch, learning rate, queries per memory
Budget = namedtuple(
    "Budget",
    "memories steps batch lr train_per_memory test_per_memory val_per_memory",
    defaults=[0],
)


ADAPTIVE_BUDGETS = {
    # adaptive similarity costs O(Q N d log d): MNIST (d=784) is kept to N=100, batch 64
    "mnist": Budget(100, 200, 64, 0.01, 16, 5),
    "digits": Budget(200, 300, 256, 0.01, 16, 5),
    "cifar10": Budget(100, 200, 64, 0.01, 16, 5),
    "quick": Budget(50, 10, 64, 0.01, 4, 2),
}


def fit_similarity(similarity, memories, variant, budget, seed, beta=1.0, schedule="constant"):
    """Train ``similarity`` in place on fresh corruptions of ``memories`` (their own random
    stream, never the test one: :func:`ahop.objectives.train_similarity`); the seconds."""

    def draw(generator: torch.Generator) -> tuple[Tensor, Tensor]:
        pool_seed = int(torch.randint(2**62, (1,), generator=generator))
        return make_queries(memories, variant, budget.train_per_memory, pool_seed)

    start = time.perf_counter()
    options = {"lr": budget.lr, "beta": beta, "batch_size": budget.batch, "schedule": schedule}
    seed = stream_seed(seed, STREAMS["train"])
    train_similarity(similarity, memories, draw, budget.steps, seed=seed, progress=False, **options)
    similarity.eval()
    return time.perf_counter() - start


def adaptive(ctx: Context) -> dict[str, Any]:
    """A-Hop's trained similarity vs the fixed ones on mixed corruptions of rising difficulty;
    ablations of the adaptive similarity at the hardest difficulty."""
    budget = ADAPTIVE_BUDGETS["quick" if ctx.quick else ctx.dataset]
    difficulties = [0.5, 1.0] if ctx.quick else [0.25, 0.5, 0.75, 1.0]
    seed = ctx.seeds[0]
    memories = ctx.memories(seed, budget.memories)
    dim = memories.shape[1]
    print(
        f"N={budget.memories} memories, d={dim}; adaptive: {budget.steps} Adam steps "
        f"of {budget.batch} queries (lr={budget.lr}, beta={ADAPTIVE_BETA}, init "
        f"{ADAPTIVE_INIT}); {budget.test_per_memory} test queries per memory"
    )
    main_label, untrained = next(iter(ABLATIONS)), "adaptive, untrained init"
    columns = [*FIXED_SIMILARITIES, untrained, main_label]
    table: dict[float, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    rows = []
    for difficulty in difficulties:
        variant = ctx.variant("mixed", difficulty=difficulty)
        test_seed = stream_seed(seed, STREAMS["test"])
        q, src = make_queries(memories, variant, budget.test_per_memory, test_seed)
        models = {name: SIMILARITIES.build(name) for name in FIXED_SIMILARITIES}
        models[untrained] = AdaptiveSimilarity(dim, **ADAPTIVE_INIT)
        for label in ABLATIONS if difficulty == difficulties[-1] else [main_label]:
            models[label] = AdaptiveSimilarity(dim, **ADAPTIVE_INIT, **ABLATIONS[label])
            took = fit_similarity(models[label], memories, variant, budget, seed, ADAPTIVE_BETA)
            seconds[f"{label} @ {difficulty}"] = took
        with torch.no_grad():  # softmax is monotone: argmax of the association = of the scores
            row = table[difficulty] = {
                k: float(retrieval_accuracy(m(memories, q), src)) for k, m in models.items()
            }
        print(f"difficulty {difficulty}: " + ", ".join(f"{k}={v:.3f}" for k, v in row.items()))
        best = max(FIXED_SIMILARITIES, key=row.get)
        rows.append([difficulty, *(row[c] for c in columns), f"{best} {row[best]:.3f}"])
    title = f"{ctx.dataset}: retrieval accuracy on mixed corruptions"
    _bold_table(title, ["difficulty", *columns, "best fixed"], rows)
    hardest = table[difficulties[-1]]
    title = f"{ctx.dataset}: ablations at difficulty {difficulties[-1]}"
    _bold_table(title, ["adaptive similarity", "accuracy"], [[k, hardest[k]] for k in ABLATIONS])
    print("\ntraining seconds: " + ", ".join(f"{k}: {v:.0f}" for k, v in seconds.items()))
    figure = Figure(figsize=(10, 3.8))
    ax, bars = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for column in columns:
        ax.plot(difficulties, [table[d][column] for d in difficulties], marker="o", label=column)
    ax.set(xlabel="difficulty (mixed corruptions)", ylabel="retrieval accuracy", ylim=(0, 1.05))
    ax.legend(fontsize=7)
    bars.barh(list(ABLATIONS), [hardest[label] for label in ABLATIONS])
    bars.set(xlabel=f"accuracy at difficulty {difficulties[-1]}", xlim=(0, 1))
    figure.suptitle(f"A-Hop vs fixed similarities, {ctx.dataset}, N={budget.memories}")
    result = {"budget": budget._asdict(), "difficulties": difficulties, "accuracy": table}
    return {**result, "train_seconds": seconds, "figure": figure}


# -- 5. classical binary Hopfield -------------------------------------------------------------


def classical(ctx: Context) -> dict[str, Any]:
    """Recall of random ±1 patterns by a Hebbian binary Hopfield network vs load P/N.

    Cues are the stored patterns themselves (flip 0) and copies with 10 % of their bits flipped;
    asynchronous updates until a fixed point. Reports exact recall (every bit right) and the mean
    overlap ``s·ξ / N`` of the final state with the pattern.
    """
    units = [100] if ctx.quick else [100, 200]
    loads = [0.05, 0.14, 0.25] if ctx.quick else [round(0.02 * i, 2) for i in range(1, 16)]
    results: dict[str, dict[float, dict[str, list[float]]]] = {}
    rows: dict[float, list] = {}
    for n, flip, load in itertools.product(units, (0.0, 0.1), loads):
        runs = [
            recall_statistics(n, max(1, round(load * n)), flip, "async", 30, stream_seed(s, n, 0))
            for s in ctx.seeds
        ]
        exact, overlap = [r[0] for r in runs], [r[1] for r in runs]
        results.setdefault(f"N={n}, flip={flip}", {})[load] = {"exact": exact, "overlap": overlap}
        rows.setdefault(load, [load]).append(f"{fmt(exact)} / {fmt(overlap)}")
    title = f"binary Hopfield, random ±1 patterns, theory P_max = {CAPACITY_THEORY} N"
    _bold_table(title, ["P/N", *(f"{k} exact / overlap" for k in results)], list(rows.values()))
    figure = Figure(figsize=(10, 3.8))
    for i, metric in enumerate(("exact", "overlap")):
        ax = figure.add_subplot(1, 2, i + 1)
        for key, per_load in results.items():
            _curve(ax, loads, [per_load[v][metric] for v in loads], key)
        ax.axvline(CAPACITY_THEORY, color="k", ls="--", label=f"theory {CAPACITY_THEORY}")
        ax.set(xlabel="load P/N", ylabel="exact recall" if i == 0 else "overlap s·ξ/N")
        ax.legend(fontsize=7)
    figure.suptitle("Classical Hopfield capacity (Hebbian, async updates)")
    return {"loads": loads, "results": results, "figure": figure}


# -- 6. the A-Hop paper's retrieval benchmark ------------------------------------------------

#: published accuracy (mean) of the A-Hop paper (arXiv 2511.20609, via the ICLR 2026 notes):
#: A-Hop and its best Hopfield baseline at each reported difficulty, and its two ablations
PUBLISHED = {
    "synthetic": {0.4: (0.724, "U2-Hop", 0.521), 0.5: (0.360, "M-Hop / U2-Hop", 0.195)},
    "mnist": {0.6: (0.939, "U2-Hop", 0.878), 0.7: (0.849, "M-Hop", 0.661)},
}
PUBLISHED_HEADERS = ["data", "difficulty", "published A-Hop", "published best baseline"]
PUBLISHED_HEADERS += ["ours A-Hop", "ours best baseline"]
#: the ablations: label -> (A-Hop options, the full model being {}; published accuracy at 0.4, 0.5)
PAPER_ABLATIONS = {
    "sort / cumulative": {
        "no sort, no cumsum": ({"sort": False, "cumulative": False}, (0.517, 0.209)),
        "no sort, cumsum": ({"sort": False}, (0.544, 0.189)),
        "sort, no cumsum": ({"cumulative": False}, (0.693, 0.337)),
        "sort, cumsum (A-Hop)": ({}, (0.728, 0.363)),
    },
    "bases": {
        "dot base only": ({"bases": ("dot",)}, (0.593, 0.252)),
        "distance base only": ({"bases": ("distance",)}, (0.646, 0.329)),
        "distance + dot (A-Hop)": ({}, (0.724, 0.360)),
    },
}
#: (label, similarity name, separation name) of the fixed baselines
PAPER_FIXED = (
    ("M-Hop (dot)", "dot", "softmax"),
    ("S-Hop (dot, sparsemax)", "dot", "sparsemax"),
    ("euclidean", "euclidean", "softmax"),
    ("manhattan", "manhattan", "softmax"),
    ("cosine", "cosine", "softmax"),
)
UHOP, U2HOP, AHOP = "U-Hop", "U2-Hop (+ variant loss)", "A-Hop"
PAPER_METHODS = [*(label for label, _, _ in PAPER_FIXED), UHOP, U2HOP, AHOP]
#: inverse temperatures tried on the validation queries (every method, trained ones included)
PAPER_BETAS = [10.0**e for e in torch.arange(-3.0, 3.01, 0.5).tolist()]
PAPER_BUDGET = Budget(100, 300, 128, 0.1, 16, 10, val_per_memory=5)
PAPER_QUICK = Budget(30, 5, 32, 0.1, 2, 2, val_per_memory=2)
#: difficulties swept (images from 0.5: at 0.4 cosine already retrieves 99 % of MNIST queries)
PAPER_LEVELS = {"synthetic": [0.2, 0.3, 0.4, 0.5, 0.6], "images": [0.5, 0.6, 0.7, 0.8]}


def _correct_and_error(weights: Tensor, memories: Tensor, sources: Tensor) -> tuple[float, float]:
    """The A-Hop paper's correct retrieval (the stored pattern nearest to the output is the
    source) and the error (mean squared error of the output per dimension)."""
    output = weights.to(memories.dtype) @ memories
    correct = float((torch.cdist(output, memories).argmin(dim=-1) == sources).float().mean())
    return correct, float((output - memories[sources]).square().mean())


@torch.no_grad()
def _paper_scores(similarity, separation: str, memories: Tensor, val, test) -> dict[str, float]:
    """Accuracy and error on the test queries at the beta that is best on the validation ones."""
    sets = {"val": val, "test": test}
    scores = {split: similarity(memories, queries) for split, (queries, _) in sets.items()}

    def acc_err(split: str, beta: float) -> tuple[float, float]:
        weights = build_separation(separation, beta=beta)(scores[split])
        return _correct_and_error(weights, memories, sets[split][1])

    on_val = {beta: acc_err("val", beta) for beta in PAPER_BETAS}
    beta = max(PAPER_BETAS, key=lambda b: (on_val[b][0], -on_val[b][1]))  # the first of the best
    acc, err = acc_err("test", beta)
    return {"acc": acc, "error": err, "beta": beta}


def _scale(patterns: Tensor) -> float:
    """1 / the mean squared distance between patterns: a start with score gaps of order 1."""
    return 1.0 / float(torch.pdist(patterns).square().mean())


def _train_ahop(memories, variant, budget, seed, **options) -> tuple[AdaptiveSimilarity, float]:
    # data-driven start: beta * (<k,q> - ||k-q||²) with score gaps of order 1
    scale = _scale(memories)
    similarity = AdaptiveSimilarity(memories.shape[1], beta_dis=scale, beta_dot=scale, **options)
    took = fit_similarity(similarity, memories, variant, budget, seed, schedule="cosine")
    return similarity, took


def _train_uhop(memories, variant, budget, seed) -> tuple:
    """U-Hop (stage I) and U2-Hop (stage I, then the association cross-entropy on variants with
    A-Hop's budget, at the same data-driven temperature: score gaps of order 1 to start)."""
    start = time.perf_counter()
    uhop = UHopSimilarity(memories.shape[1], seed=seed)
    uhop.store(memories)
    stage_one = time.perf_counter() - start
    u2hop = copy.deepcopy(uhop)
    with torch.no_grad():
        beta = _scale(u2hop.phi(memories))
    took = fit_similarity(u2hop, memories, variant, budget, seed, beta=beta, schedule="cosine")
    return uhop.eval(), u2hop, stage_one, stage_one + took


def _mean_acc(runs: list[dict[str, float]]) -> float:
    return statistics.fmean(r["acc"] for r in runs)


def _acc_err(runs: list[dict[str, float]]) -> str:
    return f"{fmt([r['acc'] for r in runs])} / {statistics.fmean(r['error'] for r in runs):.3f}"


def _paper_point(memories, shape, level, budget, seed, ablate) -> tuple[dict, dict, dict]:
    """Every method's scores at one memory draw and difficulty, the training seconds, and (with
    ``ablate``) the scores of the ablated A-Hop models, by group."""
    variant = build_variant("mixed", difficulty=level, image_shape=shape, combine="all")
    seed_of = {s: stream_seed(seed, STREAMS[s], int(level * 100)) for s in STREAMS}
    val = make_queries(memories, variant, budget.val_per_memory, seed_of["val"])
    test = make_queries(memories, variant, budget.test_per_memory, seed_of["test"])
    models = {label: (SIMILARITIES.build(sim), sep) for label, sim, sep in PAPER_FIXED}
    uhop, u2hop, t_uhop, t_u2hop = _train_uhop(memories, variant, budget, seed)
    ahop, t_ahop = _train_ahop(memories, variant, budget, seed)
    models.update({UHOP: (uhop, "softmax"), U2HOP: (u2hop, "softmax"), AHOP: (ahop, "softmax")})
    scores = {k: _paper_scores(m, sep, memories, val, test) for k, (m, sep) in models.items()}
    ablated: dict[str, dict] = {}
    for group, settings in PAPER_ABLATIONS.items() if ablate else ():
        ablated[group] = {}
        for label, (options, _) in settings.items():
            model = _train_ahop(memories, variant, budget, seed, **options)[0] if options else ahop
            ablated[group][label] = _paper_scores(model, "softmax", memories, val, test)
    return scores, {UHOP: t_uhop, U2HOP: t_u2hop, AHOP: t_ahop}, ablated


def paper(ctx: Context) -> dict[str, Any]:
    """The A-Hop paper's retrieval benchmark: mixed noise + mask + bias variants of rising
    difficulty on synthetic and image memories; A-Hop vs M-Hop, S-Hop, U-Hop, U2-Hop and the
    distance similarities; ablations of the footprint (sort / cumulative, bases) on synthetic."""
    budget = PAPER_QUICK if ctx.quick else PAPER_BUDGET
    datasets = ["synthetic", ctx.dataset]
    levels = {d: PAPER_LEVELS["synthetic" if d == "synthetic" else "images"] for d in datasets}
    levels = {d: v[2:4] for d, v in levels.items()} if ctx.quick else levels
    ablation_levels = levels["synthetic"][-2:] if ctx.quick else [0.4, 0.5]
    print(
        f"N={budget.memories} memories; synthetic U[0,1]^{SYNTHETIC_DIM}; MixedDifficulty(d, "
        f"combine='all'); A-Hop and U2-Hop: {budget.steps} Adam steps of {budget.batch} queries, "
        f"lr {budget.lr} cosine; {budget.val_per_memory} val / {budget.test_per_memory} test "
        "queries per memory; beta of every method chosen on the validation queries"
    )
    # results[dataset][level][method] -> list of {"acc", "error", "beta"} over seeds
    results = {d: {lv: {m: [] for m in PAPER_METHODS} for lv in levels[d]} for d in datasets}
    ablations: dict[str, dict[float, dict[str, list]]] = {g: {} for g in PAPER_ABLATIONS}
    seconds = {d: {UHOP: 0.0, U2HOP: 0.0, AHOP: 0.0} for d in datasets}
    partial_tag = f"retrieval_paper_{ctx.dataset}{'_quick' if ctx.quick else ''}_partial"
    for dataset, seed in itertools.product(datasets, ctx.seeds):
        memories, shape = ctx.draw(dataset, budget.memories, seed)
        for level in levels[dataset]:
            ablate = dataset == "synthetic" and level in ablation_levels
            scores, took, ablated = _paper_point(memories, shape, level, budget, seed, ablate)
            for method, score in scores.items():
                results[dataset][level][method].append(score)
            for method, t in took.items():
                seconds[dataset][method] += t
            for group, per_label in ablated.items():
                per_level = ablations[group].setdefault(level, {k: [] for k in per_label})
                for label, score in per_label.items():
                    per_level[label].append(score)
            # a long run loses at most one (seed, difficulty) when interrupted
            partial = {"results": results, "ablations": ablations, "seconds": seconds}
            save_json(partial_tag, partial)
            accuracies = ", ".join(f"{m}={s['acc']:.3f}" for m, s in scores.items())
            print(f"{dataset} seed {seed} d={level}: {accuracies}")
    for dataset in datasets:
        title = f"{dataset}: accuracy (correct retrieval) ± std over {len(ctx.seeds)} memory draws"
        rows = [[lv, *map(_acc_err, per.values())] for lv, per in results[dataset].items()]
        _bold_table(f"{title} / error (MSE)", ["difficulty", *PAPER_METHODS], rows)
    rows = []
    published = [(d, lv, *v) for d in datasets for lv, v in PUBLISHED.get(d, {}).items()]
    for dataset, level, pub, name, base in published:
        if ours := results[dataset].get(level):
            best = max(PAPER_METHODS[:-1], key=lambda m: _mean_acc(ours[m]))
            ours_best = f"{best} {_acc_err(ours[best])}"
            rows.append([dataset, level, pub, f"{name} {base}", _acc_err(ours[AHOP]), ours_best])
    _bold_table("vs the published numbers (A-Hop paper)", PUBLISHED_HEADERS, rows)
    for group, per_level in ablations.items():
        title = f"ablation ({group}), synthetic: accuracy / error (published accuracy at 0.4, 0.5)"
        headers = ["", *(f"d={lv}" for lv in per_level), "published (0.4 / 0.5)"]
        rows = [
            [label, *(_acc_err(per_level[lv][label]) for lv in per_level), f"{pub[0]} / {pub[1]}"]
            for label, (_, pub) in PAPER_ABLATIONS[group].items()
        ]
        _bold_table(title, headers, rows)
    ratio = {d: seconds[d][U2HOP] / seconds[d][AHOP] for d in datasets}
    times = "; ".join(
        f"{d}: U-Hop stage I {t[UHOP]:.1f}, U2-Hop {t[U2HOP]:.1f}, A-Hop {t[AHOP]:.1f} "
        f"(U2-Hop / A-Hop = {ratio[d]:.2f})"
        for d, t in seconds.items()
    )
    print(f"\ntraining seconds (all levels and seeds): {times}")
    figure = paper_figure(results, ablations)
    out = dict(budget=budget._asdict(), levels=levels, results=results, ablations=ablations)
    return {**out, "train_seconds": seconds, "uhop_over_ahop_time": ratio, "figure": figure}


def paper_figure(
    results: dict[str, dict[float, dict[str, list]]], ablations: dict[str, dict[float, dict]]
) -> Figure:
    """Accuracy vs difficulty per dataset (published A-Hop / best baseline marked) and the
    ablation bars, from experiment 6's results (also usable on its JSON, keys made floats)."""
    figure = Figure(figsize=(17, 4.6), layout="constrained")
    axes = figure.subplots(1, len(results) + 1, width_ratios=[1] * len(results) + [0.8])
    for ax, (dataset, per_level) in zip(axes, results.items()):
        levels = sorted(per_level)
        for method in PAPER_METHODS:
            _curve(ax, levels, [[r["acc"] for r in per_level[lv][method]] for lv in levels], method)
        for level, (pub, _, base) in PUBLISHED.get(dataset, {}).items():
            ax.scatter([level], [pub], marker="*", s=140, color="k", zorder=5)
            ax.scatter([level], [base], marker="x", s=60, color="k", zorder=5)
        ax.set(title=f"{dataset} (star: published A-Hop, x: its best baseline)")
        ax.set(xlabel="difficulty", ylabel="accuracy (correct retrieval)", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    bars = [  # (label, mean accuracy at the lowest ablation level, colour) of every ablation
        (label, _mean_acc(runs), colour)
        for colour, per_level in zip(("tab:blue", "tab:orange"), ablations.values())
        if per_level
        for label, runs in per_level[min(per_level)].items()
    ]
    axes[-1].barh([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
    axes[-1].tick_params(axis="y", labelsize=8)
    level = min(next(iter(ablations.values())), default="-")
    axes[-1].set(xlabel="accuracy", xlim=(0, 1), title=f"ablations, synthetic d={level}")
    figure.suptitle("A-Hop paper's retrieval benchmark (mixed noise + mask + bias)")
    return figure


#: the experiments, by command-line name
EXPERIMENTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    f.__name__: f for f in (capacity, robustness, separation, adaptive, classical, paper)
}
#: at most this many memory draws for the expensive experiments
SEED_CAPS = {"adaptive": 1, "paper": 5}


def run(name: str, ctx: Context) -> dict[str, Any]:
    """Run one experiment, print its table and wall time, save its plot and JSON."""
    dataset = "random" if name == "classical" else ctx.dataset
    ctx.seeds = seeds = ctx.runs[: SEED_CAPS.get(name)]  # fewer memory draws (cost)
    print(f"\n## {name} ({dataset}{', quick' if ctx.quick else ''}, seeds {seeds})")
    start = time.perf_counter()
    result = EXPERIMENTS[name](ctx)
    wall = time.perf_counter() - start
    print(f"\nwall time: {wall:.1f} s")
    figure = result.pop("figure")
    tag = f"retrieval_{name}_{dataset}{'_quick' if ctx.quick else ''}"
    meta = dict(experiment=name, dataset=dataset, quick=ctx.quick, seeds=seeds, beta=BETA)
    meta.update(threshold=ctx.threshold, wall_seconds=wall, torch_threads=torch.get_num_threads())
    save_json(tag, {**meta, "machine": machine(), **result})
    print(f"plot: {save_figure(figure, tag)}")
    return {**result, "wall_seconds": wall}


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--dataset", choices=list(DATASETS), default="mnist")
    parser.add_argument("--data-dir", type=Path, default=SHARED, help="local image root")
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 seeds (smoke run)")
    parser.add_argument("--seeds", type=int, default=None, help="runs (default 10, quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds or (2 if args.quick else 10)))
    ctx = Context(args.dataset, args.data_dir, args.quick, seeds)
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    return {name: run(name, ctx) for name in names}


if __name__ == "__main__":
    main()

"""LSHN vs Universal Hopfield retrieval vs the classical binary network on stored MNIST digits.

Stored set: ``P`` MNIST images (``--ps``) drawn with ``--memory-seed`` from the 8,000-image "train"
carve of the offline 10k test split, as ``configs/lshn_mnist.yaml``; the official LSHN cues, one
per image (``half_mask``, ``noise_<sigma>``). Methods: ``lshn`` (:class:`ahop.lshn.LSHN` trained by
:func:`ahop.lshn.fit`), ``lshn_hebbian`` (its W_hh replaced by the Hebbian matrix of the clean
latents), ``uhn_<similarity>`` (one softmax retrieval step) and ``classical``
(:class:`ahop.classical.BinaryHopfield` on binarised images); scored by the fraction correctly
retrieved (summed squared error <= ``--threshold``) and MSE. Each run writes
``benchmarks/out/lshn_P<P>.json``; ``--report`` prints the tables of all stored runs and draws
``benchmarks/out/lshn.png``. Commands and results: docs/results_lshn.md.
"""
# ruff: noqa: E402

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/lshn.py` from anywhere

import torch
from matplotlib.figure import Figure

from ahop import lshn
from ahop.classical import BinaryHopfield, to_binary, to_bipolar
from ahop.functional import retrieve
from ahop.objectives import fraction_correctly_retrieved
from benchmarks.common import OUT, markdown_table, save_figure, save_json
from datamodules.retrieval import MEMORY_SOURCES

SIMILARITIES = ("manhattan", "euclidean", "dot")
IMAGE_SHAPE = (1, 28, 28)
#: the options of a run (``--latent-dim`` ...), with their defaults; every run's JSON records them
OPTIONS = {
    "steps": 4000,  # LSHN training steps
    "lr": 1e-4,  # official 1e-4
    "period": 500,  # loss-schedule period (official 500)
    "latent_dim": 128,
    "eval_max_steps": 1000,
    "beta": 1000.0,  # UHN softmax inverse temperature
    "threshold": 50.0,
    "memory_seed": 0,
    "seed": 0,
}


def run(p: int, args: argparse.Namespace) -> dict:
    """Every method on the ``p`` stored images: ``results[method][cue]`` = fraction, MSE."""
    opts = {"split": "train", "data_dir": args.data_dir, "carve_from": "test"}  # as the config
    memories, _ = MEMORY_SOURCES["mnist"](p, torch.Generator().manual_seed(args.memory_seed), opts)
    clean = lshn.scale_to_pm1(memories)
    cues = {"half_mask": lshn.half_mask(clean, IMAGE_SHAPE)}  # the official cues, 1 per image
    for i, sigma in enumerate(lshn.EVAL_NOISE_SIGMAS):
        generator = torch.Generator().manual_seed(args.seed * 1000 + i)
        cues[f"noise_{sigma:g}"] = lshn.pixel_noise(clean, sigma, generator)
    cues = {name: lshn.scale_to_unit(cue) for name, cue in cues.items()}  # in [0, 1]

    torch.manual_seed(args.seed)
    model = lshn.LSHN(784, args.latent_dim, schedule_period=args.period)
    optimizer = lshn.make_optimizer(model, lr=args.lr)
    start, gen = time.perf_counter(), torch.Generator().manual_seed(args.seed)
    lshn.fit(model, clean, args.steps, image_shape=IMAGE_SHAPE, optimizer=optimizer, generator=gen)
    t = time.perf_counter() - start
    print(f"P={p}: LSHN {args.steps} steps in {t:.0f} s", flush=True)

    def score(output: torch.Tensor) -> dict[str, float]:  # against the stored images in [0, 1]
        output = output.clamp(0, 1)
        fraction = fraction_correctly_retrieved(output, memories, args.threshold).item()
        return {"fraction": fraction, "mse": torch.nn.functional.mse_loss(output, memories).item()}

    results: dict[str, dict[str, dict]] = {}  # method -> cue -> scores (LSHN: mean settling steps)
    for method in ("lshn", "lshn_hebbian"):
        if method == "lshn_hebbian":  # official ablation: Hebbian W_hh at eval
            with torch.no_grad():
                model.store_hebbian(model.encode(clean))
        results[method] = {}
        for c, cue in cues.items():
            r = model.retrieve(lshn.scale_to_pm1(cue), max_steps=args.eval_max_steps)
            steps = r.steps.float().mean().item()
            results[method][c] = {**score(lshn.scale_to_unit(r.images)), "steps": steps}
    for sim in SIMILARITIES:  # Universal Hopfield: one softmax step over the stored images
        uhn = {
            c: retrieve(cue, memories, similarity=sim, beta=args.beta) for c, cue in cues.items()
        }
        results[f"uhn_{sim}"] = {c: score(out) for c, out in uhn.items()}
    net = BinaryHopfield(784).store(to_bipolar(memories))  # on binarised images
    results["classical"] = {}
    for c, cue in cues.items():
        states, _ = net.recall(to_bipolar(cue), generator=torch.Generator().manual_seed(args.seed))
        results["classical"][c] = score(to_binary(states))
    rate = {"train_seconds": t, "seconds_per_1000_steps": 1000 * t / max(args.steps, 1)}
    return {"P": p, **{key: getattr(args, key) for key in OPTIONS}, **rate, "results": results}


def report() -> None:
    """Print the table of every stored run and draw their curves."""
    runs = [json.loads(path.read_text()) for path in OUT.glob("lshn_P*.json")]
    if not runs:
        raise SystemExit(f"no runs in {OUT}; run the benchmark first")
    runs.sort(key=lambda r: r["P"])
    figure = Figure(figsize=(5 * len(runs), 4))
    axes = figure.subplots(1, len(runs), squeeze=False)[0]
    cell = "{0[fraction]:.2f} / {0[mse]:.3f}".format
    for axis, r in zip(axes, runs):
        cues = list(next(iter(r["results"].values())))
        print(
            f"\n### P = {r['P']} (LSHN N={r['latent_dim']}, {r['steps']} steps, lr {r['lr']:g}, "
            f"period {r['period']}; {r['seconds_per_1000_steps']:.0f} s / 1000 steps)\n"
        )
        print("fraction correctly retrieved (SSE <= 50) / MSE\n")
        rows = [[m, *(cell(per_cue[c]) for c in cues)] for m, per_cue in r["results"].items()]
        print(markdown_table(["method", *cues], rows))
        for method, per_cue in r["results"].items():
            axis.plot([per_cue[c]["fraction"] for c in cues], marker="o", label=method)
        axis.set_xticks(range(len(cues)), [c.replace("noise_", "σ=") for c in cues], rotation=45)
        axis.set(ylim=(-0.05, 1.05), title=f"MNIST, P = {r['P']}")
        axis.set(ylabel="fraction correctly retrieved")
    axes[-1].legend(fontsize=8)
    figure.tight_layout()
    print(f"\nplot: {save_figure(figure, 'lshn')}")


def main(argv: list[str] | None = None) -> None:
    """Run the stored-set sizes of the command line (or only ``--report``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ps", type=int, nargs="+", default=[10, 100, 500])
    for name, default in OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--report", action="store_true", help="only print tables of stored runs")
    args = parser.parse_args(argv)
    if not args.report:
        torch.set_num_threads(1)
        for p in args.ps:
            save_json(f"lshn_P{p}", run(p, args))
    report()


if __name__ == "__main__":
    main()

"""LSHN vs Universal Hopfield retrieval vs the classical binary network on stored MNIST digits.

Same stored set and same cues for every method. Stored set: ``P`` MNIST images (``--ps``,
default 10 100 500) drawn with ``--memory-seed`` from the offline training split (the 10k
official test split carved into 8,000 "train" images, exactly as
``configs/lshn_mnist.yaml`` / ``RetrievalDataModule(dataset="mnist", carve_from="test")``).
Cues (official LSHN evaluation): ``half_mask`` (bottom half grey) and ``noise_<sigma>``
(``clamp(|x + sigma eps|, 0, 1)``) for sigma in 0.05 ... 1.0, one cue per stored image.

Methods:

* ``lshn``: :class:`ahop.lshn.LSHN` (N = ``--latent-dim``) trained with :func:`ahop.lshn.fit`
  (official loss, cues and AdamW betas / weight decay) for ``--steps`` full-batch steps;
  retrieval dt = 0.1, up to 1000 steps, sign, decode.
* ``lshn_hebbian``: the same trained network with W_hh replaced by the Hebbian matrix of the
  clean latents (the official ablation).
* ``uhn_<similarity>``: one step of ``softmax(beta * similarity(memories, cue)) @ memories``
  (:func:`ahop.functional.retrieve`), similarity manhattan / euclidean / dot, beta ``--beta``.
* ``classical``: :class:`ahop.classical.BinaryHopfield` (Hebbian, async sweeps) on images
  binarised at 0.5; the retrieved ±1 state is scored as a {0, 1} image.

Scores, against the stored grey-level image in [0, 1]: fraction correctly retrieved (summed
squared error <= ``--threshold``, UHN's 50 for 28x28) and MSE. Each run writes
``benchmarks/out/lshn_P<P>.json``; ``--report`` prints the markdown table of all stored runs and
draws ``benchmarks/out/lshn.png``.

    python benchmarks/lshn.py                            (P = 10, 100, 500; 4,000 steps each)
    python benchmarks/lshn.py --report
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/lshn.py` from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ahop.classical import BinaryHopfield, to_binary, to_bipolar  # noqa: E402
from ahop.functional import retrieve  # noqa: E402
from ahop.lshn import (  # noqa: E402
    EVAL_NOISE_SIGMAS,
    LSHN,
    fit,
    half_mask,
    make_optimizer,
    pixel_noise,
    scale_to_pm1,
    scale_to_unit,
)
from ahop.objectives import fraction_correctly_retrieved  # noqa: E402
from benchmarks.common import OUT, markdown_table, save_figure, save_json  # noqa: E402
from datamodules.image_sources import load_images  # noqa: E402

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


def stored_images(data_dir: Path, num: int, seed: int) -> torch.Tensor:
    """``num`` MNIST images (num, 784) in [0, 1], chosen as ``RetrievalDataModule`` does."""
    images, _ = load_images("mnist", "train", data_dir, carve_from="test")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(images), generator=generator)[:num].sort().values
    return images[chosen].flatten(1).contiguous()


def run(p: int, args: argparse.Namespace) -> dict:
    """Every method on the ``p`` stored images: ``results[method][cue]`` = fraction, MSE."""
    memories = stored_images(args.data_dir, p, args.memory_seed)
    clean = scale_to_pm1(memories)
    cues = {"half_mask": half_mask(clean, IMAGE_SHAPE)}  # official evaluation cues, one per image
    for i, sigma in enumerate(EVAL_NOISE_SIGMAS):
        generator = torch.Generator().manual_seed(args.seed * 1000 + i)
        cues[f"noise_{sigma:g}"] = pixel_noise(clean, sigma, generator)
    cues = {name: scale_to_unit(cue) for name, cue in cues.items()}  # in [0, 1]

    torch.manual_seed(args.seed)
    model = LSHN(784, args.latent_dim, schedule_period=args.period)
    optimizer = make_optimizer(model, lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    fit(model, clean, args.steps, image_shape=IMAGE_SHAPE, optimizer=optimizer, generator=generator)
    train_seconds = time.perf_counter() - start
    print(f"P={p}: LSHN {args.steps} steps in {train_seconds:.0f} s", flush=True)

    outputs: dict[str, dict[str, torch.Tensor]] = {}  # method -> cue -> retrieved, in [0, 1]
    steps: dict[str, dict[str, dict]] = {}  # LSHN's mean settling steps
    for method in ("lshn", "lshn_hebbian"):
        if method == "lshn_hebbian":  # official ablation: Hebbian W_hh at eval
            with torch.no_grad():
                model.store_hebbian(model.encode(clean))
        retrieved = {
            c: model.retrieve(scale_to_pm1(cue), max_steps=args.eval_max_steps)
            for c, cue in cues.items()
        }
        outputs[method] = {c: scale_to_unit(r.images) for c, r in retrieved.items()}
        steps[method] = {c: {"steps": r.steps.float().mean().item()} for c, r in retrieved.items()}
    for similarity in SIMILARITIES:  # Universal Hopfield: one softmax step over the stored images
        outputs[f"uhn_{similarity}"] = {
            c: retrieve(cue, memories, similarity=similarity, beta=args.beta)
            for c, cue in cues.items()
        }
    net = BinaryHopfield(784).store(to_bipolar(memories))  # on binarised images
    outputs["classical"] = {}
    for c, cue in cues.items():
        states, _ = net.recall(to_bipolar(cue), generator=torch.Generator().manual_seed(args.seed))
        outputs["classical"][c] = to_binary(states)
    results = {
        method: {
            c: {**score(out, memories, args.threshold), **steps.get(method, {}).get(c, {})}
            for c, out in per_cue.items()
        }
        for method, per_cue in outputs.items()
    }
    return {
        "P": p,
        **{key: getattr(args, key) for key in OPTIONS},
        "train_seconds": train_seconds,
        "seconds_per_1000_steps": 1000 * train_seconds / max(args.steps, 1),
        "results": results,
    }


def score(output: torch.Tensor, memories: torch.Tensor, threshold: float) -> dict[str, float]:
    """Fraction correctly retrieved and MSE of retrieved images against the stored ones."""
    output = output.clamp(0, 1)
    return {
        "fraction": fraction_correctly_retrieved(output, memories, threshold).item(),
        "mse": torch.nn.functional.mse_loss(output, memories).item(),
    }


def report() -> None:
    """Print the table of every stored run and draw their curves."""
    runs = sorted(
        (json.loads(p.read_text()) for p in OUT.glob("lshn_P*.json")), key=lambda r: r["P"]
    )
    if not runs:
        raise SystemExit(f"no runs in {OUT}; run the benchmark first")
    figure = Figure(figsize=(5 * len(runs), 4))
    axes = figure.subplots(1, len(runs), squeeze=False)[0]
    for axis, run_ in zip(axes, runs):
        res = run_["results"]
        cues = list(next(iter(res.values())))
        print(
            f"\n### P = {run_['P']} (LSHN N={run_['latent_dim']}, {run_['steps']} steps, lr "
            f"{run_['lr']:g}, period {run_['period']}; "
            f"{run_['seconds_per_1000_steps']:.0f} s / 1000 steps)\n"
        )
        print("fraction correctly retrieved (SSE <= 50) / MSE\n")
        rows = [
            [m, *(f"{r[c]['fraction']:.2f} / {r[c]['mse']:.3f}" for c in cues)]
            for m, r in res.items()
        ]
        print(markdown_table(["method", *cues], rows))
        for method, rows in res.items():
            axis.plot(
                range(len(cues)), [rows[c]["fraction"] for c in cues], marker="o", label=method
            )
        axis.set_xticks(range(len(cues)), [c.replace("noise_", "σ=") for c in cues], rotation=45)
        axis.set(
            ylim=(-0.05, 1.05),
            title=f"MNIST, P = {run_['P']}",
            ylabel="fraction correctly retrieved",
        )
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

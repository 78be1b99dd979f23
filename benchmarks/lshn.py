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


def stored_images(data_dir: Path, num: int, seed: int) -> torch.Tensor:
    """``num`` MNIST images (num, 784) in [0, 1], chosen as ``RetrievalDataModule`` does."""
    images, _ = load_images("mnist", "train", data_dir, carve_from="test")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(images), generator=generator)[:num].sort().values
    return images[chosen].flatten(1).contiguous()


def make_cues(memories: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Official evaluation cues in [0, 1], by name (one per stored image)."""
    clean = scale_to_pm1(memories)
    cues = {"half_mask": half_mask(clean, IMAGE_SHAPE)}
    for i, sigma in enumerate(EVAL_NOISE_SIGMAS):
        generator = torch.Generator().manual_seed(seed * 1000 + i)
        cues[f"noise_{sigma:g}"] = pixel_noise(clean, sigma, generator)
    return {name: scale_to_unit(cue) for name, cue in cues.items()}


def score(output: torch.Tensor, memories: torch.Tensor, threshold: float) -> dict[str, float]:
    output = output.clamp(0, 1)
    return {
        "fraction": fraction_correctly_retrieved(output, memories, threshold).item(),
        "mse": torch.nn.functional.mse_loss(output, memories).item(),
    }


def run(p: int, args: argparse.Namespace) -> dict:
    memories = stored_images(args.data_dir, p, args.memory_seed)
    cues = make_cues(memories, args.seed)
    results: dict[str, dict[str, dict[str, float]]] = {}

    # -- LSHN ------------------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    model = LSHN(784, args.latent_dim, schedule_period=args.period)
    optimizer = make_optimizer(model, lr=args.lr)
    clean = scale_to_pm1(memories)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    fit(model, clean, args.steps, image_shape=IMAGE_SHAPE, optimizer=optimizer, generator=generator)
    train_seconds = time.perf_counter() - start
    print(f"P={p}: LSHN {args.steps} steps in {train_seconds:.0f} s", flush=True)

    def lshn_eval() -> dict[str, dict[str, float]]:
        rows = {}
        for name, cue in cues.items():
            out = model.retrieve(scale_to_pm1(cue), max_steps=args.eval_max_steps)
            rows[name] = score(scale_to_unit(out.images), memories, args.threshold)
            rows[name]["steps"] = out.steps.float().mean().item()
        return rows

    results["lshn"] = lshn_eval()
    with torch.no_grad():
        model.store_hebbian(model.encode(clean))  # official ablation: Hebbian W_hh at eval
    results["lshn_hebbian"] = lshn_eval()

    # -- Universal Hopfield: one softmax step over the stored images ------------------------------
    for similarity in SIMILARITIES:
        results[f"uhn_{similarity}"] = {
            name: score(
                retrieve(cue, memories, similarity=similarity, beta=args.beta),
                memories,
                args.threshold,
            )
            for name, cue in cues.items()
        }

    # -- classical binary Hopfield on binarised images -------------------------------------------
    net = BinaryHopfield(784).store(to_bipolar(memories))
    results["classical"] = {}
    for name, cue in cues.items():
        states, _ = net.recall(to_bipolar(cue), generator=torch.Generator().manual_seed(args.seed))
        results["classical"][name] = score(to_binary(states), memories, args.threshold)

    return {
        "P": p,
        "steps": args.steps,
        "lr": args.lr,
        "period": args.period,
        "latent_dim": args.latent_dim,
        "beta": args.beta,
        "threshold": args.threshold,
        "train_seconds": train_seconds,
        "seconds_per_1000_steps": 1000 * train_seconds / max(args.steps, 1),
        "results": results,
    }


# --------------------------------------------------------------------------- report


def load_runs() -> list[dict]:
    runs = [json.loads(path.read_text()) for path in sorted(OUT.glob("lshn_P*.json"))]
    return sorted(runs, key=lambda r: r["P"])


def report() -> None:
    runs = load_runs()
    if not runs:
        raise SystemExit(f"no runs in {OUT}; run the benchmark first")
    for run_ in runs:
        res = run_["results"]
        cues = list(next(iter(res.values())))
        print(
            f"\n### P = {run_['P']} (LSHN N={run_['latent_dim']}, {run_['steps']} steps, lr "
            f"{run_['lr']:g}, period {run_['period']}; "
            f"{run_['seconds_per_1000_steps']:.0f} s / 1000 steps)\n"
        )
        print("fraction correctly retrieved (SSE <= 50) / MSE\n")
        cells = {
            m: [f"{r[c]['fraction']:.2f} / {r[c]['mse']:.3f}" for c in cues] for m, r in res.items()
        }
        print(markdown_table(["method", *cues], [[m, *row] for m, row in cells.items()]))
    plot(runs)


def plot(runs: list[dict]) -> None:
    figure = Figure(figsize=(5 * len(runs), 4))
    axes = figure.subplots(1, len(runs), squeeze=False)[0]
    for axis, run_ in zip(axes, runs):
        res = run_["results"]
        cues = list(next(iter(res.values())))
        for method, rows in res.items():
            axis.plot(
                range(len(cues)), [rows[c]["fraction"] for c in cues], marker="o", label=method
            )
        axis.set_xticks(range(len(cues)), [c.replace("noise_", "σ=") for c in cues], rotation=45)
        axis.set_ylim(-0.05, 1.05)
        axis.set_title(f"MNIST, P = {run_['P']}")
        axis.set_ylabel("fraction correctly retrieved")
    axes[-1].legend(fontsize=8)
    figure.tight_layout()
    print(f"\nplot: {save_figure(figure, 'lshn')}")


def main(argv: list[str] | None = None) -> None:
    """Run the stored-set sizes of the command line (or only ``--report``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ps", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--steps", type=int, default=4000, help="LSHN training steps")
    parser.add_argument("--lr", type=float, default=1e-4, help="official 1e-4")
    parser.add_argument("--period", type=int, default=500, help="schedule period (official 500)")
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--eval-max-steps", type=int, default=1000)
    parser.add_argument(
        "--beta", type=float, default=1000.0, help="UHN softmax inverse temperature"
    )
    parser.add_argument("--threshold", type=float, default=50.0)
    parser.add_argument("--memory-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--report", action="store_true", help="only print tables of stored runs")
    args = parser.parse_args(argv)
    if args.report:
        report()
        return
    torch.set_num_threads(1)
    for p in args.ps:
        result = run(p, args)
        save_json(f"lshn_P{p}", result)
    report()


if __name__ == "__main__":
    main()

"""LSHN (Latent Structured Hopfield Network) as a LightningModule: store images, complete cues.

The task holds the P stored images (``memories``, a buffer saved in checkpoints, copied from a
:class:`~datamodules.retrieval.RetrievalDataModule` at ``setup``; [0, 1] there, [-1, 1] inside
the model) and trains :class:`ahop.lshn.LSHN` on them as the official code does:

* **Training is full batch.** Every training step uses *all* P stored images and draws fresh
  cues (:func:`ahop.lshn.training_cues`: the official half mask and per-pixel noise with
  sigma ~ U(0, 1)). The datamodule's training batches only set how many steps an epoch has
  (``ceil(num_memories * queries_per_memory / batch_size)``, e.g. ``queries_per_memory: 100``
  with ``batch_size = num_memories`` gives 100 steps per epoch); their contents are not used.
  AdamW (lr 1e-4, betas (0.9, 0.95), weight decay 1e-2) by default, ``dt = 1`` and 11
  unrolled steps in the loss, the official loss-weight schedule, and W_hh symmetrised after
  every optimizer step (:meth:`on_train_batch_end`). ``attractor: hebbian`` replaces the learned
  W_hh by the Hebbian matrix of the current clean latents before every step and evaluation.
* **Evaluation** (validate / test): for the stored images named by the batch's ``sources``
  (``eval_queries_per_memory: 1`` with ``variant: identity`` visits each memory once), the task
  builds the official cues itself, seeded so they are the same every epoch: ``half_mask`` and
  ``noise_<sigma>`` for sigma in ``noise_sigmas`` (official: 0.05 ... 1.0); plus ``query``, the
  datamodule's own query. Retrieval: ``dt = 0.1``, up to ``eval_max_steps`` updates (each cue
  stops once ``max |dv| < eval_tol``), sign, decode. Per cue it logs
  ``<stage>/<cue>/fraction_retrieved`` (UHN criterion: summed squared error in [0, 1] units
  <= ``threshold``), ``mse`` and ``mae`` (in [0, 1] units; the official notebook reports them in
  [-1, 1] units, i.e. 4x and 2x larger), ``ssim`` (torchmetrics, data range 1, Gaussian window
  ``min(11, largest odd <= min(H, W))``; not logged for patterns under 6 x 6, such as 1 x D
  synthetic vectors) and ``bit_accuracy`` (sign agreement of the retrieved
  latent with the clean image's latent), and ``<stage>/fraction_retrieved``, the mean over the
  half-mask and noise cues, which checkpoints monitor.
* **Threshold.** ``threshold: null`` = UHN's 50 for 28x28 images scaled by ``D / 784`` (as
  :class:`tasks.retrieval.RetrievalTask`): 4.08 for 8x8 digits, 196 for 32x32x3. The paper and
  the official code use 50 for CIFAR-10 too, so set ``threshold: 50`` to compare with them.
* **TensorBoard** (when the logger is a ``TensorBoardLogger``, after each validation epoch):
  ``val/trajectory``, an image grid whose rows are ``num_trajectory_images`` half-mask cues and
  whose columns are the cue, the decoded attractor state after 0, 1, 2, 5, 10, 20, 50, 100,
  200, 500 and ``eval_max_steps`` updates, the decoded sign and the stored image (images under
  28 pixels high are enlarged); ``val/energy``, a figure of the attractor energy along those
  trajectories.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.image import StructuralSimilarityIndexMeasure
from torchvision.utils import make_grid

from ahop.checks import check_int, check_positive_ints
from ahop.lshn import (
    ATTRACTORS,
    EVAL_NOISE_SIGMAS,
    LSHN,
    OPTIMIZER_DEFAULTS,
    RETRIEVE_DT,
    RETRIEVE_MAX_STEPS,
    RETRIEVE_TOL,
    fraction_correctly_retrieved,
    half_mask,
    latent_bit_accuracy,
    pixel_noise,
    scale_to_pm1,
    scale_to_unit,
    training_cues,
)
from tasks.base import BaseTask
from tasks.networks import network_options, options_type
from tasks.retrieval import UHN_PIXELS, UHN_THRESHOLD
from tasks.tensorboard import TensorBoardImages

#: LSHN's argument the task sets from the data (``dim``), not an option of ``network``
NETWORK_SET_BY_TASK = ("input_dim",)
#: the type of ``LSHNTask(network=...)``: every other option of :class:`ahop.lshn.LSHN`
LSHNOptions = options_type(LSHN, NETWORK_SET_BY_TASK)

#: metrics logged per cue
CUE_METRICS = ("fraction_retrieved", "mse", "mae", "ssim", "bit_accuracy")
#: attractor steps shown in the TensorBoard trajectory grid (capped at eval_max_steps)
TRAJECTORY_STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)


def lshn_optimizer(params: Any) -> torch.optim.Optimizer:
    """The official optimizer: AdamW, lr 1e-4, betas (0.9, 0.95), weight decay 1e-2."""
    return torch.optim.AdamW(params, **OPTIMIZER_DEFAULTS)


def _seed(*parts: int) -> int:
    """A 63-bit seed from integers (``numpy.random.SeedSequence`` hashing)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


#: smallest image side SSIM is computed for: torchmetrics pads by 5 pixels (sigma 1.5) on each side
SSIM_MIN_SIDE = 6


def _ssim_kernel(image_shape: tuple[int, int, int]) -> int | None:
    """Largest odd Gaussian window <= min(11, H, W) (SSIM's default 11 exceeds 8x8 digits), or
    ``None`` for patterns too small or too flat to be images (e.g. 1 x 3072 synthetic vectors)."""
    if min(image_shape[1], image_shape[2]) < SSIM_MIN_SIDE:
        return None
    side = min(11, image_shape[1], image_shape[2])
    return side if side % 2 == 1 else side - 1


class LSHNTask(TensorBoardImages, BaseTask):
    """Train and evaluate an :class:`ahop.lshn.LSHN` on a set of stored images.

    Args:
        network: the options of :class:`ahop.lshn.LSHN` other than ``input_dim`` (= ``dim``; its
            docstring lists them), e.g. ``{latent_dim: 128, attractor: hebbian, schedule_period:
            500}``: ``latent_dim`` N (official 128), ``attractor`` (``learned`` / ``hebbian``),
            the unrolled training steps and their ``dt``, the loss weights and the binarisation
            schedule. An option left out takes LSHN's default (the official recipe), an unknown
            one is an error. On the command line: ``--model.init_args.network.latent_dim 256``.
        eval_dt: step size of the retrieval dynamics at evaluation (0.1).
        eval_max_steps: most attractor updates per cue at evaluation (1000).
        eval_tol: a cue stops once ``max |dv| < eval_tol`` (1e-5).
        sanity_max_steps: attractor updates per cue in Lightning's sanity check (which only
            checks that validation runs; its metrics are discarded), so that it takes seconds.
        noise_sigmas: noise levels of the ``noise_<sigma>`` evaluation cues ([0, 1] units).
        threshold: UHN criterion threshold (``None``: 50 * D / 784, see the module doc).
        eval_seed: seed of the evaluation cues (the same every epoch).
        num_trajectory_images: half-mask cues in the TensorBoard trajectory grid (0 = none).
        dim: D, flattened image size (on the command line: the datamodule's).
        num_memories: P, stored images (on the command line: the datamodule's).
        image_shape: (C, H, W) of an image (on the command line: the datamodule's).
        optimizer: a ``params -> Optimizer`` callable; default AdamW (lr 1e-4, betas (0.9,
            0.95), weight decay 1e-2).
        lr_scheduler: an ``optimizer -> scheduler`` callable, or ``None``.
    """

    monitor = "val/fraction_retrieved"
    monitor_mode = "max"
    data_sizes = ("dim", "num_memories", "image_shape")

    def __init__(
        self,
        network: LSHNOptions | None = None,
        eval_dt: float = RETRIEVE_DT,
        eval_max_steps: int = RETRIEVE_MAX_STEPS,
        eval_tol: float = RETRIEVE_TOL,
        sanity_max_steps: int = 10,
        noise_sigmas: tuple[float, ...] = EVAL_NOISE_SIGMAS,
        threshold: float | None = None,
        eval_seed: int = 0,
        num_trajectory_images: int = 8,
        dim: int | None = None,
        num_memories: int | None = None,
        image_shape: tuple[int, ...] | None = None,
        optimizer: OptimizerCallable = lshn_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        options = network_options(LSHN, network, NETWORK_SET_BY_TASK)
        if "attractor" in options:  # before any data is loaded: the allowed names
            ATTRACTORS.get(options["attractor"])
        if not (isinstance(eval_dt, (int, float)) and eval_dt > 0):
            raise ValueError(f"eval_dt must be a number > 0, got {eval_dt!r}")
        check_positive_ints(eval_max_steps=eval_max_steps, sanity_max_steps=sanity_max_steps)
        if not (isinstance(eval_tol, (int, float)) and eval_tol >= 0):
            raise ValueError(f"eval_tol must be a number >= 0, got {eval_tol!r}")
        if any(not (isinstance(s, (int, float)) and s >= 0) for s in noise_sigmas):
            raise ValueError(f"noise_sigmas must be numbers >= 0, got {noise_sigmas!r}")
        if len(set(noise_sigmas)) != len(noise_sigmas):
            raise ValueError(f"noise_sigmas must be distinct, got {noise_sigmas!r}")
        if threshold is not None and not threshold > 0:
            raise ValueError(f"threshold must be > 0 (or null for 50 * D / 784), got {threshold}")
        check_int(num_trajectory_images, "num_trajectory_images", minimum=0)
        if image_shape is not None and len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
        self._trajectory_cues: tuple[Tensor, Tensor] | None = None
        self._memories_loaded = False
        self.save_task_hyperparameters()

    # -- wiring ---------------------------------------------------------------------------------

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.hparams.image_shape)  # type: ignore[return-value]

    @property
    def cue_names(self) -> list[str]:
        """Evaluation cues: ``half_mask``, ``noise_<sigma>`` ..., ``query``."""
        return ["half_mask", *(f"noise_{s:g}" for s in self.hparams.noise_sigmas), "query"]

    @property
    def criterion_threshold(self) -> float:
        hp = self.hparams
        return UHN_THRESHOLD * hp.dim / UHN_PIXELS if hp.threshold is None else hp.threshold

    def configure_models(self) -> None:
        hp = self.hparams
        if math.prod(self.image_shape) != hp.dim:
            raise ValueError(f"image_shape {self.image_shape} does not match dim={hp.dim}")
        self.model = LSHN(hp.dim, **network_options(LSHN, hp.network, NETWORK_SET_BY_TASK))
        # stored images in [0, 1] (the datamodule's units); saved with the checkpoint
        self.register_buffer("memories", torch.zeros(hp.num_memories, hp.dim))

    def setup_metrics(self) -> None:
        super().setup_metrics()  # configure_metrics is None: only the best-value tracker
        kernel = _ssim_kernel(self.image_shape)

        def per_cue() -> MetricCollection:
            metrics: dict[str, nn.Module] = {
                name: MeanMetric() for name in CUE_METRICS if name != "ssim"
            }
            if kernel is not None:
                metrics["ssim"] = StructuralSimilarityIndexMeasure(
                    data_range=1.0, kernel_size=kernel
                )
            return MetricCollection(metrics, compute_groups=False)

        # module keys cannot hold dots ("noise_0.05"); logged names keep them
        self.cue_metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict({self._key(c): per_cue() for c in self.cue_names})
                for stage in ("val", "test")
            }
        )
        self.mean_fraction = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    @staticmethod
    def _key(cue: str) -> str:
        return cue.replace(".", "p")

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        super().setup(stage)
        memories = getattr(datamodule, "memories", None)
        if memories is not None and not self._memories_loaded:
            self.set_memories(memories)

    def set_memories(self, memories: Tensor) -> None:
        """Store the images ``(P, D)`` in [0, 1] (P and D fixed at construction)."""
        if tuple(memories.shape) != tuple(self.memories.shape):
            raise ValueError(
                f"memories of shape {tuple(memories.shape)} do not fit this task, built for "
                f"num_memories={self.hparams.num_memories}, dim={self.hparams.dim}"
            )
        if memories.min() < 0 or memories.max() > 1:
            raise ValueError("memories must lie in [0, 1] (the datamodule's pixel units)")
        self.memories.copy_(memories)
        self._memories_loaded = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._memories_loaded = True

    def _check_memories(self) -> None:
        memories = getattr(getattr(self.trainer, "datamodule", None), "memories", None)
        if memories is not None and not torch.equal(memories.to(self.memories), self.memories):
            raise ValueError(
                "the model's stored images differ from the datamodule's (a checkpoint from "
                "another dataset / num_memories / memory_seed?)"
            )

    def on_fit_start(self) -> None:
        self._check_memories()

    def on_validation_start(self) -> None:
        self._check_memories()
        self.model.prepare_attractor_(scale_to_pm1(self.memories))

    def on_test_start(self) -> None:
        self._check_memories()
        self.model.prepare_attractor_(scale_to_pm1(self.memories))

    # -- training ---------------------------------------------------------------------------------

    def on_train_start(self) -> None:
        super().on_train_start()
        total = self.trainer.estimated_stepping_batches
        self._total_steps = int(total) if math.isfinite(total) else None

    def total_steps(self) -> int:
        """Training steps of the whole run (for the ``linear`` schedule; >= the current step)."""
        total = getattr(self, "_total_steps", None)
        return max(self.global_step + 1, total or 1)

    def shared_step(self, batch: Any, stage: str) -> tuple[Tensor, None]:
        """Training: the LSHN loss on all stored images with fresh cues (the batch is a tick)."""
        clean = scale_to_pm1(self.memories)
        self.model.prepare_attractor_(clean)
        cues = training_cues(clean, self.image_shape)
        loss, parts = self.model.training_loss(clean, cues, self.global_step, self.total_steps())
        self.log_dict(
            {f"train/{name}": value for name, value in parts.items()},
            on_step=True,
            on_epoch=False,
            sync_dist=True,
            batch_size=len(clean),
        )
        return loss, None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # after optimizer.step(): keep W_hh symmetric (the energy is then a Lyapunov function)
        self.model.symmetrize_()

    # -- evaluation -------------------------------------------------------------------------------

    def make_cues(self, clean: Tensor, queries: Tensor, batch_idx: int) -> dict[str, Tensor]:
        """Evaluation cues in [-1, 1] for clean images ``(B, D)`` in [-1, 1], by cue name.

        Noise is drawn from a generator seeded by ``(eval_seed, sigma index, batch_idx)``, so a
        batch gets the same cues in every epoch.
        """
        cues = {"half_mask": half_mask(clean, self.image_shape)}
        for i, sigma in enumerate(self.hparams.noise_sigmas):
            generator = torch.Generator(device=clean.device)
            generator.manual_seed(_seed(self.hparams.eval_seed, i, batch_idx))
            cues[f"noise_{sigma:g}"] = pixel_noise(clean, float(sigma), generator)
        cues["query"] = scale_to_pm1(queries)
        return cues

    def retrieve(self, cues: Tensor) -> Any:
        """Settle from cues ``(B, D)`` in [-1, 1]; see :meth:`ahop.lshn.LSHN.retrieve`."""
        hp = self.hparams
        max_steps = hp.eval_max_steps
        if self._trainer is not None and self._trainer.sanity_checking:
            max_steps = min(max_steps, hp.sanity_max_steps)
        return self.model.retrieve(cues, dt=hp.eval_dt, max_steps=max_steps, tol=hp.eval_tol)

    def forward(self, queries: Tensor) -> Tensor:
        """Retrieved images ``(B, D)`` in [0, 1] for queries ``(B, D)`` in [0, 1]."""
        return scale_to_unit(self.retrieve(scale_to_pm1(queries)).images).clamp(0, 1)

    def _evaluate(self, batch: Any, batch_idx: int, stage: str) -> None:
        queries, sources = batch
        target_unit = self.memories[sources]
        clean = scale_to_pm1(target_unit)
        with torch.no_grad():
            target_latent = self.model.encode(clean)
        threshold = self.criterion_threshold
        shape = (-1, *self.image_shape)
        for cue, cue_images in self.make_cues(clean, queries, batch_idx).items():
            out = self.retrieve(cue_images)
            pred_unit = scale_to_unit(out.images).clamp(0, 1)
            frac = fraction_correctly_retrieved(out.images, clean, threshold, reduction="none")
            values = {
                "fraction_retrieved": frac,
                "mse": (pred_unit - target_unit).pow(2).mean(-1),
                "mae": (pred_unit - target_unit).abs().mean(-1),
                "bit_accuracy": latent_bit_accuracy(out.latents, target_latent, "none"),
            }
            metrics = self.cue_metrics[stage][self._key(cue)]
            for name, value in values.items():
                metrics[name].update(value)
            if "ssim" in metrics:
                metrics["ssim"].update(pred_unit.view(shape), target_unit.view(shape))
            if cue != "query":
                self.mean_fraction[stage].update(frac)
            for name in (n for n in CUE_METRICS if n in metrics):
                self.log(
                    f"{stage}/{cue}/{name}",
                    metrics[name],
                    on_step=False,
                    on_epoch=True,
                    batch_size=len(sources),
                )
        self.log(
            f"{stage}/fraction_retrieved",
            self.mean_fraction[stage],
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(sources),
        )
        if stage == "val" and batch_idx == 0 and self._logging_images():
            keep = self.hparams.num_trajectory_images
            self._trajectory_cues = (
                half_mask(clean[:keep], self.image_shape),
                clean[:keep],
            )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        queries = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(queries)

    # -- TensorBoard: trajectory grid and energy curve -----------------------------------------

    def _logging_images(self) -> bool:
        return self.logging_images(self.hparams.num_trajectory_images > 0)

    @torch.no_grad()
    def trajectory(self, cues: Tensor) -> tuple[list[int], Tensor, Tensor]:
        """Decoded attractor states and energies along the evaluation dynamics.

        Args:
            cues: (B, D) in [-1, 1].

        Returns:
            ``(steps, images, energy)``: the recorded step counts, decoded images
            (len(steps), B, D) in [0, 1] and the energy (len(steps), B) at each.
        """
        hp = self.hparams
        steps = sorted({s for s in TRAJECTORY_STEPS if s < hp.eval_max_steps} | {hp.eval_max_steps})
        cue_latent = self.model.encode(cues)
        states = self.model.unroll(cue_latent, steps[-1], hp.eval_dt, return_trajectory=True)
        states = states[steps]
        images = torch.stack([scale_to_unit(self.model.decode(s)).clamp(0, 1) for s in states])
        energy = torch.stack([self.model.energy(s, cue_latent) for s in states])
        return steps, images, energy

    def on_validation_epoch_start(self) -> None:
        self._trajectory_cues = None

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self._trajectory_cues is None or not self._logging_images():
            return
        cues, clean = self._trajectory_cues
        self._trajectory_cues = None
        steps, images, energy = self.trajectory(cues)
        final = scale_to_unit(self.retrieve(cues).images).clamp(0, 1)
        # rows = cues; columns = cue, decoded state per recorded step, decoded sign, stored image
        columns = [scale_to_unit(cues), *images, final, scale_to_unit(clean)]
        tiles = torch.stack(columns, dim=1).reshape(-1, *self.image_shape).float().cpu()
        zoom = math.ceil(28 / min(self.image_shape[1:]))  # small images (8x8 digits): enlarge
        if zoom > 1:
            tiles = torch.nn.functional.interpolate(tiles, scale_factor=zoom, mode="nearest")
        grid = make_grid(tiles, nrow=len(columns), pad_value=0.5)
        board = self.tensorboard()
        board.add_image("val/trajectory", grid, self.global_step)
        board.add_figure("val/energy", energy_figure(steps, energy.cpu()), self.global_step)


def energy_figure(steps: list[int], energy: Tensor) -> Figure:
    """Attractor energy (len(steps), B) against the step count, one line per cue."""
    figure = Figure(figsize=(5, 3.5))
    axis = figure.add_subplot(1, 1, 1)
    x = [max(s, 0.5) for s in steps]  # log axis: show step 0 at 0.5
    for b in range(energy.shape[1]):
        axis.plot(x, energy[:, b].numpy(), marker="o", markersize=3, alpha=0.7)
    axis.set_xscale("log")
    axis.set_xlabel("attractor step (0 plotted at 0.5)")
    axis.set_ylabel("energy")
    axis.set_title("E(v) along retrieval from half-mask cues")
    figure.tight_layout()
    return figure

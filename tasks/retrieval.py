"""Associative-memory retrieval: recover the stored pattern a corrupted query came from.

The task holds the stored patterns (``memories``, a buffer saved in checkpoints, copied from the
datamodule at ``setup``) and retrieves ``separation(similarity(memories, q)) @ memories`` for
``steps`` update steps (:func:`ahop.functional.retrieve`).

* **Fixed similarities** (``dot``, ``cosine``, ``euclidean``, ``manhattan``) have nothing to train:
  evaluate them with ``python train.py validate --config configs/retrieval_fixed.yaml`` (or
  ``test``). ``fit`` with such a similarity stops at once with a ``ValueError`` saying so.
* **A-Hop** (``similarity: adaptive``) learns its similarity from (source, variant) pairs with
  :func:`ahop.objectives.association_cross_entropy` (softmax over memories of ``beta * scores``
  against the source index) and is evaluated on fresh variants.
* **U-Hop** (``similarity: uhop``, :mod:`ahop.uhop`) runs its stage I (the separation loss over
  the stored memories, unsupervised) when the memories arrive from the datamodule, so
  ``validate`` evaluates U-Hop as its paper defines it; ``fit`` then also trains the feature map
  with the association cross-entropy on variants (what the A-Hop paper's U2-Hop baseline
  appears to be; see docs/results_retrieval.md).

Energies (:mod:`ahop.energy`): in validation and test the mean energy of the state before every
retrieval step and of the output is logged as ``val/energy_step_<t>`` (``t = 0 ... steps``), for
every pair that has one (``log_energy``).

Metrics per stage: ``acc`` (the largest association weight is on the source memory),
``fraction_retrieved`` (UHN criterion: summed squared error of the retrieved pattern vs the source
<= ``threshold``) and ``mse``; the loss is the association cross-entropy in every stage. At the end
of each validation epoch a TensorBoard logger also gets an image grid ``val/retrieval`` whose rows
are queries, retrieved patterns and sources.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchvision.utils import make_grid

from ahop.checks import check_positive_ints
from ahop.energy import check_energy, energy_from_scores, network_energy
from ahop.functional import retrieve
from ahop.objectives import (
    association_cross_entropy,
    fraction_correctly_retrieved,
    retrieval_accuracy,
)
from ahop.registry import Registry
from ahop.separation import SEPARATIONS, build_separation
from ahop.similarity import SIMILARITIES, build_similarity
from tasks.base import BaseTask, default_optimizer
from tasks.tensorboard import TensorBoardImages

#: UHN's threshold on the summed squared error, set for 28x28 images
UHN_THRESHOLD, UHN_PIXELS = 50.0, 28 * 28


#: options the task sets itself, never through ``similarity_kwargs`` / ``separation_kwargs``
TASK_OPTIONS = ("dim", "beta")


def _check_options(registry: Registry, name: str, options: dict[str, Any] | None) -> None:
    """ValueError for an unknown part name, or for options its constructor does not take."""
    # the options Registry.build passes on: the constructor's named parameters
    accepted = {
        p.name
        for p in inspect.signature(registry.get(name)).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    } - set(TASK_OPTIONS)
    unknown = sorted(set(options or {}) - accepted)
    if unknown:
        raise ValueError(
            f"{registry.kind} {name!r} has no option(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(accepted)) or 'none'} (after switching the {registry.kind}, set "
            f"its options too, e.g. --model.init_args.{registry.kind}_kwargs null)"
        )


# --------------------------------------------------------------------------- metrics


class RetrievalMean(Metric):
    """Batch-size weighted mean of a per-batch retrieval score, summed across processes.

    ``update(weights (B, N), output (B, D), sources (B,), targets (B, D))``; subclasses define
    :meth:`score` (the batch mean).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def score(self, weights: Tensor, output: Tensor, sources: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, weights: Tensor, output: Tensor, sources: Tensor, targets: Tensor) -> None:
        batch = len(sources)
        # out of place: states reset under a previous inference_mode run are inference tensors
        self.total = self.total + self.score(weights, output, sources, targets).double() * batch
        self.count = self.count + batch

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class RetrievalAccuracy(RetrievalMean):
    """Fraction of queries whose largest association weight is on their source memory."""

    def score(self, weights: Tensor, output: Tensor, sources: Tensor, targets: Tensor) -> Tensor:
        return retrieval_accuracy(weights, sources)


class FractionRetrieved(RetrievalMean):
    """UHN criterion: fraction of retrieved patterns within ``threshold`` summed squared error."""

    def __init__(self, threshold: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold

    def score(self, weights: Tensor, output: Tensor, sources: Tensor, targets: Tensor) -> Tensor:
        return fraction_correctly_retrieved(output, targets, self.threshold)


class RetrievalMSE(RetrievalMean):
    """Mean squared error between retrieved and source patterns."""

    higher_is_better = False

    def score(self, weights: Tensor, output: Tensor, sources: Tensor, targets: Tensor) -> Tensor:
        return F.mse_loss(output.float(), targets.float())


# --------------------------------------------------------------------------- task


class RetrievalTask(TensorBoardImages, BaseTask):
    """Retrieve stored patterns from corrupted queries; optionally learn the A-Hop similarity.

    Args:
        similarity: a name from :data:`ahop.similarity.SIMILARITIES` (``adaptive`` and ``uhop``
            are trained; ``dot``, ``cosine``, ``euclidean``, ``manhattan`` are fixed).
        separation: a name from :data:`ahop.separation.SEPARATIONS` (``softmax``, ``max``, ...).
        beta: inverse temperature of the separation and of the training softmax.
        steps: retrieval update steps (the output is fed back as the next query).
        similarity_kwargs: options of the similarity (e.g. ``{beta_dis: 0.1}`` for ``adaptive``).
        separation_kwargs: options of the separation (e.g. ``{order: 10}`` for ``polynomial``).
        threshold: UHN criterion threshold on the summed squared error; ``None`` = 50 (UHN, set
            for 28x28 images) scaled by ``dim / 784`` (about 4.1 for 8x8 digits; UHN used 50
            for 32x32x3 CIFAR-10 too, so set 50 explicitly to compare with it).
        num_sample_images: query / retrieved / source triples in the TensorBoard grid (0 = none).
        dim: pattern dimension ``D`` (on the command line: the datamodule's).
        num_memories: number of stored patterns ``N`` (on the command line: the datamodule's).
        image_shape: ``(C, H, W)`` of a pattern, for the image grid (on the command line: the
            datamodule's; patterns are shown as 1-pixel-high strips without it).
        log_energy: log the energy per retrieval step in validation / test; ``None`` = when the
            separation has one (polynomial with normalisation has none), ``True`` = require it.
        optimizer: a ``params -> Optimizer`` callable for the adaptive similarity's parameters
            (default AdamW, lr 1e-3).
        lr_scheduler: an ``optimizer -> scheduler`` callable, or ``None``.
    """

    monitor = "val/acc"
    monitor_mode = "max"
    data_sizes = ("dim", "num_memories")

    def __init__(
        self,
        similarity: str = "adaptive",
        separation: str = "softmax",
        beta: float = 1.0,
        steps: int = 1,
        similarity_kwargs: dict[str, Any] | None = None,
        separation_kwargs: dict[str, Any] | None = None,
        threshold: float | None = None,
        num_sample_images: int = 8,
        dim: int | None = None,
        num_memories: int | None = None,
        image_shape: tuple[int, ...] | None = None,
        log_energy: bool | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        # bad names and misspelt options fail here, before any data is loaded (the registries'
        # builders would silently drop unknown options)
        for registry, name, options in (
            (SIMILARITIES, similarity, similarity_kwargs),
            (SEPARATIONS, separation, separation_kwargs),
        ):
            _check_options(registry, name, options)
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        check_positive_ints(steps=steps)
        if num_sample_images < 0:
            raise ValueError(f"num_sample_images must be >= 0, got {num_sample_images}")
        self._samples: tuple[Tensor, Tensor, Tensor] | None = None
        # whether ``memories`` holds real patterns (from a datamodule, set_memories or a
        # checkpoint); only then may setup leave them alone
        self._memories_loaded = False
        self.save_task_hyperparameters()

    # -- wiring ---------------------------------------------------------------------------------

    def configure_models(self) -> None:
        hp = self.hparams
        self.similarity = build_similarity(
            hp.similarity, dim=hp.dim, **(hp.similarity_kwargs or {})
        )
        self.separation = build_separation(
            hp.separation, beta=hp.beta, **(hp.separation_kwargs or {})
        )
        self.energy_logged = self._energy_defined(hp.get("log_energy"))
        # filled from the datamodule at setup (or by set_memories); saved with the checkpoint
        self.register_buffer("memories", torch.zeros(hp.num_memories, hp.dim))

    def _energy_defined(self, log_energy: bool | None) -> bool:
        if log_energy is False:
            return False
        try:
            check_energy(self.separation)
        except ValueError:
            if log_energy:
                raise
            return False
        return True

    def configure_metrics(self) -> MetricCollection:
        hp = self.hparams
        threshold = UHN_THRESHOLD * hp.dim / UHN_PIXELS if hp.threshold is None else hp.threshold
        # no compute groups: the three metrics have identical state names, and torchmetrics
        # would merge metrics whose states happen to be equal after the first batch
        return MetricCollection(
            {
                "acc": RetrievalAccuracy(),
                "fraction_retrieved": FractionRetrieved(threshold),
                "mse": RetrievalMSE(),
            },
            compute_groups=False,
        )

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        super().setup(stage)
        memories = getattr(datamodule, "memories", None)
        # memories already held (a loaded checkpoint, an earlier run) are kept, so that
        # _check_memories can refuse a datamodule with other patterns instead of silently
        # replacing them (a checkpoint given as ckpt_path is restored after setup and checked)
        if memories is not None and not self._memories_loaded:
            self.set_memories(memories)
            # adapt the similarity to the patterns it will retrieve from (U-Hop: stage I); a
            # checkpoint restored later brings its own trained similarity
            self.similarity.store(self.memories)

    def set_memories(self, memories: Tensor) -> None:
        """Store the patterns ``(N, D)`` to retrieve from (``N``, ``D`` fixed at construction)."""
        if tuple(memories.shape) != tuple(self.memories.shape):
            raise ValueError(
                f"memories of shape {tuple(memories.shape)} do not fit this task, built for "
                f"num_memories={self.hparams.num_memories}, dim={self.hparams.dim}"
            )
        self.memories.copy_(memories)
        self._memories_loaded = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._memories_loaded = True

    def _check_memories(self) -> None:
        """The data's sources index the datamodule's memories; refuse other memories (e.g. a
        checkpoint trained on another memory set)."""
        memories = getattr(getattr(self.trainer, "datamodule", None), "memories", None)
        if memories is not None and not torch.equal(memories.to(self.memories), self.memories):
            raise ValueError(
                f"the model's memories {tuple(self.memories.shape)} differ from the datamodule's "
                f"{tuple(memories.shape)} (a checkpoint from another dataset / num_memories / "
                "memory_seed?); the query labels would not match. To retrieve from the new "
                "patterns on purpose, call task.set_memories(datamodule.memories) first"
            )

    def on_fit_start(self) -> None:
        self._check_memories()

    def on_validation_start(self) -> None:
        self._check_memories()

    def on_test_start(self) -> None:
        self._check_memories()

    def configure_optimizers(self) -> Any:
        if not any(p.requires_grad for p in self.parameters()):
            raise ValueError(
                f"similarity {self.hparams.similarity!r} has no trainable parameters, so there is "
                "nothing to fit: evaluate it with `python train.py validate` (or `test`), or use "
                "similarity: adaptive or uhop"
            )
        return super().configure_optimizers()

    # -- retrieval --------------------------------------------------------------------------------

    def _continue(
        self, weights: Tensor, queries: Tensor | None = None, scores: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Retrieved patterns, last weights and (given the queries and their scores) the energy
        ``(steps + 1, B)`` of every state, from the first step's association weights."""
        energies = None
        if queries is not None:
            energies = [energy_from_scores(self.similarity, self.separation, queries, scores)]
        output = weights.to(self.memories.dtype) @ self.memories
        if self.hparams.steps > 1:
            result = retrieve(
                output,
                self.memories,
                similarity=self.similarity,
                separation=self.separation,
                steps=self.hparams.steps - 1,
                return_details=True,
                return_energies=energies is not None,
            )
            output, weights = result.output, result.weights
            if energies is not None:
                energies.extend(result.energies)
        elif energies is not None:
            energies.append(network_energy(self.similarity, self.separation, output, self.memories))
        return output, weights, None if energies is None else torch.stack(energies)

    def forward(self, queries: Tensor) -> Tensor:
        """Retrieved patterns ``(B, D)`` for queries ``(B, D)``."""
        weights = self.separation(self.similarity(self.memories, queries))
        return self._continue(weights)[0]

    def shared_step(self, batch: Any, stage: str) -> tuple[Tensor, tuple[Tensor, ...]]:
        queries, sources = batch
        loss, scores = association_cross_entropy(
            self.similarity, self.memories, queries, sources, self.hparams.beta, return_scores=True
        )
        with_energy = stage != "train" and self.energy_logged
        with torch.no_grad():  # the loss alone trains; retrieval is only measured
            output, weights, energies = self._continue(
                self.separation(scores),
                queries if with_energy else None,
                scores if with_energy else None,
            )
        if energies is not None:
            for step, values in enumerate(energies):
                self.log(
                    f"{stage}/energy_step_{step}",
                    values.mean(),
                    on_epoch=True,
                    sync_dist=True,
                    batch_size=len(queries),
                )
        targets = self.memories[sources]
        if stage == "val" and self._samples is None and self._logging_images():
            keep = self.hparams.num_sample_images
            self._samples = (queries[:keep], output[:keep], targets[:keep])
        return loss, (weights, output, sources, targets)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        queries = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(queries)

    # -- TensorBoard image grid ---------------------------------------------------------------

    def _logging_images(self) -> bool:
        return self.logging_images(self.hparams.num_sample_images > 0)

    def on_validation_epoch_start(self) -> None:
        self._samples = None

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self._samples is None or not self._logging_images():
            return
        shape = tuple(self.hparams.image_shape or (1, 1, self.hparams.dim))
        rows = torch.cat(self._samples).detach().float().cpu().clamp(0, 1)
        grid = make_grid(rows.view(-1, *shape), nrow=len(self._samples[0]), pad_value=0.5)
        self.tensorboard().add_image("val/retrieval", grid, self.global_step)
        self._samples = None

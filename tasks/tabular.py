"""Tabular classification with a Hopfield network: retrieval from the training rows (default) or
a lookup memory of learned patterns (``network: lookup``)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from ahop.checks import check_int
from ahop.classifiers import TABULAR_NETWORKS
from ahop.ensemble import TabularDeepEnsemble, mean_probability_logits, member_mean_loss
from ahop.feature_embeddings import FEATURE_EMBEDDINGS, auto_feature_embedding
from ahop.tabular_retrieval import auto_encoder_blocks
from tasks.base import ClassificationTask, default_optimizer
from tasks.progress import progress_bar_for

#: the task's options that configure the network, each passed on when set (``None``: the
#: network's own default); an option the chosen network does not take is an error
NETWORK_OPTIONS = (
    "embedding_dim",
    "feature_embedding",
    "feature_embedding_kwargs",
    "similarity",
    "similarity_kwargs",
    "separation",
    "scaling",
    "dropout",
    # lookup
    "quantity",
    "num_heads",
    "num_layers",
    # retrieval
    "context_size",
    "candidate_similarity",
    "candidate_search",
    "ivf_min_memories",
    "update_steps",
    "encoder_blocks",
    "predictor_blocks",
    "context_dropout",
    "memory_refresh",
    "max_memory_rows",
    "ensemble_size",
)


#: weight of ``val/loss`` in the selection score ``val/acc - w * val/loss``: small enough that one
#: more correct row (1 / n_val) outweighs any loss difference below 1 for up to 10,000
#: validation rows, so the loss only breaks ties in accuracy
SELECTION_LOSS_WEIGHT = 1e-4


def _network_names_taking(option: str) -> list[str]:
    return [name for name in TABULAR_NETWORKS.names() if option in TABULAR_NETWORKS.options(name)]


class TabularClassifier(ClassificationTask):
    """Rows ``(B, F)`` -> class logits with a network of :data:`ahop.classifiers.TABULAR_NETWORKS`.

    * ``retrieval`` (default; :class:`~ahop.tabular_retrieval.TabularRetrievalClassifier`): the
      training rows are the memory; the task fills it from ``datamodule.tensors("train")`` in
      ``setup``, saves it in checkpoints and bakes its encodings into exported graphs.
    * ``lookup`` (:class:`~ahop.classifiers.TabularHopfieldClassifier`): a Hopfield layer over
      ``quantity`` learned patterns.

    The sizes ``num_features``, ``num_classes``, ``num_numeric`` and ``categorical_cardinalities``
    default to the datamodule's (read at ``setup``). Network options left ``None`` take the
    network's defaults; setting one the chosen network does not take is an error.

    Model selection (the one rule the CLI, ``ahop cv`` and ``benchmarks/tabular.py`` share): the
    checkpoint with the best validation accuracy, ties broken by the lower validation
    cross-entropy (``monitor`` = ``val/selection`` = ``val/acc - SELECTION_LOSS_WEIGHT *
    val/loss``), and early stopping on it after ``early_stopping_patience`` epochs without
    improvement (``None``: no early stopping; the callback comes from
    :meth:`configure_callbacks`, so configs need not list one). Chosen by a measurement on
    validation rows only (docs/results_tabular.md: the epoch picked on one half of the validation
    rows, scored on the other half).

    Args:
        num_features: row width ``F`` (``None``: the datamodule's).
        num_classes: classes ``C`` (``None``: the datamodule's).
        num_numeric: leading numeric columns of a row (``None``: the datamodule's).
        categorical_cardinalities: categories per trailing code column of the ``embedding``
            encoding, unknown code included (``None``: the datamodule's; empty: none).
        network: ``retrieval`` (retrieval from the stored training rows) or ``lookup`` (a
            Hopfield layer over learned patterns).
        embedding_dim: size of the embedding / association space (row encodings, keys, values).
        feature_embedding: numeric feature embedding: ``linear``, ``periodic``,
            ``piecewise_linear`` (bins fitted on the training rows) or ``auto``
            (:func:`ahop.feature_embeddings.auto_feature_embedding`: piecewise-linear below
            ``AUTO_PERIODIC_MIN_ROWS`` (10,000) training rows, periodic with sigma 3 from there).
        num_training_rows: rows of the training split (``None``: the datamodule's; only the
            ``auto`` choices of ``feature_embedding`` and ``encoder_blocks`` read it).
        feature_embedding_kwargs: its options (e.g. ``{bins: 32}``, ``{sigma: 0.1}``).
        similarity: how queries are compared with memories: ``dot``, ``cosine``, ``euclidean``,
            ``manhattan`` or ``adaptive`` (the learned A-Hop similarity).
        similarity_kwargs: options of the similarity (e.g. ``{squared: true}`` for euclidean).
        separation: how similarities become association weights: ``softmax``, ``max``,
            ``polynomial``, ``topk``, ``sparsemax``, ``entmax``.
        scaling: inverse temperature of the separation (``None``: the network's default).
        dropout: dropout of the network's blocks.
        quantity: lookup: stored (learned) patterns per Hopfield layer.
        num_heads: lookup: association heads per layer (must divide ``embedding_dim``).
        num_layers: lookup: stacked Hopfield blocks.
        context_size: retrieval: memories each row retrieves from (picked by the candidate search).
        candidate_similarity: retrieval: the cheap ranking of the candidate search
            (``euclidean`` or ``dot``).
        candidate_search: retrieval: ``auto`` (exact below ``ivf_min_memories`` training rows, a
            faiss IVF index, approximate, from there on), ``exact`` or ``ivf``.
        ivf_min_memories: retrieval: see ``candidate_search`` (default 10,000).
        update_steps: retrieval: Hopfield update steps over the context.
        encoder_blocks: retrieval: residual MLP blocks before the retrieval, or ``auto``
            (:func:`ahop.tabular_retrieval.auto_encoder_blocks`: one from 1,000 up to 10,000
            training rows, else none; a network without encoder blocks ignores ``auto``).
        predictor_blocks: retrieval: residual MLP blocks after the retrieval.
        context_dropout: retrieval: dropout on the association weights.
        memory_refresh: retrieval: how memory encodings follow training: ``frozen`` (once per
            epoch, no gradient), ``epoch``, ``batch`` or ``full`` (every batch, with gradients).
        max_memory_rows: retrieval: the largest training set the memory accepts.
        ensemble_size: retrieval: TabM-mini members after the retrieval (:mod:`ahop.ensemble`):
            training takes the members' mean cross-entropy, predictions their mean probability.
        deep_ensemble_size: independently initialised networks trained side by side, each on its
            own loss, predicting their mean probability (:class:`ahop.ensemble.TabularDeepEnsemble`;
            unlike ``ensemble_size`` every member has its own encoder and retrieved context).
            Costs ``k`` times the time and memory of one network. 1: one network.
        label_smoothing: the training loss's label smoothing (Szegedy et al. 2016; 0: none).
            Validation and test losses stay the plain cross-entropy, so ``val/selection`` is
            comparable across settings.
        early_stopping_patience: epochs without a better ``val/selection`` before training stops
            (``null``: never).
        optimizer: a ``params -> Optimizer`` callable (``class_path`` + ``init_args`` in a
            config; default AdamW, lr 1e-3).
        lr_scheduler: an ``optimizer -> scheduler`` callable, or ``None``; ``ReduceLROnPlateau``
            watches the monitored metric.
    """

    data_sizes = ("num_features", "num_classes", "num_numeric", "categorical_cardinalities")
    monitor = "val/selection"
    monitor_mode = "max"
    # ``ahop cv`` without --selection: the task's own rule (validation rows carved from each
    # training fold, early stopping, best checkpoint). Every tabular figure in
    # docs/results_tabular.md was measured under it, and it is one fit per fold where inner_cv is
    # six (a 30k-row table: minutes instead of most of an hour)
    cv_selection = "validation"

    def __init__(
        self,
        num_features: int | None = None,
        num_classes: int | None = None,
        num_numeric: int | None = None,
        categorical_cardinalities: list[int] | None = None,
        num_training_rows: int | None = None,
        network: str = "retrieval",
        embedding_dim: int | None = None,
        feature_embedding: str | None = None,
        feature_embedding_kwargs: dict[str, Any] | None = None,
        similarity: str | None = None,
        similarity_kwargs: dict[str, Any] | None = None,
        separation: str | None = None,
        scaling: float | None = None,
        dropout: float | None = None,
        quantity: int | None = None,
        num_heads: int | None = None,
        num_layers: int | None = None,
        context_size: int | None = None,
        candidate_similarity: str | None = None,
        candidate_search: str | None = None,
        ivf_min_memories: int | None = None,
        update_steps: int | None = None,
        encoder_blocks: int | str | None = None,
        predictor_blocks: int | None = None,
        context_dropout: float | None = None,
        memory_refresh: str | None = None,
        max_memory_rows: int | None = None,
        ensemble_size: int | None = None,
        deep_ensemble_size: int = 1,
        label_smoothing: float = 0.0,
        early_stopping_patience: int | None = 16,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        accepted = TABULAR_NETWORKS.options(network)  # an unknown name lists the allowed ones
        local = locals()
        # encoder_blocks: auto lets the task decide, and for a network without encoder blocks there
        # is nothing to decide (configs keep it when a user switches to lookup); any other "auto"
        # for a network without the option is still an error
        given = [n for n in NETWORK_OPTIONS if local[n] is not None]
        wrong = [
            n for n in given if n not in accepted and (n, local[n]) != ("encoder_blocks", "auto")
        ]
        if wrong:
            owners = {n: "/".join(_network_names_taking(n)) for n in wrong}
            raise ValueError(
                f"network {network!r} does not take "
                + ", ".join(f"{n} (an option of {owners[n]})" for n in wrong)
                + ": remove it or choose that network"
            )
        if early_stopping_patience is not None and (
            not isinstance(early_stopping_patience, int) or early_stopping_patience < 1
        ):
            raise ValueError(
                f"early_stopping_patience must be an integer >= 1 or null, got {early_stopping_patience!r}"
            )
        embeddings = ["auto", *FEATURE_EMBEDDINGS.names()]
        if feature_embedding is not None and feature_embedding not in embeddings:
            raise ValueError(
                f"unknown feature embedding {feature_embedding!r}; allowed values: "
                + ", ".join(embeddings)
            )
        if feature_embedding == "auto" and feature_embedding_kwargs:
            raise ValueError(
                "feature_embedding 'auto' picks the embedding and its options by the training "
                "rows; to set feature_embedding_kwargs, name the embedding (piecewise_linear, "
                "periodic, linear)"
            )
        if isinstance(encoder_blocks, str) and encoder_blocks != "auto":
            raise ValueError(
                f"encoder_blocks must be an integer >= 0 or 'auto', got {encoder_blocks!r}"
            )
        check_int(deep_ensemble_size, "deep_ensemble_size", minimum=1)
        if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.save_task_hyperparameters()

    # -- network --------------------------------------------------------------------------------
    def configure_models(self) -> None:
        hp = self.hparams
        self.num_classes = hp.num_classes
        options = {n: hp[n] for n in NETWORK_OPTIONS if hp.get(n) is not None}
        if options.get("feature_embedding") == "auto":
            name, kwargs = auto_feature_embedding(hp.get("num_training_rows"))
            options.update(feature_embedding=name, feature_embedding_kwargs=kwargs)
            # the checkpoint records what was built, so a reload never re-decides by row count
            hp.feature_embedding, hp.feature_embedding_kwargs = name, kwargs
        if options.get("encoder_blocks") == "auto":
            if "encoder_blocks" in TABULAR_NETWORKS.options(hp.network):
                options["encoder_blocks"] = auto_encoder_blocks(hp.get("num_training_rows"))
            else:
                del options["encoder_blocks"]
            hp.encoder_blocks = options.get("encoder_blocks")  # recorded as built
        members = [
            TABULAR_NETWORKS.build(
                hp.network,
                num_features=hp.num_features,
                num_classes=hp.num_classes,
                num_numeric=hp.num_numeric,
                categorical_cardinalities=list(hp.categorical_cardinalities),
                **options,
            )
            for _ in range(hp.get("deep_ensemble_size", 1))
        ]
        self.network = members[0] if len(members) == 1 else TabularDeepEnsemble(members)

    @property
    def member_networks(self) -> list[nn.Module]:
        """The networks of the deep ensemble (the one network without one)."""
        if isinstance(self.network, TabularDeepEnsemble):
            return list(self.network.members)
        return [self.network]

    def configure_losses(self) -> None:
        super().configure_losses()
        self.train_criterion = nn.CrossEntropyLoss(label_smoothing=self.hparams.label_smoothing)

    @property
    def holds_memory(self) -> bool:
        """Whether the network retrieves from stored training rows."""
        return hasattr(self.network, "memory_rows")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "tensors"):
            return
        # fit: the memory (and bins) come from the training rows being trained on; other stages
        # keep what the checkpoint holds (restored after setup) and fill only what is missing,
        # when the training rows are loaded (not for predict_path rows: the checkpoint has them)
        if stage == "fit" or (self._needs_training_rows() and "train" in datamodule.split_sizes):
            features, labels = datamodule.tensors("train")
            self.network.prepare(features, labels)

    def _needs_training_rows(self) -> bool:
        empty = self.holds_memory and self.network.memory_rows == 0
        return empty or not all(net.embed.fitted for net in self.member_networks)

    def on_predict_start(self) -> None:
        if self._needs_training_rows():
            raise ValueError(
                "the tabular model holds no training rows / fitted bins: predict with "
                "--ckpt_path <a checkpoint of a trained model>"
            )

    def on_train_epoch_start(self) -> None:
        if self.holds_memory:
            self.network.reset_refresh_log()
            self.network.refresh_memory()

    def progress_metrics(self) -> dict[str, str]:
        """What the progress bar (:class:`tasks.progress.RowsProgressBar`) adds: the memory
        refreshes of this epoch and their seconds, ``{"refresh": "2x 0.41s"}`` (retrieval with
        the ``epoch`` / ``frozen`` refresh; empty otherwise)."""
        net = self.network
        if not self.holds_memory or net.memory_refresh not in ("epoch", "frozen"):
            return {}
        count, seconds = net.refresh_log
        return {"refresh": f"{int(count)}x {seconds:.2f}s"}

    def shared_step(self, batch: Any, stage: str) -> tuple[Tensor, tuple[Tensor, ...]]:
        features, target = batch
        criterion = self.train_criterion if stage == "train" else self.criterion
        # in training the labels let the retrieval network exclude each row's own memory row
        if self.network.training and hasattr(self.network, "member_logits"):
            members = self.network.member_logits(features, target)  # (B, k, C)
            loss = member_mean_loss(members, target, criterion)
            logits = mean_probability_logits(members)
        else:
            logits = self.network(features, target if self.network.training else None)
            loss = criterion(logits, target)
        return loss, (self.probabilities(logits.detach()), target)

    # -- model selection ------------------------------------------------------------------------
    def on_validation_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        accuracy, loss = metrics.get("val/acc"), metrics.get("val/loss")
        if accuracy is not None and loss is not None and not self.trainer.sanity_checking:
            score = accuracy.float() - SELECTION_LOSS_WEIGHT * loss.float().clamp_max(10.0)
            self.log(self.monitor, score, sync_dist=True)
            self.best_tracker.update(score.to(self.device))
            self.log(self.best_name, self.best_tracker.compute(), sync_dist=True)

    def configure_callbacks(self) -> list[Callback]:
        bar = progress_bar_for(self._trainer)  # rows / s, ETA and the memory refresh
        patience = self.hparams.early_stopping_patience
        if patience is None:
            return [*super().configure_callbacks(), *bar]
        # strict=False: a run that stops before its first validation has nothing to judge (the
        # monitor is the task's own metric, so it cannot be misspelt)
        return [
            *super().configure_callbacks(),
            *bar,
            EarlyStopping(
                monitor=self.monitor, mode=self.monitor_mode, patience=patience, strict=False
            ),
        ]

    # -- export ---------------------------------------------------------------------------------
    def example_input(self, batch_size: int = 2) -> Tensor:
        """A dummy batch of preprocessed rows ``(batch_size, num_features)`` (used for export)."""
        return torch.zeros(batch_size, self.hparams.num_features)

    def export_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        if self.holds_memory:  # encode the memory now, so the graph holds it as constants
            self.network.bake_memory()
        return super().export_inputs(batch_size)

    def export_metadata(self) -> dict[str, Any]:
        """What ``export`` adds to metadata.json: the network and, for retrieval, the memory baked
        into the graph (rows, encoding sizes and bytes)."""
        meta: dict[str, Any] = {"network": self.hparams.network}
        if self.holds_memory:
            nets = self.member_networks
            baked = [net.bake_memory() for net in nets]
            net, (keys, hidden) = nets[0], baked[0]
            meta["memory"] = {
                "rows": net.memory_rows,
                "baked": "encoded keys and their value projection per training row, and the labels",
                "key_dim": keys.shape[1],
                "value_projection_dim": hidden.shape[1],
                "context_size": min(net.context_size, net.memory_rows),
                "members": len(nets),  # each member bakes its own encodings of the rows
                "bytes": {
                    "baked_encodings": sum((k.numel() + h.numel()) * 4 for k, h in baked),
                    "labels": net.memory_labels.numel() * 8 * len(nets),
                    "training_rows_in_checkpoint": net.memory_features.numel() * 4 * len(nets),
                },
            }
        return meta

"""Row embeddings for tabular data: numeric features and categorical codes -> one vector per row.

A row ``(F,)`` is laid out as ``[numeric block (num_numeric columns) | categorical block]`` (the
layout of ``datamodules.tabular.TabularDataModule``). The numeric block goes through a numeric
embedding from ``rtdl_num_embeddings`` (Gorishniy et al. 2022, "On Embeddings for Numerical
Features in Tabular Deep Learning"); the categorical block is either integer codes, each column
embedded by its own ``nn.Embedding`` (``categorical_cardinalities`` given), or already-encoded
columns (one-hot, scaled ordinal) passed through. The parts are concatenated and mixed by one
linear layer (+ activation, dropout) into ``embedding_dim``.

:data:`FEATURE_EMBEDDINGS` names the numeric embedding:

* ``"linear"``: the numeric values as they are (one linear layer over all columns);
* ``"periodic"``: ``PeriodicEmbeddings`` (PLR: ``ReLU(W [cos(2 pi c x), sin(2 pi c x)])``);
* ``"piecewise_linear"``: ``PiecewiseLinearEmbeddings`` over quantile bins that
  :meth:`RowEmbedding.fit` computes on the *training* rows (``compute_bins``); ``version="B"``
  starts as a linear embedding and learns the piecewise part.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from rtdl_num_embeddings import PeriodicEmbeddings, PiecewiseLinearEmbeddings, compute_bins
from torch import Tensor, nn

from ahop.checks import check_int, check_positive_ints
from ahop.registry import Registry

FEATURE_EMBEDDINGS: Registry[nn.Module] = Registry("feature embedding")

#: activations after the mixing layer, by name
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "identity": nn.Identity,
}

#: arguments every feature embedding takes from the network that builds it (not user options)
NETWORK_ARGUMENTS = frozenset(
    {
        "num_features",
        "embedding_dim",
        "dropout",
        "num_numeric",
        "categorical_cardinalities",
        "activation",
    }
)


def check_layout(
    num_features: int, num_numeric: int | None, categorical_cardinalities: Sequence[int]
) -> int:
    """Validate a ``[numeric | categorical]`` layout; returns ``num_numeric`` (all when ``None``).

    Raises:
        ValueError: naming the size that does not fit.
    """
    check_int(num_features, "num_features")
    cards = list(categorical_cardinalities)
    if num_numeric is None:
        num_numeric = num_features - len(cards)
    if not isinstance(num_numeric, int) or not 0 <= num_numeric <= num_features:
        raise ValueError(
            f"num_numeric must be in [0, num_features={num_features}], got {num_numeric!r}"
        )
    if cards and num_numeric + len(cards) != num_features:
        raise ValueError(
            f"with categorical_cardinalities (one per code column) the row must be num_numeric + "
            f"{len(cards)} columns = {num_numeric + len(cards)}, but num_features={num_features}"
        )
    bad = [c for c in cards if not isinstance(c, int) or c < 1]
    if bad:
        raise ValueError(f"categorical_cardinalities must be integers >= 1, got {bad}")
    return num_numeric


class RowEmbedding(nn.Module):
    """Base class: rows ``(B, F)`` -> ``(B, embedding_dim)``.

    Subclasses embed the numeric block (:meth:`embed_numeric`, flat ``(B, numeric_width)``).

    Args:
        num_features: row width ``F``.
        embedding_dim: output size ``E``.
        dropout: dropout on the output.
        num_numeric: leading numeric columns (default: all columns that are not codes).
        categorical_cardinalities: one count per trailing code column (codes ``0..card-1`` as
            floats); empty = the trailing columns are already encoded and pass through.
        categorical_dim: embedding size of each categorical column.
        activation: after the mixing layer: ``"gelu"``, ``"relu"`` or ``"identity"``.
    """

    #: whether :meth:`fit` must see training rows before the module can run
    needs_fit = False

    def __init__(
        self,
        num_features: int,
        embedding_dim: int,
        dropout: float = 0.0,
        num_numeric: int | None = None,
        categorical_cardinalities: Sequence[int] = (),
        categorical_dim: int = 16,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        check_positive_ints(embedding_dim=embedding_dim, categorical_dim=categorical_dim)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_features = num_features
        self.num_numeric = check_layout(num_features, num_numeric, categorical_cardinalities)
        self.cardinalities = [int(c) for c in categorical_cardinalities]
        self.categorical = nn.ModuleList(
            nn.Embedding(card, categorical_dim) for card in self.cardinalities
        )
        rest = num_features - self.num_numeric - len(self.cardinalities)  # passed through
        width = self.numeric_width() + categorical_dim * len(self.cardinalities) + rest
        self.mix = nn.Sequential(
            nn.Linear(width, embedding_dim), ACTIVATIONS[activation](), nn.Dropout(dropout)
        )

    def numeric_width(self) -> int:
        """Width of the flat numeric embedding."""
        raise NotImplementedError

    def embed_numeric(self, numeric: Tensor) -> Tensor:
        """``(B, num_numeric)`` -> ``(B, numeric_width)``."""
        raise NotImplementedError

    def fit(self, features: Tensor, labels: Tensor | None = None) -> None:
        """Fit data-dependent parts on training rows ``(N, F)`` and their class labels ``(N,)``
        (a no-op unless ``needs_fit``)."""

    @property
    def fitted(self) -> bool:
        """Whether the module can run (always, unless it needs training rows first)."""
        return True

    def forward(self, features: Tensor) -> Tensor:
        """``(B, F)`` rows -> ``(B, E)``."""
        if features.dim() != 2 or features.shape[-1] != self.num_features:
            raise ValueError(
                f"expected rows of shape (batch, {self.num_features}), got {tuple(features.shape)}"
            )
        parts = []
        if self.num_numeric:
            parts.append(self.embed_numeric(features[:, : self.num_numeric]))
        if self.cardinalities:
            codes = features[:, self.num_numeric :].long()
            if not torch.compiler.is_compiling():
                self._check_codes(codes)
            parts += [emb(codes[:, i]) for i, emb in enumerate(self.categorical)]
        else:
            parts.append(features[:, self.num_numeric :])
        return self.mix(torch.cat(parts, -1))

    def _check_codes(self, codes: Tensor) -> None:
        limits = codes.new_tensor(self.cardinalities)
        bad = (codes < 0) | (codes >= limits)
        if bool(bad.any()):
            column = int(bad.any(0).nonzero()[0])
            raise ValueError(
                f"categorical column {column} holds code {int(codes[bad.any(1), column][0])} "
                f"outside 0..{self.cardinalities[column] - 1}: feed the datamodule's "
                "'embedding' encoding (codes, with card-1 = unknown)"
            )


@FEATURE_EMBEDDINGS.register("linear")
class LinearFeatureEmbedding(RowEmbedding):
    """The numeric values as they are: one linear layer over all columns (+ activation, dropout)."""

    def numeric_width(self) -> int:
        return self.num_numeric

    def embed_numeric(self, numeric: Tensor) -> Tensor:
        return numeric


@FEATURE_EMBEDDINGS.register("periodic")
class PeriodicFeatureEmbedding(RowEmbedding):
    """Periodic numeric embeddings (``rtdl_num_embeddings.PeriodicEmbeddings``, "PLR").

    Each numeric feature ``x_f`` becomes ``ReLU(W_f [cos(2 pi c_f x_f), sin(2 pi c_f x_f)])`` with
    ``frequencies`` learned coefficients ``c_f`` (initialised ``N(0, sigma²)``, truncated); ``lite``
    shares ``W`` between features. Tree-like thresholds on single features; ``sigma`` (how fine they
    can be on standardised features) is the setting that matters most.

    Args:
        frequencies: frequencies per feature.
        feature_dim: size of each feature's embedding.
        sigma: scale of the initial frequencies.
        lite: one output layer shared by all features.
        (other arguments: :class:`RowEmbedding`)
    """

    def __init__(
        self,
        num_features: int,
        embedding_dim: int,
        dropout: float = 0.0,
        num_numeric: int | None = None,
        categorical_cardinalities: Sequence[int] = (),
        categorical_dim: int = 16,
        activation: str = "gelu",
        frequencies: int = 48,
        feature_dim: int = 24,
        sigma: float = 0.01,
        lite: bool = False,
    ) -> None:
        check_positive_ints(frequencies=frequencies, feature_dim=feature_dim)
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.feature_dim = feature_dim
        super().__init__(
            num_features,
            embedding_dim,
            dropout,
            num_numeric,
            categorical_cardinalities,
            categorical_dim,
            activation,
        )
        self.periodic = (
            PeriodicEmbeddings(
                self.num_numeric,
                feature_dim,
                n_frequencies=frequencies,
                frequency_init_scale=sigma,
                lite=lite,
            )
            if self.num_numeric
            else None
        )

    @property
    def coefficients(self) -> Tensor:
        """The learned frequencies ``(num_numeric, frequencies)``."""
        return self.periodic.periodic.weight

    def numeric_width(self) -> int:
        return self.num_numeric * self.feature_dim

    def embed_numeric(self, numeric: Tensor) -> Tensor:
        return self.periodic(numeric).flatten(-2)


#: how the piecewise-linear bins are placed (``binning``)
BINNINGS = ("quantile", "tree", "quantile+tree")
#: the decision trees of target-aware bins (Gorishniy et al. 2022's PLE-T)
TREE_BIN_OPTIONS = {"min_samples_leaf": 64, "min_impurity_decrease": 1e-4}


def check_binning(binning: str) -> None:
    """One-line error for a ``binning`` outside :data:`BINNINGS`."""
    if binning not in BINNINGS:
        raise ValueError(f"unknown binning {binning!r}; allowed: {', '.join(BINNINGS)}")


def bin_edges(
    numeric: Tensor, bins: int, labels: Tensor | None = None, binning: str = "quantile"
) -> list[Tensor]:
    """Bin edges per column of training rows ``(N, n)`` (``rtdl_num_embeddings.compute_bins``).

    ``binning``: ``quantile`` (equal-frequency bins), ``tree`` (the thresholds of a small decision
    tree of each column against the class ``labels``: fine bins where the class changes, which
    quantiles miss on a mostly-zero column) or ``quantile+tree`` (the union of both edge sets).
    A column with a single distinct value gets one bin around it (``compute_bins`` rejects such
    columns); ``bins`` shrinks to ``N - 1`` for very small training sets.

    Raises:
        ValueError: fewer than 2 rows, non-finite values, an unknown ``binning``, or ``tree``
            bins without labels.
    """
    check_binning(binning)
    if binning != "quantile" and labels is None:
        raise ValueError(f"binning {binning!r} needs the training rows' class labels")
    if numeric.shape[0] < 2:
        raise ValueError(
            f"piecewise-linear bins need at least 2 training rows, got {numeric.shape[0]}"
        )
    if not bool(numeric.isfinite().all()):
        raise ValueError("piecewise-linear bins: the training rows hold NaN or infinite values")
    numeric = numeric.detach().float().cpu()
    constant = (numeric == numeric[0]).all(0)
    edges: list[Tensor | None] = [None] * numeric.shape[1]
    varying = (~constant).nonzero().flatten().tolist()
    if varying:
        n_bins = max(2, min(bins, numeric.shape[0] - 1))
        with warnings.catch_warnings():  # one-bin (binary) features are expected here
            warnings.filterwarnings("ignore", ".*just two bin edges.*")
            columns, parts = numeric[:, varying], []
            if binning != "tree":
                parts.append(compute_bins(columns, n_bins))
            if binning != "quantile":
                parts.append(
                    compute_bins(
                        columns,
                        n_bins,
                        tree_kwargs=TREE_BIN_OPTIONS,
                        y=labels.detach().cpu().long(),
                        regression=False,
                    )
                )
        # one edge set per column: the union where both rules ran
        found = [torch.unique(torch.cat(sets)) for sets in zip(*parts)]
        for column, column_edges in zip(varying, found):
            edges[column] = column_edges
    for column in constant.nonzero().flatten().tolist():
        value = float(numeric[0, column])
        edges[column] = torch.tensor([value - 1.0, value + 1.0])
    return edges


class _PiecewiseLinear(nn.Module):
    """``PiecewiseLinearEmbeddings`` whose bins are fitted on training rows and kept in the state.

    The padded bin edges are a buffer, so a checkpoint rebuilds the same module (the rtdl module's
    shapes depend on the bins) before its weights are copied in.
    """

    def __init__(
        self, num_numeric: int, feature_dim: int, bins: int, binning: str = "quantile"
    ) -> None:
        super().__init__()
        check_binning(binning)
        self.num_numeric, self.feature_dim, self.bins = num_numeric, feature_dim, bins
        self.binning = binning
        self.register_buffer("edges", torch.empty(0))  # (num_numeric, max edges), NaN-padded
        self.embedding: PiecewiseLinearEmbeddings | None = None

    def fit(self, numeric: Tensor, labels: Tensor | None = None) -> None:
        edges = bin_edges(numeric, self.bins, labels, self.binning)
        self._build(edges, device=self.edges.device)

    def _build(self, bins: list[Tensor], device: torch.device) -> None:
        width = max(len(b) for b in bins)
        edges = torch.full((len(bins), width), float("nan"))
        for i, b in enumerate(bins):
            edges[i, : len(b)] = b
        with warnings.catch_warnings():  # one-bin (binary) features are expected, not a problem
            warnings.filterwarnings("ignore", ".*just two bin edges.*")
            self.embedding = PiecewiseLinearEmbeddings(
                [b.float() for b in bins], self.feature_dim, activation=False, version="B"
            ).to(device)
        self.edges = edges.to(device)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        edges = state_dict.get(prefix + "edges")
        if (
            edges is not None
            and edges.numel()
            and not (
                self.embedding is not None
                and edges.shape == self.edges.shape
                and torch.equal(edges.isnan(), self.edges.isnan())
            )
        ):
            bins = [row[~row.isnan()].cpu() for row in edges]
            self._build(bins, device=self.edges.device)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, numeric: Tensor) -> Tensor:
        if self.embedding is None:
            raise RuntimeError(
                "the piecewise-linear embedding has no bins yet: call fit(training rows) first "
                "(the tabular task does this in setup)"
            )
        return self.embedding(numeric).flatten(-2)


@FEATURE_EMBEDDINGS.register("piecewise_linear")
class PiecewiseLinearFeatureEmbedding(RowEmbedding):
    """Piecewise-linear numeric embeddings (``rtdl_num_embeddings.PiecewiseLinearEmbeddings``).

    Each numeric feature is encoded against ``bins`` quantile bins computed on the training rows
    (:meth:`fit`; the encoding is ``[1, ..., 1, fraction of the current bin, 0, ..., 0]``), then
    projected per feature to ``feature_dim``; ``version="B"`` adds a per-feature linear embedding
    and zero-initialises the piecewise part, so training starts from a linear model.

    Args:
        bins: quantile bins per feature (at most; fewer when a feature has few distinct values).
        feature_dim: size of each feature's embedding.
        binning: where the bin edges go (:func:`bin_edges`): ``quantile``, ``tree``
            (target-aware) or ``quantile+tree``.
        (other arguments: :class:`RowEmbedding`)
    """

    needs_fit = True

    def __init__(
        self,
        num_features: int,
        embedding_dim: int,
        dropout: float = 0.0,
        num_numeric: int | None = None,
        categorical_cardinalities: Sequence[int] = (),
        categorical_dim: int = 16,
        activation: str = "gelu",
        bins: int = 48,
        feature_dim: int = 16,
        binning: str = "quantile",
    ) -> None:
        check_positive_ints(bins=bins, feature_dim=feature_dim)
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        self.feature_dim = feature_dim
        super().__init__(
            num_features,
            embedding_dim,
            dropout,
            num_numeric,
            categorical_cardinalities,
            categorical_dim,
            activation,
        )
        self.piecewise = _PiecewiseLinear(self.num_numeric, feature_dim, bins, binning)

    @property
    def fitted(self) -> bool:
        return not self.num_numeric or self.piecewise.embedding is not None

    def fit(self, features: Tensor, labels: Tensor | None = None) -> None:
        """Compute the bins on training rows ``(N, F)`` (their numeric block) and, for
        target-aware ``binning``, their class labels ``(N,)``."""
        if self.num_numeric:
            self.piecewise.fit(features[:, : self.num_numeric], labels)

    def numeric_width(self) -> int:
        return self.num_numeric * self.feature_dim

    def embed_numeric(self, numeric: Tensor) -> Tensor:
        return self.piecewise(numeric)


def build_feature_embedding(
    name: str,
    options: dict[str, Any] | None,
    **network_arguments: Any,
) -> RowEmbedding:
    """A :data:`FEATURE_EMBEDDINGS` module from its name, the user's ``options`` (checked against
    what that embedding accepts) and the sizes the network passes (:data:`NETWORK_ARGUMENTS`).

    Raises:
        ValueError: an unknown name, or options that embedding does not take (the message lists
            the allowed ones).
    """
    options = dict(options or {})
    accepted = FEATURE_EMBEDDINGS.options(name) - NETWORK_ARGUMENTS - {"self"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"unknown feature_embedding_kwargs {unknown} for {name!r}; allowed: "
            f"{', '.join(sorted(accepted)) or 'none'}"
        )
    return FEATURE_EMBEDDINGS.build(name, **options, **network_arguments)


#: training rows from which :func:`auto_feature_embedding` picks fine periodic embeddings
AUTO_PERIODIC_MIN_ROWS = 10_000
#: what ``auto`` picks at that size: periodic frequencies initialised at sigma 3 (validation rows of
#: a census table of 21k and a housing table of 13k training rows: +0.8 to +1.1 accuracy points
#: over piecewise-linear; at 1.2k-6.5k rows -0.3 to -4; docs/results_tabular.md)
AUTO_LARGE = ("periodic", {"sigma": 3.0})
AUTO_SMALL = ("piecewise_linear", {})


def auto_feature_embedding(num_training_rows: int | None) -> tuple[str, dict[str, Any]]:
    """The numeric embedding and its options for a training set of ``num_training_rows`` rows:
    piecewise-linear (quantile bins) below :data:`AUTO_PERIODIC_MIN_ROWS`, periodic with fine
    initial frequencies from there on (enough rows to learn sharp per-feature thresholds without
    memorising them). ``None`` (size unknown): piecewise-linear."""
    if num_training_rows is not None and num_training_rows >= AUTO_PERIODIC_MIN_ROWS:
        name, options = AUTO_LARGE
    else:
        name, options = AUTO_SMALL
    return name, dict(options)

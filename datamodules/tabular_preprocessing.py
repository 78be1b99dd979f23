"""Raw table rows -> model features, with the fitted state as plain data (no pickle).

:class:`TabularPreprocessor` is fitted on the training rows (:meth:`TabularPreprocessor.fit`)
and then maps raw rows (a DataFrame, a dict of columns or a list of row dicts, with strings as a
CSV gives them) to a float32 tensor ``(N, F)`` laid out as::

    [ numeric block: num_numeric standardised columns | categorical block ]

- numeric columns: missing cells -> the training median, then, with ``numeric_transform:
  quantile_normal``, the training quantiles map the value to a standard normal score (the
  transform of scikit-learn's ``QuantileTransformer(output_distribution="normal")``, which fits
  it; :data:`NUMERIC_TRANSFORMS`), then ``(x - mean) / scale`` with the training mean and
  standard deviation (computed after imputation and the transform; ``scale = 1`` for constants);
- categorical columns, by ``encoding`` (:data:`CATEGORICAL_ENCODINGS`): ``onehot`` (one column per
  training category, an unseen category is all zeros), ``ordinal`` (the category's index in the
  sorted training categories, unseen = -1, standardised like a numeric column) or ``embedding``
  (the integer code 0..k-1 as a float, code k reserved for unseen categories: cardinality k + 1).
  Missing categorical cells -> the most frequent training category.

Everything it learns is numbers and strings (:meth:`TabularPreprocessor.to_dict`), stored in a
checkpoint as such and written by :meth:`TabularPreprocessor.save` as JSON: loading either can
never execute code. The transform is re-implemented in NumPy rather than kept as fitted
scikit-learn objects for exactly that reason (those only persist as pickles).

Every change made to the data is reported on the ``ahop.data`` logger (:mod:`datamodules.logs`)
with counts per column: imputed cells and unseen categories. Cells that cannot be read (text in a
numeric column, infinite values) are errors that name the column, the row and the cell.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from datamodules.logs import report, warn
from datamodules.tabular_sources import tidy_series

FORMAT = "ahop.tabular_preprocessor"
FORMAT_VERSION = 1

RowNamer = Callable[[object], str]
"""Turns a row's index label into the words an error message uses (``line 7 of x.csv``)."""


def row_position(label: object) -> str:
    """Default :data:`RowNamer`: the row's index label (``row 3``)."""
    return f"row {label}"


def name_cells(series: pd.Series, positions: np.ndarray, row_name: RowNamer, limit: int = 3) -> str:
    """``line 5 of x.csv: 'abc', line 9 of x.csv: 'n/a'`` for the first ``limit`` positions."""
    shown = [f"{row_name(series.index[p])}: {series.iloc[p]!r}" for p in positions[:limit]]
    more = f" (and {len(positions) - limit} more)" if len(positions) > limit else ""
    return ", ".join(shown) + more


# ----------------------------------------------------------------------------- cells
def _category_label(value: object) -> str:
    """The canonical string of one categorical cell: 1, 1.0 and "1" all become "1"."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, str):
        return value
    raise TypeError(type(value).__name__)


def category_labels(series: pd.Series, column: str) -> np.ndarray:
    """Canonical category strings of a column as an object array, NaN where missing.

    Raises:
        ValueError: a cell that is neither text, a number nor a boolean (e.g. a list).
    """
    values = series.astype(object)
    present = values.notna().to_numpy()
    out = np.full(len(values), np.nan, dtype=object)
    try:
        mapping = {v: _category_label(v) for v in pd.unique(values[present])}
    except TypeError:  # an unhashable or unsupported cell (list, dict, date, ...)
        kinds = {type(v).__name__ for v in values[present]} - {"str", "bool", "int", "float"}
        raise ValueError(
            f"column {column!r} holds values of type {', '.join(sorted(kinds))} that cannot be "
            "encoded as categories; drop it (drop_columns) or convert it to text or numbers"
        ) from None
    out[present] = values[present].map(mapping).to_numpy()
    return out


def parse_numeric(series: pd.Series, column: str, row_name: RowNamer = row_position) -> np.ndarray:
    """One numeric column's raw cells -> float64 (NaN = missing: blank, ``?`` or NaN).

    Raises:
        ValueError: a cell that is not a number (naming the row and the cell) or an infinite value.
    """
    tidied = tidy_series(series)
    if pd.api.types.is_bool_dtype(tidied):
        tidied = tidied.astype(np.float64)
    parsed = pd.to_numeric(tidied, errors="coerce")
    bad = np.flatnonzero((parsed.isna() & tidied.notna()).to_numpy())
    if len(bad):
        raise ValueError(
            f"numeric column {column!r} has {len(bad)} non-numeric cell(s): "
            f"{name_cells(tidied, bad, row_name)}; fix them, blank them (a blank cell is a missing "
            "value and gets imputed), or drop the column (drop_columns)"
        )
    values = parsed.to_numpy(dtype=np.float64)
    infinite = np.flatnonzero(np.isinf(values))
    if len(infinite):
        raise ValueError(
            f"numeric column {column!r} has {len(infinite)} infinite value(s): "
            f"{name_cells(parsed, infinite, row_name)}; replace them with finite numbers or blank "
            "them (missing, imputed)"
        )
    return values


def _as_frame(rows: pd.DataFrame | Mapping[str, Sequence] | Sequence[Mapping[str, object]]):
    if isinstance(rows, pd.DataFrame):
        return rows
    return pd.DataFrame(rows) if isinstance(rows, Mapping) else pd.DataFrame(list(rows))


# ----------------------------------------------------------------------------- fitted state
#: ``numeric_transform`` options: ``standard`` (mean and standard deviation only) and
#: ``quantile_normal`` (the training quantiles first: heavy tails and skew flattened, the value's
#: rank kept; the preprocessing of the TabR and TabM papers' deep models)
NUMERIC_TRANSFORMS = ("standard", "quantile_normal")
#: at most this many training quantiles per column (scikit-learn's default)
MAX_QUANTILES = 1000
#: normal scores are clipped to the quantile levels ``[CLIP, 1 - CLIP]`` (as scikit-learn: ±5.2)
QUANTILE_CLIP = 1e-7


@dataclass
class NumericColumn:
    """A numeric column's fitted statistics: ``fill`` (training median) for missing cells, the
    training ``quantiles`` (ascending, at evenly spaced levels; ``None``: no quantile transform),
    then ``(x - mean) / scale``."""

    name: str
    fill: float
    mean: float
    scale: float
    quantiles: list[float] | None = None

    def normal_scores(self, values: np.ndarray) -> np.ndarray:
        """Quantile transform to a standard normal score (``values`` unchanged without
        ``quantiles``). Ties in the quantiles take the mean of the interpolation from either
        side, as scikit-learn does, so a repeated value maps to the middle of its levels."""
        if self.quantiles is None:
            return values
        from scipy.special import ndtri

        q = np.asarray(self.quantiles, dtype=np.float64)
        levels = np.linspace(0.0, 1.0, len(q))
        up = np.interp(values, q, levels)
        down = -np.interp(-values, -q[::-1], -levels[::-1])
        uniform = np.clip(0.5 * (up + down), QUANTILE_CLIP, 1 - QUANTILE_CLIP)
        return ndtri(uniform)


def fit_quantiles(values: np.ndarray, seed: int = 0) -> list[float]:
    """The training quantiles of one numeric column (scikit-learn's ``QuantileTransformer``:
    ``min(MAX_QUANTILES, rows)`` evenly spaced levels)."""
    from sklearn.preprocessing import QuantileTransformer

    transformer = QuantileTransformer(
        n_quantiles=min(MAX_QUANTILES, len(values)),
        output_distribution="normal",
        random_state=seed,
    )
    transformer.fit(values[:, None])
    return [float(v) for v in transformer.quantiles_[:, 0]]


@dataclass
class CategoricalColumn:
    """A categorical column's fitted state.

    Attributes:
        name: the raw column.
        categories: the training categories (canonical strings), sorted; their codes 0..k-1.
        fill: the most frequent training category (what missing cells become); ``None`` if the
            training rows hold no value at all (then every row counts as unseen).
        mean, scale: standardisation of the ordinal codes (``ordinal`` encoding only).
    """

    name: str
    categories: list[str]
    fill: str | None
    mean: float | None = None
    scale: float | None = None


@dataclass(frozen=True)
class CategoricalEncoding:
    """How one categorical column becomes numbers.

    Attributes:
        width: number of feature columns for ``k`` training categories.
        names: encoded feature names of a column.
        encode: ``(codes (N,) int64 with -1 = unseen, column) -> (N, width) float64``.
        fit: fits extra statistics from the training codes (``None`` when there are none).
        unseen: what an unseen category becomes, for the log.
    """

    width: Callable[[int], int]
    names: Callable[[CategoricalColumn], list[str]]
    encode: Callable[[np.ndarray, CategoricalColumn], np.ndarray]
    unseen: str
    fit: Callable[[np.ndarray, CategoricalColumn], None] | None = None


def _onehot(codes: np.ndarray, column: CategoricalColumn) -> np.ndarray:
    out = np.zeros((len(codes), len(column.categories)))
    known = codes >= 0
    out[np.flatnonzero(known), codes[known]] = 1.0
    return out


def _fit_ordinal(codes: np.ndarray, column: CategoricalColumn) -> None:
    column.mean, column.scale = _mean_scale(codes.astype(np.float64))


def _ordinal(codes: np.ndarray, column: CategoricalColumn) -> np.ndarray:
    return ((codes.astype(np.float64) - column.mean) / column.scale)[:, None]


def _embedding(codes: np.ndarray, column: CategoricalColumn) -> np.ndarray:
    unseen = len(column.categories)  # the reserved last code
    return np.where(codes >= 0, codes, unseen).astype(np.float64)[:, None]


CATEGORICAL_ENCODINGS: dict[str, CategoricalEncoding] = {
    "onehot": CategoricalEncoding(
        width=lambda k: k,
        names=lambda c: [f"cat__{c.name}_{v}" for v in c.categories],
        encode=_onehot,
        unseen="all-zero one-hot",
    ),
    "ordinal": CategoricalEncoding(
        width=lambda k: 1,
        names=lambda c: [f"cat__{c.name}"],
        encode=_ordinal,
        unseen="code -1",
        fit=_fit_ordinal,
    ),
    "embedding": CategoricalEncoding(
        width=lambda k: 1,
        names=lambda c: [f"cat__{c.name}"],
        encode=_embedding,
        unseen="the reserved unknown code",
    ),
}
"""Categorical columns -> numbers: ``onehot``, scaled ``ordinal`` codes, or integer codes for an
``embedding`` table (cardinality = training categories + 1 reserved unknown code)."""


def _mean_scale(values: np.ndarray) -> tuple[float, float]:
    """Mean and population standard deviation (as StandardScaler); scale 1 for a constant."""
    if len(values) == 0:
        return 0.0, 1.0
    mean = float(values.mean())
    scale = float(values.std())
    if not scale > 10 * np.finfo(np.float64).eps * max(abs(mean), 1.0):
        scale = 1.0
    return mean, scale


def _most_frequent(labels: np.ndarray) -> str | None:
    """The most frequent present label; ties -> the smallest (as scikit-learn's imputer)."""
    present = pd.Series(labels[pd.notna(labels)], dtype=object)
    if present.empty:
        return None
    counts = present.value_counts()
    return min(str(v) for v in counts.index[counts == counts.max()])


# ----------------------------------------------------------------------------- preprocessor
@dataclass
class TabularPreprocessor:
    """Fitted "raw rows -> (N, F) float32 features" transform (see the module docstring).

    Attributes:
        numeric: the numeric columns' statistics, in feature order.
        categorical: the categorical columns' categories, in feature order.
        encoding: the categorical encoding (a key of :data:`CATEGORICAL_ENCODINGS`).
        class_names: the model's output classes in output order (for predictions / export).
        numeric_transform: how numeric columns were mapped before standardising (a key of
            :data:`NUMERIC_TRANSFORMS`; the quantiles live in each :class:`NumericColumn`).
    """

    numeric: list[NumericColumn]
    categorical: list[CategoricalColumn]
    encoding: str = "onehot"
    class_names: list[str] = field(default_factory=list)
    numeric_transform: str = "standard"

    def __post_init__(self) -> None:
        if self.numeric_transform not in NUMERIC_TRANSFORMS:
            raise ValueError(
                f"unknown numeric_transform {self.numeric_transform!r}; allowed: "
                f"{list(NUMERIC_TRANSFORMS)}"
            )
        quantiled = {c.quantiles is not None for c in self.numeric}
        if quantiled and quantiled != {self.numeric_transform == "quantile_normal"}:
            raise ValueError(
                f"numeric_transform {self.numeric_transform!r} does not match the numeric "
                "columns' quantiles (quantile_normal: every column has them, standard: none)"
            )
        if self.encoding not in CATEGORICAL_ENCODINGS:
            raise ValueError(
                f"unknown categorical_encoding {self.encoding!r}; "
                f"allowed: {sorted(CATEGORICAL_ENCODINGS)}"
            )
        if not self.numeric and not self.categorical:
            raise ValueError("no feature columns left (all dropped?)")

    # -- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        numeric_columns: Sequence[str],
        categorical_columns: Sequence[str],
        encoding: str = "onehot",
        class_names: Sequence[str] = (),
        row_name: RowNamer = row_position,
        numeric_transform: str = "standard",
    ) -> TabularPreprocessor:
        """Fit on the training rows ``frame`` (raw cells; other columns are ignored)."""
        if numeric_transform not in NUMERIC_TRANSFORMS:
            raise ValueError(
                f"unknown numeric_transform {numeric_transform!r}; allowed: "
                f"{list(NUMERIC_TRANSFORMS)}"
            )
        if encoding not in CATEGORICAL_ENCODINGS:
            raise ValueError(
                f"unknown categorical_encoding {encoding!r}; "
                f"allowed: {sorted(CATEGORICAL_ENCODINGS)}"
            )
        _check_columns(frame, [*numeric_columns, *categorical_columns])
        numeric = []
        for name in numeric_columns:
            values = parse_numeric(frame[name], name, row_name)
            present = values[~np.isnan(values)]
            if len(present) == 0:
                warn(
                    f"numeric column {name!r} has no value in the training rows: it is filled with "
                    "0 everywhere (drop it with drop_columns)"
                )
                fill = 0.0
            else:
                fill = float(np.median(present))
            filled = np.where(np.isnan(values), fill, values)
            column = NumericColumn(name, fill, 0.0, 1.0)
            if numeric_transform == "quantile_normal":
                column.quantiles = fit_quantiles(filled)
            column.mean, column.scale = _mean_scale(column.normal_scores(filled))
            numeric.append(column)
        categorical = []
        scheme = CATEGORICAL_ENCODINGS[encoding]
        for name in categorical_columns:
            labels = category_labels(tidy_series(frame[name]), name)
            fill = _most_frequent(labels)
            if fill is None:
                warn(
                    f"categorical column {name!r} has no value in the training rows: every row "
                    "is an unseen category (drop it with drop_columns)"
                )
            categories = sorted({str(v) for v in labels[pd.notna(labels)]})
            column = CategoricalColumn(name, categories, fill)
            if scheme.fit is not None:
                scheme.fit(_codes(labels, column), column)
            categorical.append(column)
        return cls(numeric, categorical, encoding, [str(c) for c in class_names], numeric_transform)

    # -- layout --------------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """The raw columns it reads, numeric first (other columns of the input are ignored)."""
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    @property
    def numeric_columns(self) -> list[str]:
        return [c.name for c in self.numeric]

    @property
    def categorical_columns(self) -> list[str]:
        return [c.name for c in self.categorical]

    @property
    def num_numeric(self) -> int:
        """Width of the numeric block (the first ``num_numeric`` features)."""
        return len(self.numeric)

    @property
    def categorical_cardinalities(self) -> list[int]:
        """Per categorical column, the number of codes including the reserved unknown one
        (``embedding`` encoding; empty for the others, whose block is not integer codes)."""
        if self.encoding != "embedding":
            return []
        return [len(c.categories) + 1 for c in self.categorical]

    @property
    def encoded_feature_names(self) -> list[str]:
        """Names of the F features (``num__age``, ``cat__gender_Female``, ...)."""
        scheme = CATEGORICAL_ENCODINGS[self.encoding]
        names = [f"num__{c.name}" for c in self.numeric]
        for column in self.categorical:
            names += scheme.names(column)
        return names

    @property
    def num_features(self) -> int:
        """Width F of the features."""
        scheme = CATEGORICAL_ENCODINGS[self.encoding]
        return self.num_numeric + sum(scheme.width(len(c.categories)) for c in self.categorical)

    # -- transform -----------------------------------------------------------------------------
    def __call__(
        self,
        rows: pd.DataFrame | Mapping | Sequence[Mapping],
        row_name: RowNamer = row_position,
        log_changes: bool = True,
    ) -> Tensor:
        """Raw rows -> ``(N, F)`` float32 features.

        Args:
            rows: a DataFrame, a dict of columns or a list of row dicts, holding at least
                :attr:`feature_names` (raw strings are fine: they are tidied as at training).
            row_name: how error messages name a row (e.g. ``line 7 of new.csv``).
            log_changes: report imputed cells and unseen categories per column.

        Raises:
            ValueError: missing columns, text in a numeric column, infinite values.
        """
        frame = _as_frame(rows)
        _check_columns(frame, self.feature_names)
        blocks = [np.zeros((len(frame), 0))]
        for column in self.numeric:
            values = parse_numeric(frame[column.name], column.name, row_name)
            missing = np.isnan(values)
            if log_changes and missing.any():
                report(
                    f"numeric column {column.name!r}: {int(missing.sum())} of {len(values)} cells "
                    f"missing, imputed with the training median {column.fill:.6g}"
                )
            filled = column.normal_scores(np.where(missing, column.fill, values))
            blocks.append(((filled - column.mean) / column.scale)[:, None])
        scheme = CATEGORICAL_ENCODINGS[self.encoding]
        for column in self.categorical:
            labels = category_labels(tidy_series(frame[column.name]), column.name)
            missing = pd.isna(labels)
            if log_changes and missing.any() and column.fill is not None:
                report(
                    f"categorical column {column.name!r}: {int(missing.sum())} of {len(labels)} "
                    f"cells missing, imputed with the most frequent training category "
                    f"{column.fill!r}"
                )
            codes = _codes(labels, column)
            unseen = codes < 0
            if log_changes and unseen.any():
                examples = sorted({str(v) for v in labels[unseen & ~missing]})[:3]
                report(
                    f"categorical column {column.name!r}: {int(unseen.sum())} of {len(labels)} "
                    f"cells hold a category unseen in training {examples}, encoded as "
                    f"{scheme.unseen}"
                )
            blocks.append(scheme.encode(codes, column))
        array = np.concatenate(blocks, axis=1)
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON-able data (strings, numbers, lists, dicts)."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "encoding": self.encoding,
            "class_names": list(self.class_names),
            "numeric_transform": self.numeric_transform,
            "numeric": [vars(c).copy() for c in self.numeric],
            "categorical": [
                {**vars(c), "categories": list(c.categories)} for c in self.categorical
            ],
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], source: str = "state") -> TabularPreprocessor:
        """Rebuild from :meth:`to_dict`'s output, checking every field's type.

        Raises:
            ValueError: not a preprocessor state of a known version, or a malformed field.
        """
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            raise ValueError(f"{source} is not an ahop tabular preprocessor (no format {FORMAT!r})")
        if state.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{source} has preprocessor format version {state.get('version')!r}; this ahop "
                f"reads version {FORMAT_VERSION}"
            )
        check = _FieldChecker(source)
        numeric = [
            NumericColumn(
                name=check.text(c, "name", f"numeric[{i}]"),
                fill=check.number(c, "fill", f"numeric[{i}]"),
                mean=check.number(c, "mean", f"numeric[{i}]"),
                scale=check.number(c, "scale", f"numeric[{i}]", positive=True),
                quantiles=check.numbers(c, "quantiles", f"numeric[{i}]", optional=True),
            )
            for i, c in enumerate(check.records(state, "numeric"))
        ]
        categorical = []
        for i, c in enumerate(check.records(state, "categorical")):
            where = f"categorical[{i}]"
            column = CategoricalColumn(
                name=check.text(c, "name", where),
                categories=check.texts(c, "categories", where),
                fill=check.text(c, "fill", where, optional=True),
                mean=check.number(c, "mean", where, optional=True),
                scale=check.number(c, "scale", where, optional=True, positive=True),
            )
            categorical.append(column)
        encoding = check.text(state, "encoding", "")
        if encoding == "ordinal" and any(c.mean is None or c.scale is None for c in categorical):
            raise ValueError(f"{source}: ordinal columns need 'mean' and 'scale'")
        transform = state.get("numeric_transform", "standard")  # absent: written before it existed
        if not isinstance(transform, str):
            raise ValueError(f"{source}: 'numeric_transform' must be text, got {transform!r}")
        class_names = check.texts(state, "class_names", "")
        return cls(numeric, categorical, encoding, class_names, transform)

    def save(self, path: str | Path) -> None:
        """Write the fitted state as JSON (readable by :meth:`load`, or by hand)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> TabularPreprocessor:
        """Read a file written by :meth:`save`. Only JSON is parsed: nothing in it can run code.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a JSON preprocessor file (e.g. a pickle), or malformed.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no preprocessor file at {path}")
        try:
            state = json.loads(path.read_text(encoding="utf8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(
                f"{path} is not a JSON preprocessor file written by ahop (pickled preprocessors, "
                "e.g. preprocessor.joblib, are refused: loading one could run code); re-export "
                "the checkpoint with `ahop export`"
            ) from None
        return cls.from_dict(state, source=str(path))


# ----------------------------------------------------------------------------- helpers
def _check_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame of raw rows, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"raw rows lack the feature columns {missing}; expected {list(columns)}")


def _codes(labels: np.ndarray, column: CategoricalColumn) -> np.ndarray:
    """Category codes (int64); missing cells take ``fill``'s code, unseen ones -1."""
    filled = labels.copy()
    if column.fill is not None:
        filled[pd.isna(filled)] = column.fill
    return pd.Categorical(filled, categories=column.categories).codes.astype(np.int64)


class _FieldChecker:
    """Type checks of a loaded state's fields, with the field named in the error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, key: str, expected: str) -> ValueError:
        path = f"{where}.{key}" if where else key
        return ValueError(f"{self.source}: field {path!r} must be {expected}")

    def records(self, state: Mapping, key: str) -> list[Mapping]:
        value = state.get(key)
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise self.fail("", key, "a list of objects")
        return value

    def text(self, record: Mapping, key: str, where: str, optional: bool = False) -> str | None:
        value = record.get(key)
        if (value is None and optional) or isinstance(value, str):
            return value
        raise self.fail(where, key, "a string")

    def texts(self, record: Mapping, key: str, where: str) -> list[str]:
        value = record.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, key, "a list of strings")
        return list(value)

    def number(
        self, record: Mapping, key: str, where: str, optional: bool = False, positive: bool = False
    ) -> float | None:
        value = record.get(key)
        if value is None and optional:
            return None
        valid = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not valid or not math.isfinite(value) or (positive and value <= 0):
            raise self.fail(
                where, key, "a positive finite number" if positive else "a finite number"
            )
        return float(value)

    def numbers(
        self, record: Mapping, key: str, where: str, optional: bool = False
    ) -> list[float] | None:
        """A non-empty ascending list of finite numbers (fitted quantiles)."""
        value = record.get(key)
        if value is None and optional:
            return None
        valid = isinstance(value, list) and len(value) > 0
        valid = valid and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
        if not valid or any(b < a for a, b in itertools.pairwise(value)):
            raise self.fail(where, key, "an ascending list of finite numbers")
        return [float(v) for v in value]

"""Tabular classification data: load, type columns, split, fit preprocessing on train, tensorise.

Pipeline (all once, in :meth:`TabularDataModule.setup`)::

    source loader (tabular_sources)  ->  raw feature frame + raw target
    infer_column_kinds               ->  numeric / categorical columns (or a clear ValueError)
    encode_labels                    ->  int64 codes 0..C-1 + class names
    splits                           ->  train / val / test row indices (stratified, k-fold or UCI)
    build_preprocessor().fit(train)  ->  Pipeline(FrameCleaner, ColumnTransformer)
    transform(all rows)              ->  float32 (N, F) tensor, sliced per split

The fitted preprocessor starts from *raw* rows (its first step tidies strings and orders the
columns), so ``transform_raw`` / :class:`RawFeaturizer` score raw rows the way training saw
them, and a checkpoint (``state_dict``) or a joblib file carries everything needed.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.tabular_sources import SOURCES, RawTable, SourceSpec, load_table, tidy_series
from datamodules.tensor_data import IndexedTensorDataset, make_loader

SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- column typing
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


def _is_integral(series: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(series):
        return True
    if pd.api.types.is_float_dtype(series):
        present = series.dropna().to_numpy()
        return bool(np.all(np.mod(present, 1) == 0))
    return False


def infer_column_kinds(
    frame: pd.DataFrame,
    categorical_columns: Sequence[str] = (),
    declared_categorical: Sequence[str] = (),
    int_categorical_threshold: int | None = None,
    max_categories: int = 100,
) -> tuple[list[str], list[str]]:
    """Split the columns of a (tidied) raw frame into numeric and categorical ones.

    Categorical: explicit ``categorical_columns``, source-declared ones (OpenML nominals),
    text / category / boolean columns, and integer columns with at most
    ``int_categorical_threshold`` distinct values (when set). Everything else numeric.

    Returns:
        ``(numeric, categorical)`` column names, each in frame order.

    Raises:
        ValueError: a column that is entirely missing, of a type that cannot be a feature
            (dates, complex numbers, ...), or an automatically detected text column with more
            than ``max_categories`` distinct values (an identifier or free text).
    """
    explicit, declared = set(categorical_columns), set(declared_categorical)
    numeric, categorical = [], []
    for column in frame.columns:
        series = frame[column]
        if series.isna().all():
            raise ValueError(
                f"column {column!r} is entirely missing (NaN or blank); drop it with drop_columns"
            )
        if column in explicit or column in declared or pd.api.types.is_bool_dtype(series):
            categorical.append(column)
        elif pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_complex_dtype(series):
            low_cardinality = (
                int_categorical_threshold is not None
                and _is_integral(series)
                and series.nunique() <= int_categorical_threshold
            )
            (categorical if low_cardinality else numeric).append(column)
        elif (
            pd.api.types.is_string_dtype(series)
            or pd.api.types.is_object_dtype(series)
            or isinstance(series.dtype, pd.CategoricalDtype)
        ):
            distinct = pd.unique(category_labels(series, column)[series.notna().to_numpy()])
            if len(distinct) > max_categories:
                raise ValueError(
                    f"column {column!r} is non-numeric with {len(distinct)} distinct values, more "
                    f"than max_categories={max_categories}: it looks like an identifier or free "
                    "text; drop it (drop_columns), or list it in categorical_columns / raise "
                    "max_categories to one-hot encode it anyway"
                )
            categorical.append(column)
        else:
            raise ValueError(
                f"column {column!r} has dtype {series.dtype}, which cannot be used as a feature "
                "(allowed: numbers, text, booleans, categories); drop it (drop_columns) or "
                "convert it"
            )
    return numeric, categorical


# ----------------------------------------------------------------------------- preprocessing
class FrameCleaner(TransformerMixin, BaseEstimator):
    """First preprocessing step: raw rows -> the feature columns, tidied and typed.

    Selects ``numeric_columns + categorical_columns`` (other columns, e.g. an id or the target,
    are ignored), tidies strings (blank / ``?`` -> missing), parses numeric columns as float64
    and turns categorical cells into canonical strings (object dtype, NaN = missing).
    Stateless: ``fit`` only checks the columns are there.
    """

    def __init__(
        self, numeric_columns: Sequence[str] = (), categorical_columns: Sequence[str] = ()
    ) -> None:
        self.numeric_columns = numeric_columns
        self.categorical_columns = categorical_columns

    @property
    def columns(self) -> list[str]:
        return [*self.numeric_columns, *self.categorical_columns]

    def fit(self, frame: pd.DataFrame, y: object = None) -> FrameCleaner:
        self._check_columns(frame)
        return self

    def _check_columns(self, frame: pd.DataFrame) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"expected a pandas DataFrame of raw rows, got {type(frame).__name__}")
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(
                f"raw rows lack the feature columns {missing}; expected {self.columns}"
            )

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        self._check_columns(frame)
        out: dict[str, Any] = {}
        for column in self.numeric_columns:
            series = tidy_series(frame[column])
            parsed = pd.to_numeric(series, errors="coerce")
            bad = series[parsed.isna() & series.notna()]
            if len(bad):
                raise ValueError(
                    f"numeric column {column!r} has non-numeric values {list(bad.unique()[:3])}"
                )
            out[column] = parsed.astype(np.float64).to_numpy()
        for column in self.categorical_columns:
            out[column] = category_labels(tidy_series(frame[column]), column)
        return pd.DataFrame(out, index=frame.index, columns=self.columns)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.columns, dtype=object)


def _onehot() -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )


def _ordinal() -> Pipeline:
    # Codes are scaled like numerics so no column dominates a distance; unknown -> code -1.
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
            ("scale", StandardScaler()),
        ]
    )


CATEGORICAL_ENCODERS: dict[str, Callable[[], Pipeline]] = {"onehot": _onehot, "ordinal": _ordinal}
"""Categorical columns -> numbers: one-hot (unknown -> all zeros) or scaled ordinal codes."""


def build_preprocessor(
    numeric_columns: Sequence[str],
    categorical_columns: Sequence[str],
    categorical_encoding: str = "onehot",
) -> Pipeline:
    """Unfitted raw-rows -> features pipeline.

    Numerics: median imputation + standardisation. Categoricals: most-frequent imputation +
    ``CATEGORICAL_ENCODERS[categorical_encoding]``. Output: dense (N, F) float array.
    """
    if categorical_encoding not in CATEGORICAL_ENCODERS:
        raise ValueError(
            f"unknown categorical_encoding {categorical_encoding!r}; "
            f"allowed: {sorted(CATEGORICAL_ENCODERS)}"
        )
    parts = []
    if numeric_columns:
        numeric = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
            ]
        )
        parts.append(("num", numeric, list(numeric_columns)))
    if categorical_columns:
        encoder = CATEGORICAL_ENCODERS[categorical_encoding]()
        parts.append(("cat", encoder, list(categorical_columns)))
    if not parts:
        raise ValueError("no feature columns left (all dropped?)")
    return Pipeline(
        [
            ("clean", FrameCleaner(list(numeric_columns), list(categorical_columns))),
            ("encode", ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)),
        ]
    )


# ----------------------------------------------------------------------------- labels and splits
def _class_sort_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def encode_labels(
    target: pd.Series, target_name: str, class_order: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Raw target -> (int64 codes 0..C-1, class names).

    Classes follow ``class_order`` when given, else sorted (numerically where all are numbers).

    Raises:
        ValueError: missing target values, a continuous (non-integral float) or otherwise
            unencodable target, fewer than two classes, or labels outside ``class_order``.
    """
    target = tidy_series(target)
    missing = target.isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)[:5].tolist()
        raise ValueError(
            f"target {target_name!r} has {int(missing.sum())} missing values (rows {rows}...); "
            "drop or fill those rows"
        )
    if pd.api.types.is_float_dtype(target) and not _is_integral(target):
        raise ValueError(
            f"target {target_name!r} holds non-integral numbers (e.g. {target.iloc[0]!r}): it "
            "looks continuous, and this datamodule is for classification"
        )
    if not (
        pd.api.types.is_numeric_dtype(target)
        or pd.api.types.is_string_dtype(target)
        or pd.api.types.is_object_dtype(target)
        or isinstance(target.dtype, pd.CategoricalDtype)
    ) or pd.api.types.is_complex_dtype(target):
        raise ValueError(f"target {target_name!r} has dtype {target.dtype}, not class labels")
    labels = category_labels(target, f"target {target_name}")
    observed = list(pd.unique(labels))
    if len(observed) < 2:
        raise ValueError(
            f"target {target_name!r} has a single class {observed}; classification needs at "
            "least two"
        )
    classes = (
        list(class_order) if class_order is not None else sorted(observed, key=_class_sort_key)
    )
    unknown = sorted(set(observed) - set(classes))
    if unknown:
        raise ValueError(f"target {target_name!r} has labels {unknown} outside classes {classes}")
    codes = pd.Categorical(labels, categories=classes).codes.astype(np.int64)
    return codes, classes


def _stratified_cut(
    indices: np.ndarray, labels: np.ndarray, count: int, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, ``count`` held-out rows) with the class ratios kept."""
    if count == 0:
        return indices, indices[:0]
    try:
        rest, held = train_test_split(
            indices, test_size=count, stratify=labels, random_state=seed, shuffle=True
        )
    except ValueError as error:
        counts = {int(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True))}
        raise ValueError(
            f"cannot carve a stratified {what} split of {count} rows from {len(indices)} rows "
            f"with class counts {counts}: {error}"
        ) from None
    return np.sort(rest), np.sort(held)


def stratified_splits(
    labels: np.ndarray,
    val_size: float,
    test_size: float,
    seed: int,
    num_folds: int | None = None,
    fold: int = 0,
) -> dict[str, np.ndarray]:
    """Row indices of train / val / test, each keeping the class ratios of ``labels``.

    With ``num_folds`` the test rows are fold ``fold`` of a shuffled ``StratifiedKFold`` (so the
    test parts of folds 0..num_folds-1 partition the data) and ``test_size`` is unused. The
    validation rows (``round(val_size * N)``) are then carved from the remaining rows.
    """
    n = len(labels)
    everything = np.arange(n)
    if num_folds is not None:
        try:
            folds = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
            rest, test = list(folds.split(everything, labels))[fold]
        except ValueError as error:
            raise ValueError(f"cannot make {num_folds} stratified folds: {error}") from None
        rest, test = np.sort(rest), np.sort(test)
    else:
        rest, test = _stratified_cut(everything, labels, round(test_size * n), seed, "test")
    train, val = _stratified_cut(rest, labels[rest], round(val_size * n), seed, "validation")
    return {"train": train, "val": val, "test": test}


# ----------------------------------------------------------------------------- featurizer
def _as_frame(rows: pd.DataFrame | Mapping[str, Sequence] | Sequence[Mapping[str, object]]):
    if isinstance(rows, pd.DataFrame):
        return rows
    return pd.DataFrame(rows) if isinstance(rows, Mapping) else pd.DataFrame(list(rows))


@dataclass
class RawFeaturizer:
    """Standalone "raw rows -> model input" callable, shippable beside an exported model.

    Attributes:
        preprocessor: the fitted Pipeline(FrameCleaner, ColumnTransformer).
        feature_names: raw input columns it reads (other columns are ignored).
        class_names: names of the model's output classes, in output order.
    """

    preprocessor: Pipeline
    feature_names: list[str]
    class_names: list[str]

    @property
    def num_features(self) -> int:
        return len(self.encoded_feature_names)

    @property
    def encoded_feature_names(self) -> list[str]:
        return [str(n) for n in self.preprocessor.get_feature_names_out()]

    def __call__(self, rows: pd.DataFrame | Mapping | Sequence[Mapping]) -> Tensor:
        """Raw rows (DataFrame, dict of columns or list of row dicts) -> (N, F) float32."""
        array = self.preprocessor.transform(_as_frame(rows))
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def save(self, path: str | Path) -> None:
        """Write with joblib (unpickling needs this package importable)."""
        joblib.dump(self, path)

    @classmethod
    def load(cls, path: str | Path) -> RawFeaturizer:
        featurizer = joblib.load(path)
        if not isinstance(featurizer, cls):
            raise ValueError(f"{path} holds a {type(featurizer).__name__}, not a {cls.__name__}")
        return featurizer


# ----------------------------------------------------------------------------- datamodule
class TabularDataModule(L.LightningDataModule):
    """Tabular classification data as in-memory tensors.

    Batches are ``(x, y)`` with x float32 (B, F) and y int64 (B,). ``predict_dataloader`` serves
    the test split.

    Args:
        source: where the data comes from: ``sklearn`` | ``csv`` | ``openml`` | ``uci``.
        name: data set name: scikit-learn bundle (breast_cancer, wine, iris, digits), OpenML id
            or name, UCI folder name under ``data_dir``, or the CSV stem
            (``<data_dir>/<name>/<name>.csv``) when ``csv_path`` is unset.
        data_dir: local data root; the OpenML cache is ``<data_dir>/openml``.
        csv_path: CSV file for ``source: csv``.
        target: label column (``csv``; optional override of OpenML's default target).
        drop_columns: raw columns to ignore (identifiers, leaks).
        categorical_columns: columns to treat as categorical in addition to the detected ones
            (text, boolean, OpenML nominal).
        categorical_encoding: ``onehot`` | ``ordinal``.
        int_categorical_threshold: integer columns with at most this many distinct values are
            categorical too (``None``: never).
        max_categories: a detected text column with more distinct values is an error (likely an
            identifier); list it in ``categorical_columns`` to encode it anyway.
        val_size: validation rows as a fraction of all rows (0 = no validation split).
        test_size: test rows as a fraction of all rows (unused with ``num_folds`` / ``uci``).
        num_folds: if set, stratified k-fold: the test split is fold ``fold``.
        fold: which k-fold fold, or which of the predefined UCI splits (0..3).
        seed: seed of the splits and of the training-loader shuffle.
        batch_size: rows per batch.
        csv_sep: CSV field separator.
    """

    def __init__(
        self,
        source: str = "sklearn",
        name: str | int = "breast_cancer",
        data_dir: str = "data",
        csv_path: str | None = None,
        target: str | None = None,
        drop_columns: Sequence[str] = (),
        categorical_columns: Sequence[str] | None = None,
        categorical_encoding: str = "onehot",
        int_categorical_threshold: int | None = None,
        max_categories: int = 100,
        val_size: float = 0.2,
        test_size: float = 0.2,
        num_folds: int | None = None,
        fold: int = 0,
        seed: int = 0,
        batch_size: int = 128,
        csv_sep: str = ",",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if source not in SOURCES:
            raise ValueError(f"unknown tabular source {source!r}; allowed: {sorted(SOURCES)}")
        if categorical_encoding not in CATEGORICAL_ENCODERS:
            raise ValueError(
                f"unknown categorical_encoding {categorical_encoding!r}; "
                f"allowed: {sorted(CATEGORICAL_ENCODERS)}"
            )
        if not (0 <= val_size < 1 and 0 <= test_size < 1 and val_size + test_size < 1):
            raise ValueError(
                f"val_size={val_size} and test_size={test_size} must be in [0, 1) with a sum < 1"
            )
        if num_folds is not None and (num_folds < 2 or not 0 <= fold < num_folds):
            raise ValueError(f"num_folds={num_folds} needs >= 2 and fold in [0, {num_folds})")
        if fold < 0:
            raise ValueError(f"fold={fold} must be >= 0")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.spec = SourceSpec(
            name=name, data_dir=data_dir, csv_path=csv_path, target=target, csv_sep=csv_sep
        )
        self.preprocessor: Pipeline | None = None
        self.class_names: list[str] | None = None
        self.feature_names: list[str] | None = None
        self.raw_features: pd.DataFrame | None = None
        self.labels: Tensor | None = None
        self.split_indices: dict[str, np.ndarray] = {}
        self.datasets: dict[str, IndexedTensorDataset] = {}
        self.origin = ""

    # -- lifecycle -----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Fetch sources that download (OpenML) into the cache; a no-op for local ones."""
        if SOURCES[self.hparams.source].downloads:
            load_table(self.hparams.source, self.spec)

    def setup(self, stage: str | None = None) -> None:
        """Load, split, fit the preprocessor on the training rows and tensorise (once)."""
        if self.datasets:
            return
        hp = self.hparams
        table = load_table(hp.source, self.spec)
        features = self._select_features(table)
        restored = self.preprocessor is not None  # from a checkpoint: reuse, don't refit
        if restored:
            if not set(self.feature_names) <= set(features.columns):
                raise ValueError(
                    f"the loaded preprocessor reads columns {self.feature_names}, but the data "
                    f"has {list(features.columns)}"
                )
        else:
            numeric, categorical = infer_column_kinds(
                features,
                categorical_columns=hp.categorical_columns or (),
                declared_categorical=table.categorical,
                int_categorical_threshold=hp.int_categorical_threshold,
                max_categories=hp.max_categories,
            )
        class_order = self.class_names if restored else table.class_order
        codes, class_names = encode_labels(table.target, table.target_name, class_order)
        self.split_indices = self._splits(table, codes)
        if not restored:
            preprocessor = build_preprocessor(numeric, categorical, hp.categorical_encoding)
            preprocessor.fit(features.iloc[self.split_indices["train"]])
            self.preprocessor, self.feature_names = preprocessor, [*numeric, *categorical]
        self.class_names = class_names
        self.raw_features, self.origin = features, table.origin
        x = self.featurizer()(features)
        self.labels = torch.from_numpy(codes)
        for split, rows in self.split_indices.items():
            index = torch.from_numpy(rows)
            self.datasets[split] = IndexedTensorDataset(x[index], self.labels[index])

    def _select_features(self, table: RawTable) -> pd.DataFrame:
        features = table.features
        features.columns = [str(c) for c in features.columns]
        if features.columns.duplicated().any():
            raise ValueError(f"duplicate column names: {list(features.columns)}")
        available = [*features.columns, table.target_name]
        for option in ("drop_columns", "categorical_columns"):
            unknown = [c for c in self.hparams[option] or () if c not in features.columns]
            if table.target_name in (self.hparams[option] or ()):
                raise ValueError(f"{option} names the target {table.target_name!r}")
            if unknown:
                raise ValueError(f"{option} {unknown} not in the data; available: {available}")
        features = features.drop(columns=list(self.hparams.drop_columns))
        if features.shape[1] == 0:
            raise ValueError("no feature columns left after drop_columns")
        return features

    def _splits(self, table: RawTable, codes: np.ndarray) -> dict[str, np.ndarray]:
        hp = self.hparams
        if table.splits is None:
            return stratified_splits(
                codes, hp.val_size, hp.test_size, hp.seed, num_folds=hp.num_folds, fold=hp.fold
            )
        if hp.num_folds is not None:
            raise ValueError(
                f"{table.origin} comes with {len(table.splits)} predefined splits: leave "
                "num_folds unset and pick one with fold"
            )
        if hp.fold >= len(table.splits):
            raise ValueError(f"fold={hp.fold} out of range; allowed 0..{len(table.splits) - 1}")
        return table.splits[hp.fold]

    # -- sizes and names -----------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        # Lets LightningCLI link num_features / num_classes into a model before fit runs setup.
        if self.preprocessor is None:
            self.prepare_data()
            self.setup("fit")

    @property
    def num_features(self) -> int:
        """Width F of the encoded features (loads the data if nothing is fitted yet)."""
        self._ensure_ready()
        return self.featurizer().num_features

    @property
    def num_classes(self) -> int:
        """Number of classes C (loads the data if nothing is fitted yet)."""
        self._ensure_ready()
        return len(self.class_names)

    @property
    def encoded_feature_names(self) -> list[str]:
        """Names of the F encoded features (``num__age``, ``cat__gender_Female``, ...)."""
        self._ensure_ready()
        return self.featurizer().encoded_feature_names

    @property
    def split_sizes(self) -> dict[str, int]:
        """Rows per split, e.g. ``{"train": 341, "val": 114, "test": 114}`` (empty before setup)."""
        return {split: len(rows) for split, rows in self.split_indices.items()}

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """``(x (N, F) float32, y (N,) int64)`` of ``split`` (train | val | test)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
        if split not in self.datasets:
            raise RuntimeError("call setup() first")
        return self.datasets[split].tensors

    # -- loaders -------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        return make_loader(
            self.datasets["train"], self.hparams.batch_size, shuffle=True, seed=self.hparams.seed
        )

    def val_dataloader(self) -> DataLoader:
        return make_loader(self.datasets["val"], self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return make_loader(self.datasets["test"], self.hparams.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return make_loader(self.datasets["test"], self.hparams.batch_size)

    # -- raw rows and persistence --------------------------------------------------------------
    def featurizer(self) -> RawFeaturizer:
        """The fitted "raw rows -> (N, F) float32" callable (picklable)."""
        if self.preprocessor is None:
            raise RuntimeError("no fitted preprocessor: call setup() or load_state_dict() first")
        return RawFeaturizer(self.preprocessor, list(self.feature_names), list(self.class_names))

    def transform_raw(self, frame: pd.DataFrame) -> Tensor:
        """Raw rows with (at least) the ``feature_names`` columns -> (N, F) float32 features."""
        return self.featurizer()(frame)

    def save_preprocessor(self, path: str | Path) -> None:
        """Write the fitted :class:`RawFeaturizer` (preprocessor + names) with joblib."""
        self.featurizer().save(path)

    def load_preprocessor(self, path: str | Path) -> RawFeaturizer:
        """Adopt a featurizer written by :meth:`save_preprocessor`; returns it."""
        featurizer = RawFeaturizer.load(path)
        self._adopt(featurizer)
        return featurizer

    def _adopt(self, featurizer: RawFeaturizer) -> None:
        self.preprocessor = featurizer.preprocessor
        self.feature_names = list(featurizer.feature_names)
        self.class_names = list(featurizer.class_names)
        self.datasets, self.split_indices = {}, {}  # tensors of a different fit are stale

    def state_dict(self) -> dict[str, Any]:
        """Fitted preprocessor (pickled, as a uint8 tensor) and names, for checkpoints."""
        if self.preprocessor is None:
            return {}
        blob = pickle.dumps(self.featurizer(), protocol=pickle.HIGHEST_PROTOCOL)
        return {
            "featurizer": torch.frombuffer(bytearray(blob), dtype=torch.uint8),
            "class_names": list(self.class_names),
            "feature_names": list(self.feature_names),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (unpickles: load only checkpoints you trust)."""
        if not state_dict:
            return
        featurizer = pickle.loads(state_dict["featurizer"].numpy().tobytes())
        already_set_up = bool(self.datasets)
        self._adopt(featurizer)
        if already_set_up:
            self.setup()

    # -- summaries -----------------------------------------------------------------------------
    def describe(self) -> str:
        """Multi-line summary: source, columns, classes, split sizes."""
        hp = self.hparams
        lines = [f"TabularDataModule(source={hp.source!r}, name={hp.name!r})"]
        if self.origin:
            lines.append(f"  origin: {self.origin}")
        if self.preprocessor is None:
            return "\n".join([*lines, "  (not set up)"])
        cleaner = self.preprocessor.named_steps["clean"]
        lines.append(
            f"  features: {len(self.feature_names)} raw ({len(cleaner.numeric_columns)} numeric, "
            f"{len(cleaner.categorical_columns)} categorical, {hp.categorical_encoding}) -> "
            f"{self.num_features} encoded"
        )
        if self.labels is not None:
            counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
            classes = ", ".join(f"{n}: {c}" for n, c in zip(self.class_names, counts))
            lines.append(f"  classes: {len(self.class_names)} ({classes})")
        else:
            lines.append(f"  classes: {self.class_names}")
        if self.split_indices:
            mode = (
                f"predefined split {hp.fold}"
                if hp.source == "uci"
                else f"fold {hp.fold}/{hp.num_folds}"
                if hp.num_folds
                else f"stratified, seed {hp.seed}"
            )
            sizes = ", ".join(f"{k} {v}" for k, v in self.split_sizes.items())
            lines.append(f"  splits ({mode}): {sizes}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        hp = self.hparams
        sizes = f", sizes={self.split_sizes}" if self.split_indices else ""
        return f"TabularDataModule(source={hp.source!r}, name={hp.name!r}{sizes})"

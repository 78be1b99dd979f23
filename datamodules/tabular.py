"""Tabular classification data: load, type columns, split, fit preprocessing on train, tensorise.

Pipeline (all once, in :meth:`TabularDataModule.setup`)::

    source loader (tabular_sources)   ->  raw feature frame + raw target
    infer_column_kinds                ->  numeric / categorical columns (or a clear ValueError)
    encode_labels                     ->  int64 codes 0..C-1 + class names
    splits                            ->  train / val / test row indices (stratified, k-fold or UCI;
                                          validation optionally an inner k-fold fold)
    TabularPreprocessor.fit(train)    ->  fitted statistics and category lists (plain data)
    preprocessor(all rows)            ->  float32 (N, F) = [numeric block | categorical block]

The preprocessor starts from *raw* rows (it tidies strings and picks its columns), so
:meth:`TabularDataModule.featurizer` scores raw rows exactly the way training saw them. Its state
travels in checkpoints (``state_dict``) and exports (``preprocessor.json``) as numbers and strings
only: loading a checkpoint or an exported preprocessor never unpickles anything. Column-type
decisions, imputed cells and unseen categories are reported per column on the ``ahop.data``
logger (:mod:`datamodules.logs`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.cv import check_split
from datamodules.logs import report, warn_once
from datamodules.splits import check_split_options, kfold_split, validation_split
from datamodules.tabular_preprocessing import (
    CATEGORICAL_ENCODINGS,
    NUMERIC_TRANSFORMS,
    RowNamer,
    TabularPreprocessor,
    category_labels,
    name_cells,
    parse_numeric,
    row_position,
)
from datamodules.tabular_sources import (
    SOURCES,
    RawTable,
    SourceSpec,
    csv_row_namer,
    load_table,
    read_csv_file,
    tidy_series,
)
from datamodules.tensor_data import IndexedTensorDataset, make_loader

SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- column typing
def _is_integral(series: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(series):
        return True
    if pd.api.types.is_float_dtype(series):
        present = series.dropna().to_numpy()
        return bool(np.all(np.mod(present, 1) == 0))
    return False


def _mostly_numeric_cells(series: pd.Series) -> np.ndarray | None:
    """Positions of the non-numeric cells of a text column whose cells are mostly (>= half)
    numbers, i.e. a numeric column with a few typos; ``None`` for a genuine text column."""
    present = series.notna().to_numpy()
    parsed = pd.to_numeric(series.where(series.notna(), np.nan), errors="coerce").notna()
    numbers = int(parsed.sum())
    if numbers == 0 or numbers * 2 < int(present.sum()):
        return None
    return np.flatnonzero(present & ~parsed.to_numpy())


#: a column of consecutive integers starting here is a row number (pandas' index: 0, R's: 1)
ROW_NUMBER_STARTS = (0, 1)
#: row-number / identifier detection needs at least this many rows (small tables: real features
#: such as a year per row can be consecutive)
MIN_ROWS_FOR_ID_DETECTION = 20


def is_row_number(series: pd.Series) -> bool:
    """Whether a column holds the rows' positions in the file: ``start, start + 1, ...`` with
    ``start`` 0 or 1 and no gaps or blanks (an index pandas or R wrote, a ``RowNumber`` column).
    Such a column is no feature: it tells where a row sat in the file, not what it is."""
    if len(series) < MIN_ROWS_FOR_ID_DETECTION or not pd.api.types.is_numeric_dtype(series):
        return False
    if pd.api.types.is_bool_dtype(series) or series.isna().any() or not _is_integral(series):
        return False
    values = series.to_numpy()
    start = values[0]
    if start not in ROW_NUMBER_STARTS:
        return False
    return bool(np.array_equal(values, np.arange(start, start + len(values))))


def looks_like_identifier(series: pd.Series) -> bool:
    """Whether an integer column holds a distinct value in every row (a customer number, an
    id): possibly a feature, more often an identifier; reported, not dropped."""
    if len(series) < MIN_ROWS_FOR_ID_DETECTION or pd.api.types.is_bool_dtype(series):
        return False
    if not pd.api.types.is_numeric_dtype(series) or series.isna().any():
        return False
    return _is_integral(series) and series.nunique() == len(series)


def _summarise(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def infer_column_kinds(
    frame: pd.DataFrame,
    categorical_columns: Sequence[str] = (),
    declared_categorical: Sequence[str] = (),
    int_categorical_threshold: int | None = None,
    max_categories: int = 100,
    row_name: RowNamer = row_position,
) -> tuple[list[str], list[str]]:
    """Split the columns of a (tidied) raw frame into numeric and categorical ones.

    Categorical: explicit ``categorical_columns``, source-declared ones (OpenML nominals),
    text / category / boolean columns, and integer columns with at most
    ``int_categorical_threshold`` distinct values (when set). Everything else numeric. The
    decision and its reason per categorical column are logged (``ahop.data``).

    Returns:
        ``(numeric, categorical)`` column names, each in frame order.

    Raises:
        ValueError: a column that is entirely missing, of a type that cannot be a feature
            (dates, complex numbers, ...), a column of numbers with a few non-numeric cells
            (named with their rows), or an automatically detected text column with more than
            ``max_categories`` distinct values (an identifier or free text).
    """
    explicit, declared = set(categorical_columns), set(declared_categorical)
    numeric: list[str] = []
    categorical: dict[str, str] = {}  # column -> why it is categorical
    for column in frame.columns:
        series = frame[column]
        if series.isna().all():
            raise ValueError(
                f"column {column!r} is entirely missing (NaN or blank); drop it with drop_columns"
            )
        if column in explicit:
            categorical[column] = "listed in categorical_columns"
        elif column in declared:
            categorical[column] = "declared nominal by the source"
        elif pd.api.types.is_bool_dtype(series):
            categorical[column] = "boolean"
        elif pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_complex_dtype(series):
            distinct = series.nunique()
            if (
                int_categorical_threshold is not None
                and _is_integral(series)
                and distinct <= int_categorical_threshold
            ):
                categorical[column] = (
                    f"integer with {distinct} distinct values <= int_categorical_threshold="
                    f"{int_categorical_threshold}"
                )
            else:
                numeric.append(column)
        elif (
            pd.api.types.is_string_dtype(series)
            or pd.api.types.is_object_dtype(series)
            or isinstance(series.dtype, pd.CategoricalDtype)
        ):
            labels = category_labels(series, column)
            text = pd.Series(labels, index=series.index)
            typos = _mostly_numeric_cells(text)
            if typos is not None:
                raise ValueError(
                    f"column {column!r} holds numbers except for {len(typos)} cell(s): "
                    f"{name_cells(text, typos, row_name)}; fix them or blank them (a blank cell is "
                    "a missing value and gets imputed), or list the column in categorical_columns "
                    "to treat its values as categories"
                )
            distinct = pd.unique(labels[series.notna().to_numpy()])
            if len(distinct) > max_categories and _looks_like_dates(distinct):
                raise ValueError(
                    f"column {column!r} holds dates or times ({len(distinct)} distinct, e.g. "
                    f"{distinct[0]!r}), which are not features as text: convert it to numbers "
                    "(e.g. days since a reference date, month, weekday) in the CSV, or drop it "
                    "(drop_columns)"
                )
            if len(distinct) > max_categories:
                raise ValueError(
                    f"column {column!r} is non-numeric with {len(distinct)} distinct values, more "
                    f"than max_categories={max_categories}: it looks like an identifier or free "
                    "text; drop it (drop_columns), or list it in categorical_columns / raise "
                    "max_categories to encode it as categories anyway"
                )
            categorical[column] = f"text with {len(distinct)} distinct values"
        else:
            raise ValueError(
                f"column {column!r} has dtype {series.dtype}, which cannot be used as a feature "
                "(allowed: numbers, text, booleans, categories); drop it (drop_columns) or "
                "convert it"
            )
    reasons = "; ".join(f"{c!r} ({why})" for c, why in categorical.items())
    report(
        f"column kinds: {len(numeric)} numeric [{_summarise(numeric)}], {len(categorical)} "
        f"categorical [{reasons}]"
    )
    return numeric, list(categorical)


def _looks_like_dates(values: np.ndarray, sample: int = 200) -> bool:
    """Whether (a sample of) distinct text values nearly all parse as dates / times."""
    head = pd.Series(values[:sample]).astype(str)
    if head.str.fullmatch(r"[+-]?\d+").all():  # plain integers are ids, not dates
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format" for mixed layouts
        parsed = pd.to_datetime(head, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.95)


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
        rest, test = (part.numpy() for part in kfold_split(labels, num_folds, fold, seed))
    else:
        rest, test = _stratified_cut(everything, labels, round(test_size * n), seed, "test")
    train, val = _stratified_cut(rest, labels[rest], round(val_size * n), seed, "validation")
    return {"train": train, "val": val, "test": test}


# ----------------------------------------------------------------------------- datamodule
class TabularDataModule(L.LightningDataModule):
    """Tabular classification data as in-memory tensors.

    Batches are ``(x, y)`` with x float32 (B, F) and y int64 (B,); x is laid out as
    ``[num_numeric standardised numeric columns | categorical block]`` (see
    :mod:`datamodules.tabular_preprocessing`). ``predict_dataloader`` serves the test split, or the
    rows of ``predict_path`` (batches ``(x,)``) scored through the preprocessor fitted at training
    time (restored from the checkpoint: nothing is refitted on the new rows).

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
        categorical_encoding: ``onehot`` (one column per category) | ``ordinal`` (one scaled code
            column) | ``embedding`` (one integer-code column per categorical column, for
            embedding tables; see ``categorical_cardinalities``).
        int_categorical_threshold: integer columns with at most this many distinct values are
            categorical too (``None``: never).
        max_categories: a detected text column with more distinct values is an error (likely an
            identifier); list it in ``categorical_columns`` to encode it anyway.
        val_size: validation rows as a fraction of all rows (0 = no validation split; unused
            with ``inner_folds``).
        test_size: test rows as a fraction of all rows (unused with ``num_folds`` / ``uci``).
        num_folds: if set, stratified k-fold: the test split is fold ``fold``.
        fold: which k-fold fold, or which of the predefined UCI splits (0..3).
        inner_folds: if set, the validation rows are inner fold ``inner_fold`` of a stratified
            k-fold (seed ``seed``) over all non-test rows (a UCI split's training and
            validation rows together), and the other inner folds train: what ``ahop cv``'s
            ``inner_cv`` selection and ``ahop search`` set (:mod:`datamodules.splits`).
        inner_fold: which inner fold validates (0..inner_folds-1).
        seed: seed of the splits and of the training-loader shuffle.
        batch_size: rows per batch.
        max_batches_per_epoch: if set, a larger training set gets larger training batches: the
            smallest power of two times ``batch_size`` that keeps an epoch at most this many
            batches (:meth:`batch_size_for`), so that per-epoch costs that do not depend on the
            rows of a batch (the memory refresh, optimizer steps) stay bounded on large tables.
        csv_sep: CSV field separator (also of ``predict_path``).
        id_column: a column naming each row: never a feature, written as the ``id`` of
            predictions (default: the row's 0-based position in its file).
        drop_row_numbers: drop columns that number the rows (consecutive integers from 0 or 1,
            as a saved pandas or R index, ``Unnamed: 0``, or a ``RowNumber`` column): a row's
            position in the file is no feature (reported on the ``ahop.data`` logger). Integer
            columns with a distinct value in every row are reported as likely identifiers.
        numeric_transform: ``standard`` (mean and standard deviation of the training rows) or
            ``quantile_normal`` (the training quantiles map each numeric value to a normal score
            first, then standardised; skewed and heavy-tailed columns flattened).
        predict_path: a CSV of new rows for ``predict`` (the feature columns; the target column
            may be absent).
    """

    #: the validation share option (:class:`datamodules.cv.CrossValidatable`)
    validation_option = "val_size"

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
        inner_folds: int | None = None,
        inner_fold: int = 0,
        seed: int = 0,
        batch_size: int = 128,
        max_batches_per_epoch: int | None = None,
        csv_sep: str = ",",
        id_column: str | None = None,
        predict_path: str | None = None,
        drop_row_numbers: bool = True,
        numeric_transform: str = "standard",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if source not in SOURCES:
            raise ValueError(f"unknown tabular source {source!r}; allowed: {sorted(SOURCES)}")
        if numeric_transform not in NUMERIC_TRANSFORMS:
            raise ValueError(
                f"unknown numeric_transform {numeric_transform!r}; allowed: "
                f"{list(NUMERIC_TRANSFORMS)}"
            )
        if categorical_encoding not in CATEGORICAL_ENCODINGS:
            raise ValueError(
                f"unknown categorical_encoding {categorical_encoding!r}; "
                f"allowed: {sorted(CATEGORICAL_ENCODINGS)}"
            )
        if not (0 <= val_size < 1 and 0 <= test_size < 1 and val_size + test_size < 1):
            raise ValueError(
                f"val_size={val_size} and test_size={test_size} must be in [0, 1) with a sum < 1"
            )
        if num_folds is not None and (num_folds < 2 or not 0 <= fold < num_folds):
            raise ValueError(f"num_folds={num_folds} needs >= 2 and fold in [0, {num_folds})")
        if fold < 0:
            raise ValueError(f"fold={fold} must be >= 0")
        check_split_options(None, 0, inner_folds, inner_fold, val_size)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if max_batches_per_epoch is not None and max_batches_per_epoch < 1:
            raise ValueError(f"max_batches_per_epoch={max_batches_per_epoch} must be >= 1 or null")
        if max_categories < 1:
            raise ValueError(f"max_categories={max_categories} must be >= 1")
        self.spec = SourceSpec(
            name=name, data_dir=data_dir, csv_path=csv_path, target=target, csv_sep=csv_sep
        )
        self.preprocessor: TabularPreprocessor | None = None
        self.class_names: list[str] | None = None
        self.raw_features: pd.DataFrame | None = None
        self.row_ids: np.ndarray | None = None
        self.labels: Tensor | None = None
        self.split_indices: dict[str, np.ndarray] = {}
        self.datasets: dict[str, IndexedTensorDataset] = {}
        self.predict_rows: tuple[IndexedTensorDataset, np.ndarray] | None = None
        self.origin = ""

    # -- lifecycle -----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Fetch sources that download (OpenML) into the cache; a no-op for local ones."""
        if SOURCES[self.hparams.source].downloads:
            load_table(self.hparams.source, self.spec)

    def setup(self, stage: str | None = None) -> None:
        """Load, split, fit the preprocessor on the training rows and tensorise (once).

        ``setup("predict")`` with ``predict_path`` reads nothing: the new rows are scored in
        :meth:`predict_dataloader`, after Lightning restored the checkpoint's preprocessor.
        """
        if self.datasets or (stage == "predict" and self.hparams.predict_path is not None):
            return
        hp = self.hparams
        table = load_table(hp.source, self.spec)
        row_name = table.row_name
        features, ids = self._select_features(table)
        restored = self.preprocessor is not None  # from a checkpoint: reuse, don't refit
        if restored:
            missing = [c for c in self.preprocessor.feature_names if c not in features.columns]
            if missing:
                raise ValueError(
                    f"the checkpoint's preprocessor reads the columns {missing}, which "
                    f"{table.origin or 'the data'} lacks; it has {list(features.columns)}"
                )
        else:
            numeric, categorical = infer_column_kinds(
                features,
                categorical_columns=hp.categorical_columns or (),
                declared_categorical=table.categorical,
                int_categorical_threshold=hp.int_categorical_threshold,
                max_categories=hp.max_categories,
                row_name=row_name,
            )
        class_order = self.class_names if restored else table.class_order
        codes, class_names = encode_labels(table.target, table.target_name, class_order)
        self.split_indices = self._splits(table, codes)
        if not restored:
            for column in numeric:  # unreadable cells are named by their row in the whole table
                parse_numeric(features[column], column, row_name)
            self.preprocessor = TabularPreprocessor.fit(
                features.iloc[self.split_indices["train"]],
                numeric,
                categorical,
                hp.categorical_encoding,
                class_names,
                row_name,
                hp.numeric_transform,
            )
        self.class_names = class_names
        self.raw_features, self.row_ids, self.origin = features, ids, table.origin
        x = self.preprocessor(features, row_name=row_name)
        self.labels = torch.from_numpy(codes)
        for split, rows in self.split_indices.items():
            index = torch.from_numpy(rows)
            self.datasets[split] = IndexedTensorDataset(x[index], self.labels[index])

    def _select_features(self, table: RawTable) -> tuple[pd.DataFrame, np.ndarray]:
        """The feature columns (``drop_columns`` and ``id_column`` removed) and the row ids."""
        features = table.features
        features.columns = [str(c) for c in features.columns]
        if features.columns.duplicated().any():
            duplicated = sorted(set(features.columns[features.columns.duplicated()]))
            raise ValueError(f"duplicate column names {duplicated} in {table.origin or 'the data'}")
        available = [*features.columns, table.target_name]
        id_column = self.hparams.id_column
        for option in ("drop_columns", "categorical_columns", "id_column"):
            value = self.hparams[option]
            names = [value] if isinstance(value, str) else list(value or ())
            if table.target_name in names:
                raise ValueError(f"{option} names the target {table.target_name!r}")
            unknown = [c for c in names if c not in features.columns]
            if unknown:
                raise ValueError(f"{option} {unknown} not in the data; available: {available}")
        ids = (
            features[id_column].to_numpy()
            if id_column
            else np.arange(len(features), dtype=np.int64)
        )
        dropped = [*self.hparams.drop_columns, *([id_column] if id_column else [])]
        features = features.drop(columns=dropped)
        features = self._drop_row_numbers(features)
        if features.shape[1] == 0:
            raise ValueError("no feature columns left after drop_columns / id_column")
        return features, ids

    def _drop_row_numbers(self, features: pd.DataFrame) -> pd.DataFrame:
        """Without ``drop_row_numbers: false``, the columns that number the rows, dropped (and
        said so); likely identifier columns are named but kept."""
        explicit = set(self.hparams.categorical_columns or ())
        row_numbers = [
            c for c in features.columns if c not in explicit and is_row_number(features[c])
        ]
        if row_numbers and self.hparams.drop_row_numbers and len(row_numbers) < features.shape[1]:
            warn_once(
                f"dropped {_summarise(row_numbers)}: consecutive integers from "
                f"{features[row_numbers[0]].iloc[0]}, i.e. the rows' positions in the file (a saved "
                "index), not a feature; keep with drop_row_numbers: false"
            )
            features = features.drop(columns=row_numbers)
        identifiers = [
            c
            for c in features.columns
            if c not in explicit and c not in row_numbers and looks_like_identifier(features[c])
        ]
        if identifiers:
            warn_once(
                f"{_summarise(identifiers)}: a distinct integer in every row, likely an identifier; "
                "kept as a numeric feature: drop it with drop_columns if it names the rows"
            )
        return features

    def _splits(self, table: RawTable, codes: np.ndarray) -> dict[str, np.ndarray]:
        hp = self.hparams
        inner = hp.inner_folds is not None
        if table.splits is None:
            splits = stratified_splits(
                codes,
                0.0 if inner else hp.val_size,
                hp.test_size,
                hp.seed,
                num_folds=hp.num_folds,
                fold=hp.fold,
            )
        else:
            if hp.num_folds is not None:
                raise ValueError(
                    f"{table.origin} comes with {len(table.splits)} predefined splits: leave "
                    "num_folds unset and pick one with fold"
                )
            if hp.fold >= len(table.splits):
                raise ValueError(f"fold={hp.fold} out of range; allowed 0..{len(table.splits) - 1}")
            splits = table.splits[hp.fold]
        if not inner:
            return splits
        # inner k-fold over every non-test row: the test rows never reach training or validation
        rest = np.sort(np.concatenate([splits["train"], splits["val"]]))
        train, val = validation_split(codes[rest], hp.seed, 0.0, hp.inner_folds, hp.inner_fold)
        return {"train": rest[train.numpy()], "val": rest[val.numpy()], "test": splits["test"]}

    # -- sizes and names -----------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        # Lets a task read num_features / num_classes / ... before fit runs setup. Rows of
        # predict_path are scored by a checkpoint's preprocessor, restored after setup: its sizes
        # are the checkpoint's, so none are read from the training data here (AttributeError:
        # the command line then keeps the checkpoint's, see tasks/links.py)
        if self.preprocessor is None:
            if self.hparams.predict_path is not None:
                raise AttributeError(
                    "with predict_path, the data's sizes are those of the checkpoint's "
                    "preprocessor (--ckpt_path), known once it is restored"
                )
            self.prepare_data()
            self.setup("fit")

    @property
    def feature_names(self) -> list[str] | None:
        """The raw columns the features are made of, numeric first (``None`` before setup)."""
        return None if self.preprocessor is None else self.preprocessor.feature_names

    @property
    def num_features(self) -> int:
        """Width F of the encoded features (loads the data if nothing is fitted yet)."""
        self._ensure_ready()
        return self.preprocessor.num_features

    @property
    def num_numeric(self) -> int:
        """Width of the numeric block: features ``[:num_numeric]`` are standardised numerics."""
        self._ensure_ready()
        return self.preprocessor.num_numeric

    @property
    def categorical_cardinalities(self) -> list[int]:
        """Per categorical column its number of integer codes, the reserved unknown code included
        (``embedding`` encoding; empty for ``onehot`` / ``ordinal``)."""
        self._ensure_ready()
        return self.preprocessor.categorical_cardinalities

    @property
    def num_training_rows(self) -> int:
        """Rows of the training split (loads the data if nothing is fitted yet): the size the
        tabular task's ``feature_embedding: auto`` decides by."""
        self._ensure_ready()
        if "train" not in self.split_sizes:  # rows to predict only: the checkpoint's size holds
            raise AttributeError("no training split loaded: the training rows are the checkpoint's")
        return int(self.split_sizes["train"])

    @property
    def num_classes(self) -> int:
        """Number of classes C (loads the data if nothing is fitted yet)."""
        self._ensure_ready()
        return len(self.class_names)

    @property
    def encoded_feature_names(self) -> list[str]:
        """Names of the F encoded features (``num__age``, ``cat__gender_Female``, ...)."""
        self._ensure_ready()
        return self.preprocessor.encoded_feature_names

    @property
    def fold_count(self) -> int:
        """Outer folds of a cross-validation (:class:`datamodules.cv.CrossValidatable`):
        ``num_folds``, the predefined splits of a ``uci`` set, else 1 (one stratified random split
        per seed; repeats draw new ones)."""
        hp = self.hparams
        if hp.num_folds:
            return int(hp.num_folds)
        if hp.source == "uci":
            splits = load_table(hp.source, self.spec).splits
            return len(splits) if splits else 1
        return 1

    def split_ids(self, split: str) -> list[int]:
        """Row numbers (in the source table) of ``split`` (train | val | test) after ``setup``."""
        check_split(split)
        return [int(i) for i in self.split_indices.get(split, [])]

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
    def batch_size_for(self, rows: int) -> int:
        """Training batch size for ``rows`` training rows: ``batch_size``, doubled while an epoch
        would take more than ``max_batches_per_epoch`` batches (when that is set)."""
        size, limit = self.hparams.batch_size, self.hparams.max_batches_per_epoch
        while limit is not None and -(-rows // size) > limit:
            size *= 2
        return size

    def train_dataloader(self) -> DataLoader:
        return make_loader(
            self.datasets["train"],
            self.batch_size_for(len(self.datasets["train"])),
            shuffle=True,
            seed=self.hparams.seed,
        )

    def val_dataloader(self) -> DataLoader:
        return make_loader(self.datasets["val"], self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return make_loader(self.datasets["test"], self.hparams.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return make_loader(self._predict_rows()[0], self.hparams.batch_size)

    def prediction_ids(self) -> list:
        """The id of every row ``predict_dataloader`` serves, in order (``id_column`` values, else
        the rows' 0-based positions in their file)."""
        return self._predict_rows()[1].tolist()

    def _predict_rows(self) -> tuple[IndexedTensorDataset, np.ndarray]:
        if self.predict_rows is None:
            if self.hparams.predict_path is None:
                self.setup("test")
                rows = self.split_indices["test"]
                self.predict_rows = (self.datasets["test"], self.row_ids[rows])
            else:
                self.predict_rows = self._read_predict_path()
        return self.predict_rows

    def _read_predict_path(self) -> tuple[IndexedTensorDataset, np.ndarray]:
        hp = self.hparams
        if self.preprocessor is None:  # no checkpoint restored: fit on the training data first
            self.prepare_data()
            self.setup("fit")
        path = Path(hp.predict_path)
        frame = read_csv_file(path, hp.csv_sep, what="predict_path")
        frame.columns = [str(c).strip() for c in frame.columns]
        if hp.id_column is not None and hp.id_column not in frame.columns:
            raise ValueError(
                f"predict_path {path} has no id_column {hp.id_column!r}; columns: "
                f"{list(frame.columns)}"
            )
        ids = (
            frame[hp.id_column].to_numpy()
            if hp.id_column
            else np.arange(len(frame), dtype=np.int64)
        )
        x = self.preprocessor(frame, row_name=csv_row_namer(path))
        report(f"predict_path {path}: {len(frame)} rows scored")
        return IndexedTensorDataset(x), ids

    # -- raw rows and persistence --------------------------------------------------------------
    def featurizer(self) -> TabularPreprocessor:
        """The fitted "raw rows -> (N, F) float32" callable (its state is plain data)."""
        if self.preprocessor is None:
            raise RuntimeError("no fitted preprocessor: call setup() or load_state_dict() first")
        return self.preprocessor

    def transform_raw(self, frame: pd.DataFrame) -> Tensor:
        """Raw rows with (at least) the ``feature_names`` columns -> (N, F) float32 features."""
        return self.featurizer()(frame)

    def save_preprocessor(self, path: str | Path) -> None:
        """Write the fitted preprocessor as JSON (:meth:`TabularPreprocessor.save`)."""
        self.featurizer().save(path)

    def load_preprocessor(self, path: str | Path) -> TabularPreprocessor:
        """Adopt a preprocessor written by :meth:`save_preprocessor`; returns it."""
        preprocessor = TabularPreprocessor.load(path)
        self._adopt(preprocessor)
        return preprocessor

    def _adopt(self, preprocessor: TabularPreprocessor) -> None:
        if preprocessor.encoding != self.hparams.categorical_encoding:
            raise ValueError(
                f"the saved preprocessor uses categorical_encoding={preprocessor.encoding!r}, but "
                f"this datamodule is configured with {self.hparams.categorical_encoding!r}"
            )
        if preprocessor.numeric_transform != self.hparams.numeric_transform:
            warn_once(
                f"the saved preprocessor maps numeric columns with numeric_transform="
                f"{preprocessor.numeric_transform!r} (the model was trained so); the configured "
                f"{self.hparams.numeric_transform!r} is not used"
            )
        self.preprocessor = preprocessor
        self.class_names = list(preprocessor.class_names)
        # tensors of a different fit are stale
        self.datasets, self.split_indices, self.predict_rows = {}, {}, None

    def state_dict(self) -> dict[str, Any]:
        """The fitted preprocessing state as plain data (strings, numbers, lists), for
        checkpoints: loading it runs nothing but :meth:`TabularPreprocessor.from_dict`."""
        if self.preprocessor is None:
            return {}
        return {"preprocessor": self.preprocessor.to_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (validated field by field; never unpickled)."""
        if not state_dict:
            return
        if "preprocessor" not in state_dict:
            kind = "a pickled preprocessor" if "featurizer" in state_dict else "no preprocessor"
            raise ValueError(
                f"the checkpoint's TabularDataModule state holds {kind}, not the plain-data "
                "state this version writes; it is not loaded (unpickling could run code): retrain "
                "the model with this version"
            )
        preprocessor = TabularPreprocessor.from_dict(
            state_dict["preprocessor"], source="the checkpoint's TabularDataModule state"
        )
        already_set_up = bool(self.datasets)
        self._adopt(preprocessor)
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
        prep = self.preprocessor
        lines.append(
            f"  features: {len(prep.feature_names)} raw ({prep.num_numeric} numeric, "
            f"{len(prep.categorical)} categorical, {prep.encoding}) -> {prep.num_features} encoded"
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
            if hp.inner_folds is not None:
                mode += f"; validation = inner fold {hp.inner_fold}/{hp.inner_folds}"
            sizes = ", ".join(f"{k} {v}" for k, v in self.split_sizes.items())
            lines.append(f"  splits ({mode}): {sizes}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        hp = self.hparams
        sizes = f", sizes={self.split_sizes}" if self.split_indices else ""
        return f"TabularDataModule(source={hp.source!r}, name={hp.name!r}{sizes})"

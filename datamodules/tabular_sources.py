"""Where tabular data comes from: scikit-learn bundles, CSV files, an OpenML cache, UCI folders.

Every source turns a :class:`SourceSpec` into a :class:`RawTable` (raw feature frame + raw
target column, nothing fitted yet); :data:`SOURCES` maps the config name to the loader. The
column typing, preprocessing and splitting that follow live in :mod:`datamodules.tabular`.

Raw string cells are tidied the same way here and at inference (:func:`tidy_frame`): whitespace
and one pair of enclosing quotes are stripped, and blank cells or ``?`` count as missing, so
blastchar's ``' '`` TotalCharges become NaN and the column becomes numeric.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from datamodules.errors import DataUnavailableError

MISSING_TOKENS = frozenset({"", "?"})
"""String cells (after stripping whitespace and quotes) that mean "missing"."""

OPENML_PROBE_TIMEOUT_S = 3.0
"""How long to wait for the OpenML server before declaring it unreachable."""


@dataclass(frozen=True)
class SourceSpec:
    """What to load: the source-independent part of the datamodule's configuration.

    Args:
        name: data set name (scikit-learn bundle, OpenML id or name, UCI folder name, or the
            stem used to find ``<data_dir>/<name>/<name>.csv`` when ``csv_path`` is not given).
        data_dir: root folder for local data and the OpenML cache (``<data_dir>/openml``).
        csv_path: CSV file for the ``csv`` source.
        target: target column (required for ``csv``; optional override for ``openml``).
        csv_sep: field separator for the ``csv`` source.
    """

    name: str | int
    data_dir: str | Path = "data"
    csv_path: str | Path | None = None
    target: str | None = None
    csv_sep: str = ","


@dataclass
class RawTable:
    """A loaded data set before any fitting.

    Attributes:
        features: raw feature columns, one row per example (target excluded).
        target: raw target values aligned with ``features``.
        target_name: the target column's name (for messages).
        categorical: columns the source itself declares categorical (e.g. OpenML nominals).
        class_order: the source's own class order (e.g. scikit-learn ``target_names``);
            ``None`` = sort the observed labels.
        splits: predefined splits (UCI): one dict per split with ``train`` / ``val`` / ``test``
            row-index arrays; ``None`` = the datamodule splits by itself.
        origin: where it came from, for summaries.
        first_line: the file line of data row 0 (2 for a CSV with a header), so that errors
            can name the line of a bad cell; ``None``: name the row.
    """

    features: pd.DataFrame
    target: pd.Series
    target_name: str
    categorical: tuple[str, ...] = ()
    class_order: list[str] | None = None
    splits: list[dict[str, np.ndarray]] | None = None
    origin: str = ""
    first_line: int | None = None

    def row_name(self, label: object) -> str:
        """How an error message names row ``label`` (``line 7 of x.csv`` or ``row 5``)."""
        if self.first_line is None:
            return f"row {label}"
        return f"line {int(label) + self.first_line} of {self.origin}"


def csv_row_namer(path: str | Path) -> Callable[[object], str]:
    """Names data row ``label`` (0-based) of a CSV with a header by its file line."""
    return lambda label: f"line {int(label) + 2} of {path}"


def read_csv_file(path: str | Path, sep: str = ",", what: str = "csv_path") -> pd.DataFrame:
    """Read a CSV with a header row; every failure is a one-line error that names the file.

    Raises:
        FileNotFoundError: no such file (``what`` names the option to fix).
        ValueError: a folder, an empty file, a header without rows, undecodable or malformed
            content.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what}: no file {path}")
    if path.is_dir():
        raise ValueError(f"{what}: {path} is a folder, not a CSV file")
    try:
        frame = pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{what}: the CSV file {path} is empty (no header row)") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{what}: cannot parse the CSV file {path}: {error}") from None
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what}: {path} is not a UTF-8 text CSV file ({error.reason} at byte {error.start})"
        ) from None
    if frame.empty:
        raise ValueError(f"{what}: the CSV file {path} has a header but no data rows")
    return frame


# ----------------------------------------------------------------------------- raw cell tidying
_QUOTES = ("'", '"')


def _tidy_string(value: str) -> str | float:
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES:
        text = text[1:-1].strip()
    return np.nan if text in MISSING_TOKENS else text


def tidy_series(series: pd.Series) -> pd.Series:
    """Tidy the string cells of one column; numeric-looking text columns become float64.

    Non-string columns are returned unchanged. A text column whose every non-missing cell parses
    as a number is converted with :func:`pandas.to_numeric` (blanks -> NaN).
    """
    if not (pd.api.types.is_string_dtype(series) or pd.api.types.is_object_dtype(series)):
        return series
    values = series.astype(object)
    is_text = values.map(lambda v: isinstance(v, str))
    if not is_text.any():
        return series
    # Tidy each distinct string once (columns repeat few values), then map back.
    distinct = pd.unique(values[is_text])
    mapping = {v: _tidy_string(v) for v in distinct}
    tidied = values.where(~is_text, values[is_text].map(mapping))
    tidied = tidied.where(tidied.notna(), np.nan)
    numeric = pd.to_numeric(tidied, errors="coerce")
    if numeric.notna().sum() == tidied.notna().sum():
        return numeric.astype(np.float64)
    return tidied


def tidy_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`tidy_series` applied to every column of ``frame`` (a new frame)."""
    return pd.DataFrame({c: tidy_series(frame[c]) for c in frame.columns}, index=frame.index)


# ----------------------------------------------------------------------------- scikit-learn
def _sklearn_loaders() -> dict[str, Callable]:
    from sklearn import datasets

    return {
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
        "digits": datasets.load_digits,
    }


SKLEARN_DATASETS = ("breast_cancer", "wine", "iris", "digits")


def load_sklearn(spec: SourceSpec) -> RawTable:
    """One of the data sets scikit-learn ships (no download): ``SKLEARN_DATASETS``."""
    loaders = _sklearn_loaders()
    if spec.name not in loaders:
        raise ValueError(f"unknown scikit-learn data set {spec.name!r}; allowed: {sorted(loaders)}")
    if spec.target is not None:
        raise ValueError(
            f"the scikit-learn data set {spec.name!r} has a fixed target; leave `target` unset"
        )
    bunch = loaders[spec.name](as_frame=True)
    class_order = [str(n) for n in bunch.target_names]
    # Name the classes (e.g. malignant / benign) but keep scikit-learn's class order.
    target = pd.Series(
        np.asarray(class_order, dtype=object)[bunch.target.to_numpy()], name="target"
    )
    return RawTable(
        features=bunch.data.reset_index(drop=True),
        target=target,
        target_name="target",
        class_order=class_order,
        origin=f"sklearn.datasets.load_{spec.name}",
    )


# ----------------------------------------------------------------------------- CSV
def _csv_candidates(spec: SourceSpec) -> list[Path]:
    if spec.csv_path is not None:
        return [Path(spec.csv_path)]
    root = Path(spec.data_dir)
    return [root / str(spec.name) / f"{spec.name}.csv", root / f"{spec.name}.csv"]


def load_csv(spec: SourceSpec) -> RawTable:
    """A CSV file with a header row and a named target column.

    The file is ``csv_path``, or else ``<data_dir>/<name>/<name>.csv`` / ``<data_dir>/<name>.csv``.
    """
    candidates = _csv_candidates(spec)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        tried = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(f"CSV source: no file found (tried {tried}); set `csv_path`")
    if spec.target is None:
        raise ValueError(f"CSV source ({path}) needs `target`: the name of the label column")
    frame = read_csv_file(path, spec.csv_sep)
    frame.columns = [str(c).strip() for c in frame.columns]
    if spec.target not in frame.columns:
        hint = ""
        if len(frame.columns) == 1 and any(s in frame.columns[0] for s in ",;\t|"):
            hint = f" (one column only: is csv_sep={spec.csv_sep!r} the file's separator?)"
        raise ValueError(
            f"target column {spec.target!r} not found in {path}; "
            f"available columns: {list(frame.columns)}{hint}"
        )
    frame = tidy_frame(frame)
    target = frame.pop(spec.target)
    return RawTable(
        features=frame, target=target, target_name=spec.target, origin=str(path), first_line=2
    )


# ----------------------------------------------------------------------------- UCI folders
_UCI_FILES = ("{name}_py.dat", "labels_py.dat", "folds_py.dat", "validation_folds_py.dat")


def uci_names(data_dir: str | Path) -> list[str]:
    """Folder names under ``data_dir`` that hold a data set in the pre-split UCI format."""
    root = Path(data_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and (p / f"{p.name}_py.dat").is_file()
    )


def _read_matrix(path: Path, dtype: type) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", dtype=dtype, ndmin=2)


def load_uci(spec: SourceSpec) -> RawTable:
    """A pre-split UCI folder ``<data_dir>/<name>/`` (SNN / Hopfield / Hopular benchmark format).

    ``<name>_py.dat``: features (N, D); ``labels_py.dat``: class per row; ``folds_py.dat`` and
    ``validation_folds_py.dat``: (N, S) 0/1 masks, column k marking the test / validation rows of
    split k (the other rows train).
    """
    folder = Path(spec.data_dir) / str(spec.name)
    if not (folder / f"{spec.name}_py.dat").is_file():
        raise ValueError(
            f"unknown UCI data set {spec.name!r}: no {spec.name}_py.dat in {folder}; "
            f"allowed (found under {spec.data_dir}): {uci_names(spec.data_dir)}"
        )
    if spec.target is not None:
        raise ValueError("UCI folders have a fixed target (labels_py.dat); leave `target` unset")
    paths = [folder / f.format(name=spec.name) for f in _UCI_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"UCI data set {spec.name!r} in {folder} lacks {missing}")
    x = _read_matrix(paths[0], np.float64)
    labels = _read_matrix(paths[1], np.int64)
    test_masks = _read_matrix(paths[2], np.int64)
    val_masks = _read_matrix(paths[3], np.int64)
    n = len(x)
    if labels.shape != (n, 1):
        raise ValueError(f"{paths[1]}: expected {n} rows of one label, got shape {labels.shape}")
    for path, masks in ((paths[2], test_masks), (paths[3], val_masks)):
        if len(masks) != n or not np.isin(masks, (0, 1)).all():
            raise ValueError(f"{path}: expected {n} rows of 0/1 flags, got shape {masks.shape}")
    if test_masks.shape != val_masks.shape:
        raise ValueError(
            f"{folder}: folds {test_masks.shape} and validation folds "
            f"{val_masks.shape} differ in shape"
        )
    splits = []
    for k in range(test_masks.shape[1]):
        test, val = test_masks[:, k] == 1, val_masks[:, k] == 1
        if (test & val).any():
            raise ValueError(
                f"{folder}: split {k} marks {int((test & val).sum())} rows as both "
                "test and validation"
            )
        splits.append(
            {
                "train": np.flatnonzero(~(test | val)),
                "val": np.flatnonzero(val),
                "test": np.flatnonzero(test),
            }
        )
    features = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    return RawTable(
        features=features,
        target=pd.Series(labels[:, 0], name="label"),
        target_name="label",
        splits=splits,
        origin=str(folder),
    )


# ----------------------------------------------------------------------------- OpenML
@contextlib.contextmanager
def _openml_settings(root: Path) -> Iterator[object]:
    """Point openml at ``root`` with one connection attempt; restore its settings afterwards."""
    import openml

    previous_root = openml.config.get_config_as_dict()["cachedir"]
    previous_retries = openml.config.connection_n_retries
    openml.config.set_root_cache_directory(root)
    openml.config.connection_n_retries = 1
    try:
        yield openml
    finally:
        openml.config.set_root_cache_directory(previous_root)
        openml.config.connection_n_retries = previous_retries


def _openml_datasets_dir(openml: object) -> Path:
    return Path(openml.config.get_cache_directory()) / "datasets"


_TAG = re.compile(r"<oml:(id|name|version|status)>([^<]*)</oml:\1>")


def _cached_openml_id(datasets_dir: Path, name: str) -> int | None:
    """The id of the cached data set called ``name`` (lowest version, as openml picks), if any."""
    matches = []
    for description in datasets_dir.glob("*/description.xml"):
        tags = dict(_TAG.findall(description.read_text(encoding="utf8", errors="replace")))
        if tags.get("name", "").lower() == name.lower() and "id" in tags:
            matches.append((int(tags.get("version", 1)), int(tags["id"])))
    return min(matches)[1] if matches else None


def _cached_data_file(dataset_dir: Path, did: int) -> Path | None:
    for name in (f"dataset_{did}.pq", "dataset.pq", "dataset.arff"):
        if (dataset_dir / name).is_file():
            return dataset_dir / name
    return None


def _server_reachable(url: str, timeout: float = OPENML_PROBE_TIMEOUT_S) -> str | None:
    """``None`` if a TCP connection to the server of ``url`` opens within ``timeout``, else why not.

    Runs in a daemon thread because name resolution has no timeout of its own.
    """
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{type(error).__name__}: {error}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return outcome[0] if outcome else f"no answer within {timeout:.0f} s"


def _openml_unavailable(spec: SourceSpec, dataset_dir: Path, reason: str) -> DataUnavailableError:
    root = Path(spec.data_dir) / "openml"
    by_id = str(spec.name).strip().isdigit()
    ident = str(spec.name).strip() if by_id else repr(spec.name)
    where = dataset_dir if by_id else f"no description.xml named {ident} under {dataset_dir.parent}"
    return DataUnavailableError(
        f"OpenML data set {ident} is not in the local cache ({where}) and the OpenML "
        f"server cannot be reached ({reason}). To use it offline, either (a) copy an OpenML cache "
        f"there: description.xml plus dataset.arff (or dataset_<id>.pq) in "
        f"{dataset_dir.parent}/<id>/, made on a machine with internet by "
        f"`openml.config.set_root_cache_directory('{root}'); "
        f"openml.datasets.get_dataset({ident}, download_data=True)` (or set `data_dir` to a folder "
        f"whose openml/ subfolder holds such a cache), or (b) save the table as a CSV and use "
        f"`source: csv` with `csv_path` and `target`."
    )


def load_openml(spec: SourceSpec) -> RawTable:
    """An OpenML data set by id or name, cached under ``<data_dir>/openml`` (openml's layout).

    A complete cache (description.xml + data file) is read without touching the network. A data
    set missing from the cache is downloaded if the server answers within a few seconds; else a
    :class:`DataUnavailableError` says how to provide it.
    """
    root = Path(spec.data_dir) / "openml"
    with _openml_settings(root) as openml:
        datasets_dir = _openml_datasets_dir(openml)
        text = str(spec.name).strip()
        did: int | None = int(text) if text.isdigit() else _cached_openml_id(datasets_dir, text)
        dataset_dir = datasets_dir / str(did if did is not None else text)
        cached = (
            did is not None
            and (dataset_dir / "description.xml").is_file()
            and _cached_data_file(dataset_dir, did) is not None
        )
        if not cached:
            reason = _server_reachable(openml.config.server)
            if reason is not None:
                raise _openml_unavailable(spec, dataset_dir, reason)
        # Only go for parquet when it is cached: its download path has long retries of its own.
        skip_parquet = cached and not str(_cached_data_file(dataset_dir, did)).endswith(".pq")
        dataset = _get_openml_dataset(openml, did if did is not None else text, skip_parquet, spec)
        frame, _, categorical, names = dataset.get_data(dataset_format="dataframe")
    target = spec.target or dataset.default_target_attribute
    if not target:
        raise ValueError(
            f"OpenML data set {dataset.name!r} (id {dataset.dataset_id}) has no default target; "
            f"set `target` to one of {names}"
        )
    if target not in names:
        raise ValueError(
            f"target column {target!r} not found in OpenML data set {dataset.name!r}; "
            f"available columns: {names}"
        )
    frame = tidy_frame(frame.reset_index(drop=True))
    y = frame.pop(target)
    declared = tuple(n for n, c in zip(names, categorical) if c and n != target)
    return RawTable(
        features=frame,
        target=y,
        target_name=target,
        categorical=declared,
        origin=f"OpenML {dataset.name!r} (id {dataset.dataset_id}, version {dataset.version})",
    )


def _get_openml_dataset(openml: object, ident: int | str, skip_parquet: bool, spec: SourceSpec):
    import requests

    previous = os.environ.get("OPENML_SKIP_PARQUET")
    if skip_parquet:
        os.environ["OPENML_SKIP_PARQUET"] = "true"
    try:
        return openml.datasets.get_dataset(
            ident,
            download_data=True,
            download_qualities=False,
            download_features_meta_data=False,
        )
    except openml.exceptions.OpenMLServerException as error:
        raise ValueError(f"OpenML has no usable data set {spec.name!r}: {error}") from error
    except (requests.exceptions.RequestException, OSError) as error:
        datasets_dir = _openml_datasets_dir(openml)
        raise _openml_unavailable(spec, datasets_dir / str(ident), str(error)) from error
    finally:
        if skip_parquet:
            if previous is None:
                os.environ.pop("OPENML_SKIP_PARQUET", None)
            else:
                os.environ["OPENML_SKIP_PARQUET"] = previous


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class TabularSource:
    """A registered source: its loader and whether ``prepare_data`` should fetch it first."""

    load: Callable[[SourceSpec], RawTable]
    downloads: bool = False


SOURCES: dict[str, TabularSource] = {
    "sklearn": TabularSource(load_sklearn),
    "csv": TabularSource(load_csv),
    "openml": TabularSource(load_openml, downloads=True),
    "uci": TabularSource(load_uci),
}


def load_table(source: str, spec: SourceSpec) -> RawTable:
    """Load ``spec`` from the registered ``source`` (see :data:`SOURCES`)."""
    if source not in SOURCES:
        raise ValueError(f"unknown tabular source {source!r}; allowed: {sorted(SOURCES)}")
    return SOURCES[source].load(spec)

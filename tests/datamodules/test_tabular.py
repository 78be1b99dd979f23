"""TabularDataModule: sources, train-only preprocessing, splits, loaders, persistence, errors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules.tabular import (
    TabularDataModule,
    encode_labels,
    infer_column_kinds,
    stratified_splits,
)
from datamodules.tabular_preprocessing import TabularPreprocessor
from datamodules.tabular_sources import DataUnavailableError

SHARED_TABULAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "tabular"


# ----------------------------------------------------------------------------- fixture writers
def write_churn_csv(path: Path, rows: int = 60) -> Path:
    """A small churn-like CSV: id column, quoted categories, ' ' blanks, booleans, string target."""
    rng = np.random.default_rng(0)
    lines = ["customer_id,plan,has_phone,tenure,charges,region,churn"]
    for i in range(rows):
        churn = i % 3 == 0
        plan = ["basic", "premium", "'family plan'"][(i // 3 + churn) % 3]
        charges = "' '" if i % 10 == 4 else f"{50 + 30 * churn + rng.normal(0, 5):.2f}"
        tenure = int(rng.integers(1, 60))
        lines.append(
            f"C{1000 + i},{plan},{i % 2 == 0},{tenure},{charges},{1 + i % 3},"
            f"{'Yes' if churn else 'No'}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


OPENML_ID = 424242


def write_openml_cache(data_dir: Path, rows: int = 40) -> Path:
    """A tiny OpenML cache in openml-python's layout: <root>/org/openml/www/datasets/<id>/."""
    folder = data_dir / "openml" / "org" / "openml" / "www" / "datasets" / str(OPENML_ID)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    data = []
    for i in range(rows):
        label = "apple" if i % 2 == 0 else "pear"
        mean = 120 if label == "apple" else 180
        weight = "?" if i % 7 == 3 else f"{mean + rng.normal(0, 9):.2f}"
        colour = ["red", "green", "'dark blue'"][i % 3]
        data.append(f"{i},{weight},{colour},{rng.uniform():.3f},{label}")
    (folder / "dataset.arff").write_text(
        "@RELATION tiny-fruit\n\n"
        "@ATTRIBUTE id NUMERIC\n@ATTRIBUTE weight NUMERIC\n"
        "@ATTRIBUTE colour {red,green,'dark blue'}\n@ATTRIBUTE sweetness NUMERIC\n"
        "@ATTRIBUTE class {apple,pear}\n\n@DATA\n" + "\n".join(data) + "\n"
    )
    (folder / "description.xml").write_text(
        f"""<oml:data_set_description xmlns:oml="http://openml.org/openml">
  <oml:id>{OPENML_ID}</oml:id>
  <oml:name>tiny-fruit</oml:name>
  <oml:version>1</oml:version>
  <oml:description>Synthetic test fixture.</oml:description>
  <oml:format>ARFF</oml:format>
  <oml:upload_date>2024-01-01T00:00:00</oml:upload_date>
  <oml:licence>Public</oml:licence>
  <oml:url>http://127.0.0.1:9/data/v1/download/{OPENML_ID}/tiny-fruit.arff</oml:url>
  <oml:file_id>{OPENML_ID}</oml:file_id>
  <oml:default_target_attribute>class</oml:default_target_attribute>
  <oml:row_id_attribute>id</oml:row_id_attribute>
  <oml:visibility>public</oml:visibility>
  <oml:status>active</oml:status>
</oml:data_set_description>
"""
    )
    features = [("id", "numeric"), ("weight", "numeric"), ("colour", "nominal"),
                ("sweetness", "numeric"), ("class", "nominal")]  # fmt: skip
    entries = "".join(
        f"  <oml:feature><oml:index>{i}</oml:index><oml:name>{name}</oml:name>"
        f"<oml:data_type>{kind}</oml:data_type><oml:is_target>{name == 'class'}</oml:is_target>"
        f"<oml:is_ignore>false</oml:is_ignore><oml:is_row_identifier>{name == 'id'}"
        f"</oml:is_row_identifier><oml:number_of_missing_values>0"
        f"</oml:number_of_missing_values></oml:feature>\n"
        for i, (name, kind) in enumerate(features)
    )
    (folder / "features.xml").write_text(
        f'<oml:data_features xmlns:oml="http://openml.org/openml">\n{entries}</oml:data_features>\n'
    )
    return folder


def write_uci_folder(data_dir: Path, name: str = "toy", rows: int = 24) -> Path:
    """The pre-split UCI format: features, labels, 4 test-fold and 4 validation-fold columns."""
    folder = data_dir / name
    folder.mkdir(parents=True)
    i = np.arange(rows)
    labels = i % 3
    x = np.stack([labels + 0.1 * i, np.sin(i), np.cos(i)], axis=1)
    test = np.stack([(i % 4 == k) for k in range(4)], axis=1).astype(int)
    val = np.stack([((i + 1) % 4 == k) & (i % 2 == 0) for k in range(4)], axis=1).astype(int)
    np.savetxt(folder / f"{name}_py.dat", x, delimiter=",", fmt="%.6f")
    np.savetxt(folder / "labels_py.dat", labels, fmt="%d")
    np.savetxt(folder / "folds_py.dat", test, delimiter=",", fmt="%d")
    np.savetxt(folder / "validation_folds_py.dat", val, delimiter=",", fmt="%d")
    return folder


@pytest.fixture(scope="module")
def cancer() -> TabularDataModule:
    dm = TabularDataModule(source="sklearn", name="breast_cancer", batch_size=64, seed=3)
    dm.setup("fit")
    return dm


def csv_module(tmp_path: Path, **kwargs) -> TabularDataModule:
    path = write_churn_csv(tmp_path / "churn.csv")
    options = {"source": "csv", "csv_path": str(path), "target": "churn",
               "drop_columns": ["customer_id"], "batch_size": 16} | kwargs  # fmt: skip
    dm = TabularDataModule(**options)
    dm.setup("fit")
    return dm


def row_keys(x: torch.Tensor) -> torch.Tensor:
    """One (almost surely distinct) number per row, to compare row multisets."""
    weights = torch.linspace(1.0, 2.0, x.shape[1], dtype=torch.float64)
    return torch.sort(x.double() @ weights).values


# ----------------------------------------------------------------------------- sources
def test_sklearn_breast_cancer(cancer: TabularDataModule) -> None:
    assert cancer.num_features == 30 and cancer.num_classes == 2
    assert cancer.class_names == ["malignant", "benign"]  # scikit-learn's order kept
    assert cancer.feature_names[0] == "mean radius"
    assert sum(cancer.split_sizes.values()) == 569
    assert cancer.split_sizes == {"train": 341, "val": 114, "test": 114}
    summary = cancer.describe()
    assert "breast_cancer" in summary and "train 341" in summary and "malignant: 212" in summary


def test_csv_source_types_blanks_and_drops(tmp_path: Path) -> None:
    dm = csv_module(tmp_path)
    prep = dm.preprocessor
    assert "customer_id" not in dm.feature_names
    assert prep.numeric_columns == ["tenure", "charges", "region"]  # ' ' blanks -> numeric
    assert prep.categorical_columns == ["plan", "has_phone"]  # text and bool
    assert dm.class_names == ["No", "Yes"]
    names = dm.encoded_feature_names
    assert "cat__plan_family plan" in names  # quotes stripped
    assert dm.num_features == 3 + 3 + 2 == len(names)
    x, _ = dm.tensors("train")
    assert torch.isfinite(x).all()
    raw = dm.raw_features
    assert raw["charges"].isna().sum() == 6  # the blanks are missing values, then imputed


def test_csv_low_cardinality_ints_and_explicit_categoricals(tmp_path: Path) -> None:
    dm = csv_module(tmp_path, int_categorical_threshold=3, categorical_encoding="ordinal")
    assert dm.preprocessor.categorical_columns == ["plan", "has_phone", "region"]
    assert dm.num_features == 5  # ordinal: one column per categorical
    dm = csv_module(tmp_path / "b", categorical_columns=["tenure"])
    assert "tenure" in dm.preprocessor.categorical_columns


def test_openml_reads_a_real_cache_fixture(tmp_path: Path) -> None:
    write_openml_cache(tmp_path)
    for name in (OPENML_ID, str(OPENML_ID), "tiny-fruit"):
        dm = TabularDataModule(source="openml", name=name, data_dir=str(tmp_path), val_size=0.25,
                               test_size=0.25, batch_size=8)  # fmt: skip
        dm.prepare_data()
        dm.setup()
        assert dm.class_names == ["apple", "pear"]
        assert dm.feature_names == ["weight", "sweetness", "colour"]  # row id dropped
        assert dm.num_features == 2 + 3  # colour is an OpenML nominal -> one-hot
        assert "cat__colour_dark blue" in dm.encoded_feature_names
        assert dm.split_sizes == {"train": 20, "val": 10, "test": 10}
        assert "tiny-fruit" in dm.origin


def test_openml_offline_without_cache_fails_fast(tmp_path: Path, monkeypatch) -> None:
    import openml

    # A server address that refuses at once, so the test is offline on any machine.
    monkeypatch.setattr(openml.config, "server", "http://127.0.0.1:9/api/v1/xml")
    for name in (31, "credit-g"):
        dm = TabularDataModule(source="openml", name=name, data_dir=str(tmp_path))
        start = time.perf_counter()
        with pytest.raises(DataUnavailableError) as caught:
            dm.prepare_data()
        assert time.perf_counter() - start < 10
        message = str(caught.value)
        assert str(name) in message and str(tmp_path / "openml") in message
        assert "source: csv" in message and "description.xml" in message


def test_uci_folder_splits(tmp_path: Path) -> None:
    folder = write_uci_folder(tmp_path)
    test_masks = np.loadtxt(folder / "folds_py.dat", delimiter=",", dtype=int)
    val_masks = np.loadtxt(folder / "validation_folds_py.dat", delimiter=",", dtype=int)
    for fold in range(4):
        dm = TabularDataModule(source="uci", name="toy", data_dir=str(tmp_path), fold=fold)
        dm.setup()
        idx = dm.split_indices
        np.testing.assert_array_equal(idx["test"], np.flatnonzero(test_masks[:, fold]))
        np.testing.assert_array_equal(idx["val"], np.flatnonzero(val_masks[:, fold]))
        rest = np.flatnonzero((test_masks[:, fold] | val_masks[:, fold]) == 0)
        np.testing.assert_array_equal(idx["train"], rest)
        assert dm.num_features == 3 and dm.class_names == ["0", "1", "2"]
    with pytest.raises(ValueError, match=r"fold=4 out of range; allowed 0..3"):
        TabularDataModule(source="uci", name="toy", data_dir=str(tmp_path), fold=4).setup()
    with pytest.raises(ValueError, match=r"unknown UCI data set 'nope'.*'toy'"):
        TabularDataModule(source="uci", name="nope", data_dir=str(tmp_path)).setup()


@pytest.mark.skipif(not SHARED_TABULAR.is_dir(), reason="shared tabular data not present")
def test_uci_real_breast_cancer() -> None:
    dm = TabularDataModule(source="uci", name="breast_cancer", data_dir=str(SHARED_TABULAR))
    dm.setup()
    assert dm.split_sizes == {"train": 181, "val": 34, "test": 71}
    assert dm.num_features == 9 and dm.num_classes == 2


# ------------------------------------------------------------------------- preprocessing, splits
def test_preprocessing_is_fitted_on_train_only(cancer: TabularDataModule) -> None:
    raw = cancer.raw_features.to_numpy()
    train = raw[cancer.split_indices["train"]]
    means = np.array([column.mean for column in cancer.preprocessor.numeric])
    np.testing.assert_allclose(means, train.mean(axis=0), rtol=1e-10)
    assert not np.allclose(means, raw.mean(axis=0), rtol=1e-4)
    x_train, _ = cancer.tensors("train")
    torch.testing.assert_close(x_train.mean(0), torch.zeros(30), atol=1e-5, rtol=0)
    assert cancer.tensors("test")[0].mean(0).abs().max() > 1e-3  # test rows were not fitted


def test_stratification_keeps_class_ratios(cancer: TabularDataModule) -> None:
    overall = torch.bincount(cancer.labels).double() / len(cancer.labels)
    for split in ("train", "val", "test"):
        y = cancer.tensors(split)[1]
        ratio = torch.bincount(y, minlength=2).double() / len(y)
        assert (ratio - overall).abs().max() < 1.0 / len(y) + 1e-9, split


def test_kfold_folds_partition_the_data() -> None:
    labels = np.repeat([0, 1, 2], [30, 20, 10])
    tests = []
    for fold in range(5):
        parts = stratified_splits(labels, val_size=0.1, test_size=0.0, seed=7, num_folds=5,
                                  fold=fold)  # fmt: skip
        joined = np.concatenate([parts["train"], parts["val"], parts["test"]])
        np.testing.assert_array_equal(np.sort(joined), np.arange(60))  # disjoint, complete
        assert len(parts["val"]) == 6
        assert np.bincount(labels[parts["test"]]).tolist() == [6, 4, 2]
        tests.append(parts["test"])
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(60))


def test_kfold_through_the_datamodule() -> None:
    seen = []
    for fold in range(3):
        dm = TabularDataModule(name="iris", num_folds=3, fold=fold, val_size=0.1)
        dm.setup()
        assert dm.split_sizes == {"train": 85, "val": 15, "test": 50}
        seen.append(dm.split_indices["test"])
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(150))


def test_loaders_yield_typed_batches_covering_each_row_once(cancer: TabularDataModule) -> None:
    loaders = {
        "train": cancer.train_dataloader(),
        "val": cancer.val_dataloader(),
        "test": cancer.test_dataloader(),
        "predict": cancer.predict_dataloader(),
    }
    for split, loader in loaders.items():
        xs, ys = [], []
        for x, y in loader:
            assert x.dtype == torch.float32 and y.dtype == torch.long
            assert x.ndim == 2 and x.shape[1] == 30 and y.shape == (x.shape[0],)
            assert x.shape[0] <= 64
            xs.append(x)
            ys.append(y)
        x_all, y_all = cancer.tensors("test" if split == "predict" else split)
        torch.testing.assert_close(row_keys(torch.cat(xs)), row_keys(x_all))
        assert torch.bincount(torch.cat(ys)).tolist() == torch.bincount(y_all).tolist()


# ------------------------------------------------------------------------- raw rows, persistence
def test_transform_raw_matches_setup_and_handles_raw_strings(tmp_path: Path) -> None:
    dm = csv_module(tmp_path)
    raw = pd.read_csv(tmp_path / "churn.csv")  # includes the id and target columns
    x_all = dm.transform_raw(raw)
    assert x_all.dtype == torch.float32 and x_all.shape == (60, dm.num_features)
    test_idx = torch.from_numpy(dm.split_indices["test"])
    torch.testing.assert_close(x_all[test_idx], dm.tensors("test")[0])
    new_rows = [
        {"plan": "'family plan'", "has_phone": "True", "tenure": "12", "charges": " ", "region": 2},
        {"plan": "unseen", "has_phone": False, "tenure": 3, "charges": 61.5, "region": "1"},
    ]
    x_new = dm.featurizer()(new_rows)
    assert x_new.shape == (2, dm.num_features) and torch.isfinite(x_new).all()
    plan = [i for i, n in enumerate(dm.encoded_feature_names) if n.startswith("cat__plan")]
    assert x_new[1, plan].abs().sum() == 0  # unseen category -> all-zero one-hot
    with pytest.raises(ValueError, match=r"numeric column 'tenure' has 1 non-numeric cell.*'long'"):
        dm.transform_raw(pd.DataFrame([{**new_rows[0], "tenure": "long"}]))
    with pytest.raises(ValueError, match=r"lack the feature columns \['charges'\]"):
        dm.transform_raw(raw.drop(columns=["charges"]))


def test_state_dict_round_trip_scores_raw_rows_without_refitting(tmp_path: Path) -> None:
    dm = csv_module(tmp_path)
    raw = pd.read_csv(tmp_path / "churn.csv")
    torch.save(dm.state_dict(), tmp_path / "dm.ckpt")
    state = torch.load(tmp_path / "dm.ckpt", weights_only=True)  # checkpoint-safe types only
    restored = TabularDataModule(source="csv", csv_path="/nonexistent.csv", target="churn")
    restored.load_state_dict(state)
    assert restored.raw_features is None  # nothing was loaded or refitted
    assert restored.num_features == dm.num_features and restored.class_names == ["No", "Yes"]
    torch.testing.assert_close(restored.transform_raw(raw), dm.transform_raw(raw))

    dm.save_preprocessor(tmp_path / "prep.json")
    featurizer = TabularPreprocessor.load(tmp_path / "prep.json")
    torch.testing.assert_close(featurizer(raw), dm.transform_raw(raw))
    other = TabularDataModule()
    other.load_preprocessor(tmp_path / "prep.json")
    assert other.feature_names == dm.feature_names and other.num_classes == 2


def test_state_loaded_before_setup_is_reused(cancer: TabularDataModule) -> None:
    fresh = TabularDataModule(source="sklearn", name="breast_cancer", seed=3)
    fresh.load_state_dict(cancer.state_dict())
    fresh.setup()
    assert fresh.preprocessor is not cancer.preprocessor
    torch.testing.assert_close(fresh.tensors("test")[0], cancer.tensors("test")[0])
    assert TabularDataModule().state_dict() == {}


# ----------------------------------------------------------------------------- bad data
def write_frame(tmp_path: Path, frame: pd.DataFrame) -> str:
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return str(path)


def make_csv_module(path: str, target: str = "y", **kwargs) -> TabularDataModule:
    return TabularDataModule(source="csv", csv_path=path, target=target, **kwargs)


def test_missing_target_column_lists_available(tmp_path: Path) -> None:
    path = write_frame(tmp_path, pd.DataFrame({"a": [1, 2], "b": [3, 4]}))
    with pytest.raises(ValueError, match=r"target column 'y' not found.*\['a', 'b'\]"):
        make_csv_module(path).setup()


def test_single_class_target(tmp_path: Path) -> None:
    path = write_frame(tmp_path, pd.DataFrame({"a": range(6), "y": ["x"] * 6}))
    with pytest.raises(ValueError, match=r"single class \['x'\]"):
        make_csv_module(path).setup()


def test_all_missing_column_is_named(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": range(6), "empty": [" "] * 6, "y": [0, 1] * 3})
    with pytest.raises(ValueError, match="column 'empty' is entirely missing"):
        make_csv_module(write_frame(tmp_path, frame)).setup()


def test_identifier_like_text_column_is_rejected(tmp_path: Path) -> None:
    frame = pd.DataFrame({"name": [f"n{i}" for i in range(20)], "y": [0, 1] * 10})
    with pytest.raises(ValueError, match="column 'name' is non-numeric with 20 distinct values"):
        make_csv_module(write_frame(tmp_path, frame), max_categories=10).setup()


def test_date_text_column_gets_its_own_message(tmp_path: Path) -> None:
    days = pd.date_range("2024-01-01", periods=20).strftime("%d.%m.%Y %H:%M").tolist()
    frame = pd.DataFrame({"when": days, "y": [0, 1] * 10})
    with pytest.raises(ValueError, match=r"column 'when' holds dates or times .* convert it"):
        make_csv_module(write_frame(tmp_path, frame), max_categories=10).setup()
    for ids in ([f"cust_{i:05d}" for i in range(20)], [f"{1000 + i}x" for i in range(20)]):
        frame = pd.DataFrame({"name": ids, "y": [0, 1] * 10})
        with pytest.raises(ValueError, match="is non-numeric with 20 distinct values"):
            make_csv_module(write_frame(tmp_path, frame), max_categories=10).setup()


def test_unusable_feature_types_are_rejected() -> None:
    dates = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=4)})
    with pytest.raises(ValueError, match="column 'when' has dtype datetime64"):
        infer_column_kinds(dates)
    lists = pd.DataFrame({"bag": [[1], [2], [3], [4]]})
    with pytest.raises(ValueError, match="column 'bag' holds values of type list"):
        infer_column_kinds(lists)


def test_unencodable_targets() -> None:
    with pytest.raises(ValueError, match="looks continuous"):
        encode_labels(pd.Series([0.5, 1.25, 2.0]), "y")
    with pytest.raises(ValueError, match="holds values of type dict"):
        encode_labels(pd.Series([{"a": 1}, {"b": 2}]), "y")
    with pytest.raises(ValueError, match="2 missing values"):
        encode_labels(pd.Series(["a", " ", "b", None]), "y")
    codes, names = encode_labels(pd.Series([10, 2, 2.0, 10]), "y")  # numeric order, 2.0 == 2
    assert names == ["2", "10"] and codes.tolist() == [1, 0, 0, 1]


def test_bad_configuration_names_the_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown tabular source 'parquet'.*'csv'.*'uci'"):
        TabularDataModule(source="parquet")
    with pytest.raises(ValueError, match=r"unknown scikit-learn data set 'mnist'.*'wine'"):
        TabularDataModule(name="mnist").setup()
    with pytest.raises(
        ValueError, match=r"categorical_encoding 'hash'.*\['embedding', 'onehot', 'ordinal'\]"
    ):
        TabularDataModule(categorical_encoding="hash")
    with pytest.raises(ValueError, match="fold in"):
        TabularDataModule(num_folds=5, fold=5)
    path = write_frame(tmp_path, pd.DataFrame({"a": range(6), "y": [0, 1] * 3}))
    with pytest.raises(ValueError, match=r"drop_columns \['id'\] not in the data"):
        make_csv_module(path, drop_columns=["id"]).setup()
    with pytest.raises(ValueError, match="needs `target`"):
        TabularDataModule(source="csv", csv_path=path).setup()
    with pytest.raises(FileNotFoundError, match="set `csv_path`"):
        TabularDataModule(source="csv", name="nothing", data_dir=str(tmp_path)).setup()


# ------------------------------------------------------------------------- inner folds
def test_inner_folds_partition_the_non_test_rows(tmp_path: Path) -> None:
    """Inner fold k validates, the other inner folds train; across k the validation rows cover
    every non-test row once, and no test row (checked by row id) is ever trained or validated on."""
    write_uci_folder(tmp_path, rows=48)
    cases = [
        ({"name": "iris", "num_folds": 3, "fold": 1}, 150),
        ({"source": "uci", "name": "toy", "data_dir": str(tmp_path), "fold": 2}, 48),
    ]
    for options, rows in cases:
        plain = TabularDataModule(**options)
        plain.setup()
        test = set(plain.split_indices["test"].tolist())
        validated = []
        for inner_fold in range(3):
            dm = TabularDataModule(**options, inner_folds=3, inner_fold=inner_fold)
            dm.setup()
            ids = {split: dm.split_indices[split].tolist() for split in ("train", "val", "test")}
            assert set(ids["test"]) == test  # the outer split is unchanged
            assert not test & set(ids["train"]) and not test & set(ids["val"])
            assert not set(ids["train"]) & set(ids["val"])
            assert len(ids["train"]) + len(ids["val"]) + len(test) == rows
            assert len(dm.tensors("val")[0]) == len(ids["val"])
            assert f"inner fold {inner_fold}/3" in dm.describe()
            validated += ids["val"]
        assert sorted(validated) == sorted(set(range(rows)) - test)  # each non-test row once


def test_inner_fold_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"inner_folds must be >= 2"):
        TabularDataModule(inner_folds=1)
    with pytest.raises(ValueError, match=r"inner_fold must be in \[0, 3\), got 3"):
        TabularDataModule(inner_folds=3, inner_fold=3)


def test_max_batches_per_epoch_doubles_the_training_batch_of_large_tables() -> None:
    from datamodules.tabular import TabularDataModule

    plain = TabularDataModule(name="breast_cancer", batch_size=64)
    assert plain.batch_size_for(100_000) == 64  # unset: the batch size as given
    capped = TabularDataModule(name="breast_cancer", batch_size=64, max_batches_per_epoch=64)
    assert capped.batch_size_for(4_000) == 64  # 63 batches: unchanged
    assert capped.batch_size_for(4_097) == 128
    assert capped.batch_size_for(65_000) == 1024  # 64 batches of 1,024
    capped.setup("fit")
    loader = capped.train_dataloader()
    assert loader.batch_size == 64  # 341 training rows
    with pytest.raises(ValueError, match="max_batches_per_epoch=0 must be >= 1"):
        TabularDataModule(max_batches_per_epoch=0)


def _ahop_data_messages(caplog) -> str:
    return " ".join(r.getMessage() for r in caplog.records if r.name == "ahop.data")


def test_a_saved_row_index_is_dropped_and_said_so(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=40), "y": [0, 1] * 20})
    path = tmp_path / "indexed.csv"
    frame.to_csv(path)  # pandas writes its index as the first, unnamed column
    with caplog.at_level("INFO", logger="ahop.data"):
        dm = make_csv_module(str(path))
        dm.setup()
    assert dm.preprocessor.numeric_columns == ["x"]
    assert "'Unnamed: 0'" in _ahop_data_messages(caplog)
    assert "not a feature" in _ahop_data_messages(caplog)
    kept = make_csv_module(str(path), drop_row_numbers=False)
    kept.setup()
    assert kept.preprocessor.numeric_columns == ["Unnamed: 0", "x"]


def test_row_numbers_from_one_are_dropped_identifiers_only_reported(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(4)
    shuffled_ids = rng.permutation(np.arange(15_000_000, 15_000_040))
    frame = pd.DataFrame(
        {
            "RowNumberAlt": np.arange(1, 41),
            "CustomerNo": shuffled_ids,
            "age": rng.integers(18, 30, size=40),  # repeats: a feature
            "y": [0, 1] * 20,
        }
    )
    with caplog.at_level("INFO", logger="ahop.data"):
        dm = make_csv_module(write_frame(tmp_path, frame))
        dm.setup()
    assert dm.preprocessor.numeric_columns == ["CustomerNo", "age"]
    messages = _ahop_data_messages(caplog)
    assert "dropped 'RowNumberAlt'" in messages
    assert "'CustomerNo': a distinct integer in every row" in messages


def test_short_or_gapped_sequences_are_features() -> None:
    from datamodules.tabular import is_row_number, looks_like_identifier

    assert is_row_number(pd.Series(np.arange(30)))
    assert not is_row_number(pd.Series(np.arange(10)))  # too few rows to tell
    assert not is_row_number(pd.Series(np.arange(2, 32)))  # starts elsewhere: a year, a size
    assert not is_row_number(pd.Series(np.r_[np.arange(29), 30]))  # a gap
    assert not is_row_number(pd.Series(np.arange(30.0) + 0.5))
    assert not is_row_number(pd.Series(np.r_[np.arange(29.0), np.nan]))
    assert looks_like_identifier(pd.Series(np.arange(30)[::-1] * 7))
    assert not looks_like_identifier(pd.Series(np.arange(30) % 5))
    assert not looks_like_identifier(pd.Series(np.linspace(0, 1, 30)))

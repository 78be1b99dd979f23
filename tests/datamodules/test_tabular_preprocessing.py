"""The fitted tabular preprocessing: layout [numeric | categorical], the three encodings, exact
replay of training from the saved plain-data state (checkpoint and JSON), logged data changes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules.tabular import TabularDataModule
from datamodules.tabular_preprocessing import TabularPreprocessor
from tests.datamodules.test_tabular import write_churn_csv


def churn_module(tmp_path: Path, **kwargs) -> TabularDataModule:
    path = write_churn_csv(tmp_path / "churn.csv")
    options = {"source": "csv", "csv_path": str(path), "target": "churn",
               "drop_columns": ["customer_id"], "batch_size": 16} | kwargs  # fmt: skip
    dm = TabularDataModule(**options)
    dm.setup("fit")
    return dm


def all_rows(dm: TabularDataModule) -> torch.Tensor:
    """The training-time features of every row, in file order."""
    x = torch.empty(len(dm.raw_features), dm.num_features)
    for split, rows in dm.split_indices.items():
        x[torch.from_numpy(rows)] = dm.tensors(split)[0]
    return x


@pytest.mark.parametrize("encoding", ["onehot", "ordinal", "embedding"])
def test_layout_numeric_block_then_categorical_block(tmp_path: Path, encoding: str) -> None:
    dm = churn_module(tmp_path, categorical_encoding=encoding)
    assert dm.num_numeric == 3  # tenure, charges, region
    names = dm.encoded_feature_names
    assert all(n.startswith("num__") for n in names[: dm.num_numeric])
    assert all(n.startswith("cat__") for n in names[dm.num_numeric :])
    x_train = dm.tensors("train")[0]
    torch.testing.assert_close(x_train[:, :3].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    widths = {"onehot": 3 + 2, "ordinal": 2, "embedding": 2}  # plan: 3 categories, has_phone: 2
    assert dm.num_features == 3 + widths[encoding]
    if encoding == "embedding":
        assert dm.categorical_cardinalities == [4, 3]  # + the reserved unknown code each
    else:
        assert dm.categorical_cardinalities == []


def test_embedding_codes_unknown_and_missing(tmp_path: Path, caplog) -> None:
    dm = churn_module(tmp_path, categorical_encoding="embedding")
    plan = dm.preprocessor.categorical[0]
    assert plan.categories == ["basic", "family plan", "premium"]
    x = dm.tensors("train")[0][:, dm.num_numeric :]
    assert x.dtype == torch.float32
    assert torch.equal(x, x.round()) and x.min() >= 0
    assert set(x[:, 0].tolist()) <= {0.0, 1.0, 2.0}  # training rows: no unknown code
    rows = pd.DataFrame(
        {"plan": ["premium", "gold", None], "has_phone": [True, "False", " "],
         "tenure": [1, 2, 3], "charges": [50.0, 60.0, 70.0], "region": [1, 2, 3]}
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ahop.data"):
        codes = dm.featurizer()(rows)[:, dm.num_numeric :]
    fill = dm.preprocessor.categorical[0].fill
    assert codes[:, 0].tolist() == [2.0, 3.0, float(plan.categories.index(fill))]
    assert codes[1, 1] == 0.0 and codes[2, 1] == 1.0 * ["False", "True"].index(
        dm.preprocessor.categorical[1].fill
    )
    text = caplog.text
    assert "'plan': 1 of 3 cells missing, imputed with the most frequent training category" in text
    assert "'plan': 1 of 3 cells hold a category unseen in training ['gold']" in text
    assert "the reserved unknown code" in text


def test_setup_logs_column_kinds_and_imputation_counts(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ahop.data"):
        dm = churn_module(tmp_path, int_categorical_threshold=3)
    text = caplog.text
    assert "column kinds: 2 numeric ['tenure', 'charges']" in text
    assert "'region' (integer with 3 distinct values <= int_categorical_threshold=3)" in text
    assert "'has_phone' (boolean)" in text and "'plan' (text with 3 distinct values)" in text
    median = dm.preprocessor.numeric[1].fill
    assert (
        f"numeric column 'charges': 6 of 60 cells missing, imputed with the training median {median:.6g}"
        in text
    )


@pytest.mark.parametrize("encoding", ["onehot", "ordinal", "embedding"])
def test_saved_state_replays_training_exactly(tmp_path: Path, encoding: str) -> None:
    dm = churn_module(tmp_path, categorical_encoding=encoding)
    raw = pd.read_csv(tmp_path / "churn.csv", dtype=str, keep_default_na=False)  # text cells
    want = all_rows(dm)
    # checkpoint: plain data that torch loads with weights_only=True
    torch.save({"dm": dm.state_dict()}, tmp_path / "state.ckpt")
    state = torch.load(tmp_path / "state.ckpt", weights_only=True)["dm"]
    json.dumps(state)  # JSON-able
    restored = TabularDataModule(categorical_encoding=encoding)
    restored.load_state_dict(state)
    assert torch.equal(restored.featurizer()(raw), want)
    # exported JSON file
    dm.save_preprocessor(tmp_path / "preprocessor.json")
    loaded = TabularPreprocessor.load(tmp_path / "preprocessor.json")
    assert torch.equal(loaded(raw), want)
    assert loaded.class_names == ["No", "Yes"] and loaded.num_features == dm.num_features


def test_restored_encoding_must_match_the_configuration(tmp_path: Path) -> None:
    dm = churn_module(tmp_path, categorical_encoding="embedding")
    with pytest.raises(ValueError, match=r"categorical_encoding='embedding'.*'onehot'"):
        TabularDataModule().load_state_dict(dm.state_dict())


def test_malformed_states_name_the_field(tmp_path: Path) -> None:
    dm = churn_module(tmp_path)
    good = dm.state_dict()["preprocessor"]
    bad_scale = json.loads(json.dumps(good))
    bad_scale["numeric"][1]["scale"] = "1.0"
    with pytest.raises(ValueError, match=r"field 'numeric\[1\].scale' must be a positive finite"):
        TabularPreprocessor.from_dict(bad_scale)
    bad_categories = json.loads(json.dumps(good))
    bad_categories["categorical"][0]["categories"] = [1, 2]
    with pytest.raises(ValueError, match=r"'categorical\[0\].categories' must be a list of str"):
        TabularPreprocessor.from_dict(bad_categories)
    with pytest.raises(ValueError, match="not an ahop tabular preprocessor"):
        TabularPreprocessor.from_dict({"numeric": []})
    with pytest.raises(ValueError, match="format version 99"):
        TabularPreprocessor.from_dict({**good, "version": 99})
    (tmp_path / "p.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="is not a JSON preprocessor file"):
        TabularPreprocessor.load(tmp_path / "p.json")
    with pytest.raises(FileNotFoundError, match="no preprocessor file"):
        TabularPreprocessor.load(tmp_path / "none.json")


def test_constant_and_all_missing_training_columns(tmp_path: Path, caplog) -> None:
    frame = pd.DataFrame({"const": [5.0] * 6, "gone": [np.nan] * 6, "c": [None] * 6})
    with caplog.at_level(logging.INFO, logger="ahop.data"):
        prep = TabularPreprocessor.fit(frame, ["const", "gone"], ["c"], "onehot")
    assert "numeric column 'gone' has no value in the training rows" in caplog.text
    assert "categorical column 'c' has no value in the training rows" in caplog.text
    x = prep(pd.DataFrame({"const": [5.0, 7.0], "gone": [1.0, np.nan], "c": ["a", None]}))
    assert x.shape == (2, 2)  # no one-hot column for a column without training categories
    assert x[:, 0].tolist() == [0.0, 2.0]  # constant: scale 1


# ----------------------------------------------------------------------------- quantile_normal
def _skewed_frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    train = pd.DataFrame({"income": rng.lognormal(size=400), "kind": ["a", "b"] * 200})
    new = pd.DataFrame({"income": np.r_[rng.lognormal(size=30), 1e7, -3.0], "kind": ["a"] * 32})
    return train, new


def test_quantile_normal_matches_scikit_learn_on_a_continuous_column() -> None:
    from sklearn.preprocessing import QuantileTransformer

    train, new = _skewed_frames()
    prep = TabularPreprocessor.fit(train, ["income"], ["kind"], numeric_transform="quantile_normal")
    reference = QuantileTransformer(n_quantiles=400, output_distribution="normal").fit(
        train[["income"]]
    )
    fitted = reference.transform(train[["income"]])[:, 0]
    expected = (reference.transform(new[["income"]])[:, 0] - fitted.mean()) / fitted.std()
    np.testing.assert_allclose(prep(new)[:, 0].numpy(), expected, atol=1e-5)
    # standardised normal scores: no heavy tail left in the training rows; outliers clipped
    scores = prep(train)[:, 0].numpy()
    assert abs(scores.mean()) < 1e-5 and abs(scores.std() - 1) < 1e-4
    assert np.abs(prep(new)[:, 0].numpy()).max() < 6.0  # 1e7 -> the clipped normal score 5.2
    standard = TabularPreprocessor.fit(train, ["income"], ["kind"])(new)[:, 0].numpy()
    assert standard.max() > 1e5  # the plain standardisation keeps the outlier


def test_quantile_normal_maps_a_repeated_value_to_the_middle_of_its_levels() -> None:
    train = pd.DataFrame({"count": [0.0] * 50 + [1.0] * 30 + [2.0] * 20})
    prep = TabularPreprocessor.fit(train, ["count"], [], numeric_transform="quantile_normal")
    column = prep.numeric[0]
    raw = column.normal_scores(np.array([0.0, 1.0, 2.0]))
    assert raw[0] < raw[1] < raw[2]
    assert abs(raw[0] - -0.674) < 0.05  # the median level of the lower half, not -5.2
    assert np.isfinite(raw).all()


def test_quantile_state_round_trips_and_is_checked(tmp_path: Path) -> None:
    train, new = _skewed_frames(1)
    prep = TabularPreprocessor.fit(train, ["income"], ["kind"], numeric_transform="quantile_normal")
    path = tmp_path / "prep.json"
    prep.save(path)
    loaded = TabularPreprocessor.load(path)
    assert loaded.numeric_transform == "quantile_normal"
    assert torch.equal(loaded(new), prep(new))
    state = prep.to_dict()
    del state["numeric_transform"]  # a state written before the option: standard
    state["numeric"][0]["quantiles"] = None
    assert TabularPreprocessor.from_dict(state).numeric_transform == "standard"
    bad = prep.to_dict()
    bad["numeric"][0]["quantiles"] = [3.0, 1.0]
    with pytest.raises(ValueError, match=r"numeric\[0\].quantiles' must be an ascending list"):
        TabularPreprocessor.from_dict(bad)
    mixed = prep.to_dict()
    mixed["numeric_transform"] = "standard"
    with pytest.raises(ValueError, match="does not match the numeric columns' quantiles"):
        TabularPreprocessor.from_dict(mixed)
    with pytest.raises(ValueError, match="unknown numeric_transform 'rank'"):
        TabularPreprocessor.fit(train, ["income"], [], numeric_transform="rank")


def test_datamodule_numeric_transform_option(tmp_path: Path) -> None:
    dm = churn_module(tmp_path, numeric_transform="quantile_normal")
    assert dm.preprocessor.numeric_transform == "quantile_normal"
    assert all(c.quantiles is not None for c in dm.preprocessor.numeric)
    restored = TabularDataModule(**{**dm.hparams, "numeric_transform": "standard"})
    restored.load_state_dict(dm.state_dict())
    restored.setup("fit")
    assert torch.equal(all_rows(restored), all_rows(dm))  # the saved transform is the one used
    with pytest.raises(ValueError, match="unknown numeric_transform"):
        TabularDataModule(numeric_transform="log")

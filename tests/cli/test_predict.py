"""`ahop predict` writes files: CSV of class probabilities for tabular / image / MIL (the test
split or new inputs through the fitted preprocessing), a torch file for retrieval outputs. Every
file is compared with the LightningModule's own outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits

from ahop_cli.cli import main
from ahop_cli.export import load_task
from datamodules.images import ImageDataModule
from datamodules.mil import MILDataModule, make_synthetic_bags
from datamodules.tabular import TabularDataModule

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit_once(config: str, save_dir: Path, *extra: str) -> Path:
    """One short epoch of ``config``; its last.ckpt."""
    main(
        [
            "fit",
            "--config",
            config,
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "3",
            "--trainer.logger.init_args.save_dir",
            str(save_dir),
            *QUIET,
            *extra,
        ]
    )
    return next(save_dir.rglob("last.ckpt"))


def predict(config: str, ckpt: Path | None, out: Path, *extra: str) -> pd.DataFrame | dict:
    args = ["predict", "--config", config, "--trainer.logger", "false", *QUIET]
    args += ["--predictions", str(out), *extra]
    if ckpt is not None:
        args += ["--ckpt_path", str(ckpt)]
    main(args)
    if out.suffix == ".csv":
        return pd.read_csv(out)
    return torch.load(out, weights_only=True)


def probabilities(frame: pd.DataFrame, classes: list[str]) -> torch.Tensor:
    return torch.tensor(frame[[f"prob_{c}" for c in classes]].to_numpy(), dtype=torch.float32)


@pytest.fixture(scope="module")
def tabular_ckpt(tmp_path_factory) -> Path:
    return fit_once(
        "tabular.yaml",
        tmp_path_factory.mktemp("tabular"),
        "--model.init_args.embedding_dim",
        "16",
        "--model.init_args.context_size",
        "8",
        "--model.init_args.similarity",
        "dot",
    )


def test_tabular_test_split_predictions(tmp_path: Path, tabular_ckpt: Path) -> None:
    frame = predict("tabular.yaml", tabular_ckpt, tmp_path / "p.csv")
    task, _ = load_task(tabular_ckpt)
    dm = TabularDataModule(source="sklearn", name="breast_cancer", seed=0)
    dm.setup("test")
    x, _ = dm.tensors("test")
    with torch.no_grad():
        want = task(x).softmax(-1)
    assert list(frame.columns) == ["id", "prob_malignant", "prob_benign", "predicted"]
    assert frame["id"].tolist() == dm.split_indices["test"].tolist()  # rows of the source table
    torch.testing.assert_close(probabilities(frame, dm.class_names), want, rtol=1e-5, atol=1e-6)
    assert (frame["predicted"] == np.array(dm.class_names)[want.argmax(1).numpy()]).all()


def test_tabular_new_csv_goes_through_the_checkpoint_preprocessor(
    tmp_path: Path, tabular_ckpt: Path
) -> None:
    data = load_breast_cancer(as_frame=True).data.iloc[[3, 50, 200, 400]].copy()
    rows = data.astype(str)  # text cells, as any CSV gives them
    rows.iloc[1, 4] = " "  # a blank cell: imputed with the training median (logged)
    rows.insert(0, "patient", ["p3", "p50", "p200", "p400"])
    path = tmp_path / "new.csv"
    rows.to_csv(path, index=False)
    frame = predict(
        "tabular.yaml",
        tabular_ckpt,
        tmp_path / "p.csv",
        "--data.init_args.predict_path",
        str(path),
        "--data.init_args.id_column",
        "patient",
    )
    task, checkpoint = load_task(tabular_ckpt)
    dm = TabularDataModule()
    dm.load_state_dict(checkpoint["TabularDataModule"])  # the state fitted at training time
    with torch.no_grad():
        want = task(dm.featurizer()(pd.read_csv(path))).softmax(-1)
    assert frame["id"].tolist() == ["p3", "p50", "p200", "p400"]
    torch.testing.assert_close(probabilities(frame, dm.class_names), want, rtol=1e-5, atol=1e-6)


def test_image_folder_and_idx_predictions(tmp_path: Path) -> None:
    from torchvision.io import write_png

    ckpt = fit_once("image.yaml", tmp_path / "runs", "--trainer.limit_val_batches", "1")
    digits = load_digits()
    pixels = torch.from_numpy(digits.images[:5] * (255.0 / 16.0)).round().to(torch.uint8)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(pixels):
        write_png(image[None], str(folder / f"digit_{i}.png"))
    idx = tmp_path / "t10k-images-idx3-ubyte"
    header = np.array([2051, len(pixels), 8, 8], dtype=">i4").tobytes()
    idx.write_bytes(header + pixels.numpy().tobytes())
    task, _ = load_task(ckpt)
    dm = ImageDataModule()
    with torch.no_grad():
        want = task(dm.eval_transform(pixels[:, None].float() / 255.0)).softmax(-1)
    for source, ids in ((folder, [f"digit_{i}.png" for i in range(5)]), (idx, list(range(5)))):
        frame = predict(
            "image.yaml", ckpt, tmp_path / "p.csv", "--data.init_args.predict_path", str(source)
        )
        assert frame["id"].tolist() == ids
        names = [str(d) for d in range(10)]
        torch.testing.assert_close(probabilities(frame, names), want, rtol=1e-5, atol=1e-6)


def test_mil_bag_file_predictions(tmp_path: Path) -> None:
    empty = tmp_path / "no_files"  # mil.yaml falls back to its synthetic bags
    empty.mkdir()
    data = ["--data.init_args.data_dir", str(empty)]
    ckpt = fit_once("mil.yaml", tmp_path / "runs", *data)
    bags = make_synthetic_bags(seed=7)
    lines = []
    for b in range(4):
        for instance in bags.bag(b).tolist():
            lines.append(",".join(map(str, [int(bags.labels[b]), f"bag{b}", *instance])))
    path = tmp_path / "new_bags.csv"
    path.write_text("\n".join(lines) + "\n")
    frame = predict(
        "mil.yaml", ckpt, tmp_path / "p.csv", *data, "--data.init_args.predict_path", str(path)
    )
    task, _ = load_task(ckpt)
    dm = MILDataModule(data_dir=str(empty))
    dm.setup("fit")
    with torch.no_grad():
        want = [
            torch.sigmoid(task((bags.bag(b)[None] - dm.feature_mean) / dm.feature_std)).item()
            for b in range(4)
        ]
    assert frame["id"].tolist() == [f"bag{b}" for b in range(4)]
    assert list(frame.columns) == ["id", "prob_negative", "prob_positive", "predicted"]
    np.testing.assert_allclose(frame["prob_positive"], want, rtol=1e-5, atol=1e-6)


def test_retrieval_outputs_tensor_file(tmp_path: Path) -> None:
    fixed = ["--model.init_args.similarity", "manhattan", "--model.init_args.similarity_kwargs"]
    saved = predict("retrieval.yaml", None, tmp_path / "out.pt", *fixed, "null")
    built = main(["--config", "retrieval.yaml", *fixed, "null"], run=False)
    dm, task = built.datamodule, built.model
    dm.setup("test")
    task.hparams.dim, task.hparams.num_memories = dm.dim, dm.num_memories
    task.build()
    task.set_memories(dm.memories)
    queries = torch.cat([batch[0] for batch in dm.test_dataloader()])
    assert saved["ids"] == list(range(len(queries)))
    with torch.no_grad():
        torch.testing.assert_close(saved["outputs"], task(queries), rtol=0, atol=1e-6)

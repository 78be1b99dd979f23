"""export.py on image and MIL checkpoints: pt2 and ONNX match the task, any batch / bag size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import export
from ahop_cli import cli as ahop_cli

ROOT = Path(__file__).resolve().parents[2]


def short_fit(config: str, tmp_path: Path, *extra: str) -> Path:
    """Train one short epoch through train.py; return its last checkpoint."""
    ahop_cli.main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / config),
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path / "runs"),
            *extra,
        ]
    )
    return next((tmp_path / "runs").rglob("last.ckpt"))


def test_image_export_matches_task(tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    last = short_fit("image.yaml", tmp_path, "--model.init_args.network.similarity", "manhattan")
    metadata = export.export(last, tmp_path / "export")
    assert metadata["inputs"] == [
        {"name": "inputs", "shape": ["batch", 1, 8, 8], "dtype": "float32"}
    ]
    saved = json.loads((tmp_path / "export" / "metadata.json").read_text())
    assert saved["output"]["shape"] == ["batch", 10]
    # what a user must apply to raw images: pixels / 255, then (x - mean) / std; class names
    assert saved["normalization"]["mean"] == [0.3053] and saved["normalization"]["std"] == [0.376]
    assert saved["class_names"] == [str(d) for d in range(10)]
    assert saved["image_shape"] == [1, 8, 8]
    task, _ = export.load_task(last)
    program = torch.export.load(tmp_path / "export" / "model.pt2").module()
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    for size in (1, 5):
        images = torch.randn(size, 1, 8, 8)
        with torch.no_grad():
            want = task(images).softmax(-1)
        torch.testing.assert_close(program(images), want, rtol=0, atol=1e-5)
        (got,) = session.run(None, {"inputs": images.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=0, atol=1e-5)


def test_mil_export_takes_padded_bags_of_any_size(tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    empty = tmp_path / "no_files"  # mil.yaml falls back to its synthetic bags
    empty.mkdir()
    last = short_fit("mil.yaml", tmp_path, "--data.init_args.data_dir", str(empty))
    metadata = export.export(last, tmp_path / "export")
    assert [i["name"] for i in metadata["inputs"]] == ["instances", "mask"]
    assert metadata["inputs"][1] == {
        "name": "mask",
        "shape": ["batch", "bag_size"],
        "dtype": "bool",
    }
    task, _ = export.load_task(last)
    features = task.hparams.num_features
    program = torch.export.load(tmp_path / "export" / "model.pt2").module()
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    generator = torch.Generator().manual_seed(0)
    for batch, length in ((1, 3), (4, 9)):
        instances = torch.randn(batch, length, features, generator=generator)
        mask = torch.zeros(batch, length, dtype=torch.bool)
        mask[-1, length // 2 :] = True  # the last bag is padded
        with torch.no_grad():
            want = torch.sigmoid(task(instances, mask))
        assert want.shape == (batch,)
        torch.testing.assert_close(program(instances, mask), want, rtol=0, atol=1e-5)
        (got,) = session.run(None, {"instances": instances.numpy(), "mask": mask.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=0, atol=1e-5)

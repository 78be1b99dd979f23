"""Loading a checkpoint or an exported preprocessor never runs code from it.

Each crafted file carries a pickle whose unpickling creates a marker file; a control unpickles
the same payload to show it is live, then every ahop entry point must refuse the file with one
line and leave no marker.
"""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import pytest
import torch

from ahop_cli.cli import main, run_cli
from datamodules.tabular import TabularDataModule
from datamodules.tabular_preprocessing import TabularPreprocessor

ROOT = Path(__file__).resolve().parents[2]


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def one_line(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(argv)
    message = exit_info.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message
    return message


def test_the_payload_is_live(tmp_path: Path) -> None:
    pickle.loads(pickle.dumps(Payload(tmp_path / "control")))
    assert (tmp_path / "control").exists()


def test_crafted_checkpoints_are_refused_and_nothing_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("AHOP_DEBUG", raising=False)
    marker = tmp_path / "ran"
    # 1) a pickled object anywhere in the checkpoint
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "extra": Payload(marker)}, evil)
    # 2) a real checkpoint whose datamodule state is a pickle blob in a uint8 tensor (it slips
    #    past torch's weights_only check; ahop once unpickled it on restore)
    main(["fit", "--config", "tabular.yaml", "--trainer.max_epochs", "1",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
          "--model.init_args.embedding_dim", "8", "--model.init_args.context_size", "4",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    real = next((tmp_path / "runs").rglob("last.ckpt"))
    checkpoint = torch.load(real, weights_only=True)
    blob = bytearray(pickle.dumps(Payload(marker)))
    checkpoint["TabularDataModule"] = {"featurizer": torch.frombuffer(blob, dtype=torch.uint8)}
    blob_ckpt = tmp_path / "blob.ckpt"
    torch.save(checkpoint, blob_ckpt)
    quiet = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    for ckpt, expected in ((evil, "could run code"), (blob_ckpt, "unpickling could run code")):
        for command in ("test", "validate", "predict"):
            argv = [command, "--config", "tabular.yaml", "--ckpt_path", str(ckpt), *quiet]
            if command == "predict":
                argv += ["--predictions", str(tmp_path / "p.csv")]
            assert expected in one_line(argv)
        assert expected in one_line(["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path)])
        # the Python API refuses too
        with pytest.raises(ValueError, match="could run code"):
            TabularDataModule().load_state_dict(
                torch.load(blob_ckpt, weights_only=True)["TabularDataModule"]
            )
    assert not marker.exists()


def test_exported_preprocessor_cannot_be_a_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for name in ("preprocessor.json", "preprocessor.joblib"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(Payload(marker)))
        with pytest.raises(ValueError, match="not a JSON preprocessor file") as caught:
            TabularPreprocessor.load(path)
        assert "\n" not in str(caught.value) and "could run code" in str(caught.value)
        with pytest.raises(ValueError, match="not a JSON preprocessor file"):
            TabularDataModule().load_preprocessor(path)
    assert not marker.exists()


def test_every_torch_load_in_the_package_is_weights_only() -> None:
    """No code path of the package unpickles arbitrary objects (a static check of the source)."""
    offenders = []
    for folder in ("ahop", "ahop_cli", "datamodules", "tasks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = ast.unparse(node.func)
                if name in ("pickle.load", "pickle.loads", "joblib.load"):
                    offenders.append(f"{path.name}: {name}")
                if name in ("torch.load", "load_from_checkpoint") or name.endswith(
                    ".load_from_checkpoint"
                ):
                    safe = any(
                        k.arg == "weights_only" and ast.unparse(k.value) == "True"
                        for k in node.keywords
                    )
                    if not safe:
                        offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, offenders

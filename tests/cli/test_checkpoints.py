"""Checkpoints of `ahop fit`: last.ckpt every epoch, best-k beside it, an exact resume after a
SIGKILL, interrupted.ckpt on an exception, the best value carried over a resume."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from lightning import Callback

from ahop_cli.cli import main

ROOT = Path(__file__).resolve().parents[2]


def tiny_fit_args(save_dir: Path, epochs: int, *extra: str) -> list[str]:
    """configs/tabular.yaml with a small model; dropout so that resuming needs the RNG state."""
    return [
        "fit",
        "--config",
        "tabular.yaml",
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.logger.init_args.save_dir",
        str(save_dir),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--model.init_args.similarity",
        "dot",
        "--model.init_args.embedding_dim",
        "16",
        "--model.init_args.context_size",
        "8",
        "--model.init_args.dropout",
        "0.2",
        "--model.init_args.lr_scheduler",
        "null",
        *extra,
    ]


def checkpoint_files(save_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in save_dir.rglob("*.ckpt")}


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_last_ckpt_is_the_last_epoch_when_the_best_is_early(tmp_path: Path) -> None:
    # lr 0: the weights never change, so val/acc ties every epoch and the best stays epoch 0
    args = tiny_fit_args(tmp_path, 3, "--model.init_args.optimizer.init_args.lr", "0")
    main([*args, "--best_k", "2"])
    files = checkpoint_files(tmp_path)
    assert load(files["last.ckpt"])["epoch"] == 2
    best = sorted(name for name in files if name.startswith("best-"))
    assert best and best[0].startswith("best-000-")
    assert len(best) == 2  # --best_k 2
    assert "interrupted.ckpt" not in files
    assert not list(tmp_path.rglob("*.partial"))


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    killed_dir = tmp_path / "killed"
    command = [sys.executable, "-c", "from ahop_cli.cli import run_cli; run_cli()"]
    process = subprocess.Popen(
        [*command, *tiny_fit_args(killed_dir, 1000)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},  # same sums
    )
    epoch, deadline = -1, time.monotonic() + 120
    try:
        while epoch < 1 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
            last = checkpoint_files(killed_dir).get("last.ckpt")
            if last is not None:
                epoch = load(last)["epoch"]  # safe mid-run: written elsewhere, then renamed
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert epoch >= 1, "the run did not reach its second epoch within 2 minutes"
    last = checkpoint_files(killed_dir)["last.ckpt"]
    resumed_from = load(last)["epoch"]
    total = resumed_from + 3
    main(tiny_fit_args(tmp_path / "resumed", total, "--ckpt_path", str(last)))
    main(tiny_fit_args(tmp_path / "straight", total))
    resumed = load(checkpoint_files(tmp_path / "resumed")["last.ckpt"])
    straight = load(checkpoint_files(tmp_path / "straight")["last.ckpt"])
    assert resumed["epoch"] == straight["epoch"] == total - 1
    assert resumed["state_dict"].keys() == straight["state_dict"].keys()
    for name, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name
    assert resumed["best_monitored"] == straight["best_monitored"]


class FailAtEpoch(Callback):
    """Raises in the middle of epoch ``epoch`` (used through --trainer.callbacks)."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 2:
            raise RuntimeError("boom")


def test_an_exception_leaves_interrupted_ckpt(tmp_path: Path, caplog) -> None:
    args = tiny_fit_args(tmp_path, 4)
    args += ["--trainer.callbacks+=tests.cli.test_checkpoints.FailAtEpoch"]
    lightning_log = logging.getLogger("lightning.pytorch")  # does not propagate to the root
    lightning_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
            main(args)
    except RuntimeError as error:
        assert "boom" in str(error)
    else:
        raise AssertionError("the failing callback did not stop the run")
    finally:
        lightning_log.removeHandler(caplog.handler)
    files = checkpoint_files(tmp_path)
    interrupted = load(files["interrupted.ckpt"])
    assert interrupted["epoch"] == 1 and load(files["last.ckpt"])["epoch"] == 0
    assert interrupted["global_step"] > load(files["last.ckpt"])["global_step"]
    assert "optimizer_states" in interrupted  # resumable
    assert "weights_only" not in caplog.text  # saved as a full checkpoint on purpose, no notice

"""The checkpoints every ``ahop fit`` writes, and what makes a resumed run match an uninterrupted one.

In ``runs/<name>/version_<k>/checkpoints/``:

- ``last.ckpt``: the state after the latest finished epoch, rewritten every epoch (whether the
  monitored metric improved or not) by :class:`LastCheckpoint`. ``--ckpt_path .../last.ckpt``
  resumes there; a run killed at any moment (even by SIGKILL) loses at most the current epoch,
  because every checkpoint is written to a temporary file and renamed into place;
- ``best-<epoch>-<step>.ckpt``: the ``best_k`` best epochs by the task's monitored metric
  (``val/acc`` for classifiers, ``val/loss`` for MIL, ...);
- ``interrupted.ckpt``: written when fit stops on an exception or Ctrl-C
  (:class:`InterruptCheckpoint`). It holds the
  mid-epoch state: resuming from it finishes the interrupted epoch, but with the epoch's first
  batches again (Lightning cannot fast-forward a plain DataLoader), so only ``last.ckpt`` resumes
  bit-exactly.

Exact resumes also need the random state: the training loaders' order depends only on
``(seed, epoch)`` (:class:`datamodules.tensor_data.EpochShuffleSampler`), and
:class:`RandomStateCheckpoint` stores the Python / NumPy / torch generators with every checkpoint
(as plain tensors and integers, loadable with ``weights_only=True``) and puts them back before the
first resumed training step, so dropout and augmentation draw the same numbers as without the break.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from tasks.lightning_compat import AtomicSaveMixin

BEST_FILENAME = "best-{epoch:03d}-{step}"
LAST_NAME = "last"
INTERRUPTED_NAME = "interrupted"


class BestCheckpoint(AtomicSaveMixin, ModelCheckpoint):
    """The ``save_top_k`` best checkpoints by the model's monitored metric.

    Args:
        monitor: the metric (the task's ``monitor``), or ``None`` to keep the newest.
        mode: ``max`` or ``min``.
        save_top_k: how many to keep (0 = none).
    """

    def __init__(self, monitor: str | None, mode: str = "max", save_top_k: int = 1) -> None:
        super().__init__(
            monitor=monitor,
            mode=mode,
            save_top_k=save_top_k,
            filename=BEST_FILENAME,
            auto_insert_metric_name=False,
            save_last=False,
        )


class LastCheckpoint(AtomicSaveMixin, ModelCheckpoint):
    """``last.ckpt``, rewritten after every training epoch (after its validation when there is one).

    A plain ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it also saves a
    best checkpoint, i.e. when the metric improved; this one does not watch any metric.
    """

    def __init__(self, dirpath: str | None = None) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=LAST_NAME,
            monitor=None,
            save_top_k=1,
            every_n_epochs=1,
            enable_version_counter=False,
            save_last=False,
        )


class InterruptCheckpoint(Callback):
    """``interrupted.ckpt`` beside ``last.ckpt`` when fit stops on an exception or Ctrl-C.

    Like Lightning's ``OnExceptionCheckpoint``, but it takes the folder of the run's checkpoints
    (known only once the run started), saves only if training took a step, and is never picked
    up by itself: Lightning's callback makes a later ``fit`` without ``--ckpt_path`` resume from
    its file silently.
    """

    def __init__(self) -> None:
        self.path: str | None = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, error: BaseException):
        folder = getattr(trainer.checkpoint_callback, "dirpath", None)
        if folder is None or trainer.state.fn != TrainerFn.FITTING or trainer.global_step == 0:
            return
        self.path = os.path.join(folder, INTERRUPTED_NAME + ModelCheckpoint.FILE_EXTENSION)
        trainer.save_checkpoint(self.path, weights_only=False)  # resumable: optimizer and loops

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        folder = getattr(trainer.checkpoint_callback, "dirpath", None)
        if stage == "fit" and folder is not None and self.path is None:
            # a normal end: an interrupted state left by an earlier attempt here is stale
            trainer.strategy.remove_checkpoint(
                os.path.join(folder, INTERRUPTED_NAME + ModelCheckpoint.FILE_EXTENSION)
            )


def _random_state() -> dict[str, Any]:
    name, keys, position, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_random_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["name"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomStateCheckpoint(Callback):
    """Save the Python / NumPy / torch random generators with every checkpoint and restore them
    right before the first resumed training step (after the sanity check and anything else that
    drew from them since the restart).

    Single-process state only: under DDP every rank restores rank 0's generators.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "RandomState"

    def state_dict(self) -> dict[str, Any]:
        return _random_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = state_dict

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.pending is not None:
            _set_random_state(self.pending)
            self.pending = None


def default_checkpoint_callbacks(monitor: str | None, mode: str, best_k: int = 1) -> list[Callback]:
    """The checkpoints of an ``ahop fit``: best-k (listed first, so ``trainer.checkpoint_callback``
    and ``ckpt_path="best"`` mean it), ``last.ckpt``, ``interrupted.ckpt``, the random state."""
    callbacks: list[Callback] = []
    if best_k > 0:
        callbacks.append(BestCheckpoint(monitor, mode, best_k))
    callbacks += [LastCheckpoint(), InterruptCheckpoint(), RandomStateCheckpoint()]
    return callbacks


#: ``--ckpt_path`` values Lightning resolves itself (not files)
SPECIAL_CKPT_PATHS = frozenset({"best", "last", "hpc", "registry"})


def read_checkpoint(path: str | Path, option: str = "--ckpt_path") -> dict[str, Any]:
    """Load a Lightning checkpoint safely: tensors and plain data only (``weights_only=True``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, a truncated / corrupt file, a file that holds other objects
            (which could run code when unpickled: refused, never loaded), or not a Lightning
            checkpoint. One line each, naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{option} {path}: no such checkpoint file")
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a .ckpt file (e.g. .../last.ckpt)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = _UNSAFE_GLOBAL.search(str(error))
        if found is None:  # not a pickle of allowed types, nor one of forbidden ones: garbage
            raise ValueError(
                f"{option} {path} is not a readable checkpoint (truncated or corrupt? the "
                "PyTorch loader cannot parse it); use an intact .ckpt written by `ahop fit`, e.g. "
                "the run's last.ckpt"
            ) from None
        raise ValueError(
            f"{option} {path} holds objects other than tensors and plain data (it references "
            f"{found.group(1)}); ahop does not load it, because unpickling it could run code. Use "
            "a checkpoint written by `ahop fit` and obtained from a source you trust"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:160]
        raise ValueError(
            f"{option} {path} is not a readable checkpoint (truncated or corrupt? {reason}); "
            "use an intact .ckpt written by `ahop fit`, e.g. the run's last.ckpt"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"{option} {path} is not a Lightning checkpoint (no state_dict); use a .ckpt "
            "written by `ahop fit`"
        )
    return checkpoint


_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")

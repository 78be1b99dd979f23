"""Export a trained checkpoint for inference without the training code.

    ahop export --ckpt_path runs/tabular/version_0/checkpoints/last.ckpt --out exports/tabular
    python export.py ...   (the same, from a checkout)

writes into ``--out``:

- ``model.pt2``: a ``torch.export`` program (``torch.export.load(path).module()(x)``),
- ``model.onnx``: the same graph for ONNX Runtime (needs the ``export`` extra),
- ``preprocessor.json``: the fitted raw-rows -> features transform of a tabular checkpoint as plain
  data (``TabularPreprocessor.load(path)(frame)`` -> float32 tensor; JSON, so loading it cannot
  run code), when the checkpoint has one,
- ``metadata.json``: input / output names and shapes, class names, the task; for tabular
  checkpoints the raw feature names, for images the normalisation (``normalization.mean`` /
  ``std`` per channel, applied to pixels scaled to [0, 1]) and the image shape.

Checkpoints are read with ``weights_only=True`` (tensors and plain data only); only classifiers
export (retrieval / LSHN checkpoints are refused with a one-line error).

Both graphs take the task's inputs (``metadata.json`` names them: ``inputs`` for tabular rows and
images; ``instances`` + ``mask`` for MIL bags) with any batch size (and any bag size for MIL) and
return probabilities: ``(batch, classes)``, or ``(batch,)`` positive-bag probabilities for MIL.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ahop_cli.checkpoints import read_checkpoint
from ahop_cli.errors import one_line_errors
from ahop_cli.paths import check_writable_dir
from tasks.class_paths import import_class

FORMATS = ("pt2", "onnx")


class ProbabilityModel(nn.Module):
    """Wraps a task so the exported graph maps its inputs to probabilities
    (``task.export_probabilities``)."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.task.export_probabilities(*inputs)


def load_task(ckpt_path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The LightningModule stored in a checkpoint (class from its ``_class_path``), in eval mode,
    and the raw checkpoint dictionary. Loaded with ``weights_only=True`` only (see
    :func:`ahop_cli.checkpoints.read_checkpoint` for the errors)."""
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    class_path = checkpoint.get("hyper_parameters", {}).get("_class_path")
    if class_path is None:
        raise ValueError(
            f"--ckpt_path {path} does not record its task class (_class_path); export "
            "checkpoints written by `ahop fit`"
        )
    task = import_class(class_path).load_from_checkpoint(
        path, map_location="cpu", weights_only=True
    )
    return task.eval(), checkpoint


def load_datamodule_state(checkpoint: dict[str, Any]) -> Any | None:
    """Rebuild the checkpoint's datamodule from its hyperparameters and saved state (no data are
    read), if the checkpoint records one."""
    hparams = checkpoint.get("datamodule_hyper_parameters")
    if not hparams or "_class_path" not in hparams:
        return None
    cls = import_class(hparams["_class_path"])
    init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
    datamodule = cls(**init_args)
    if cls.__name__ in checkpoint:
        datamodule.load_state_dict(checkpoint[cls.__name__])
    return datamodule


def check_exportable(task_class: type, class_path: str) -> None:
    """Raises a one-line ``ValueError`` for a task class that is not an exportable classifier."""
    if not callable(getattr(task_class, "export_inputs", None)):
        raise ValueError(
            f"export writes classifiers (tabular, image, MIL) as ONNX / torch.export graphs; "
            f"{class_path} checkpoints are not exportable. Use the model from Python "
            f"({class_path.rpartition('.')[2]}.load_from_checkpoint(path, weights_only=True)) or "
            "write its outputs with `ahop predict --predictions out.pt`"
        )


def export(
    ckpt_path: str | Path, out: str | Path, formats: tuple[str, ...] = FORMATS
) -> dict[str, Any]:
    """Write the exported artifacts for ``ckpt_path`` into ``out``; returns the metadata."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(
            f"unknown export format(s) {unknown}; allowed values: {', '.join(FORMATS)}"
        )
    out = Path(out)
    check_writable_dir(out, "--out")
    class_path = read_checkpoint(ckpt_path).get("hyper_parameters", {}).get("_class_path")
    if class_path is not None:  # refuse a task that cannot export before building it
        check_exportable(import_class(class_path), class_path)
    task, checkpoint = load_task(ckpt_path)
    try:
        examples = task.export_inputs(batch_size=2)
    except NotImplementedError as error:
        raise ValueError(f"{class_path} does not support export: {error}") from None
    model = ProbabilityModel(task).eval()
    axes = task.export_dynamic_axes()
    # one Dim object per axis name: inputs that share a name (MIL: batch, bag_size) stay equal
    dims = {n: torch.export.Dim(n, min=1, max=2**20) for a in axes.values() for n in a.values()}
    # the wrapper's ``forward(*inputs)`` has one (variadic) parameter: a tuple of per-input specs
    dynamic_shapes = (
        tuple({axis: dims[dim] for axis, dim in axes.get(name, {}).items()} for name in examples),
    )
    output_name, output_shape = task.export_output()
    metadata: dict[str, Any] = {
        "task": checkpoint["hyper_parameters"]["_class_path"],
        "checkpoint": str(ckpt_path),
        "inputs": [
            {
                "name": name,
                "shape": [axes.get(name, {}).get(i, size) for i, size in enumerate(x.shape)],
                "dtype": str(x.dtype).removeprefix("torch."),
            }
            for name, x in examples.items()
        ],
        "output": {"name": output_name, "shape": output_shape},
        "files": {},
    }
    # task-specific facts about the graph (e.g. the size of a memory baked into it)
    extra = getattr(task, "export_metadata", None)
    if callable(extra):
        metadata.update(extra())
    example = tuple(examples.values())
    with torch.no_grad():
        if "pt2" in formats:
            program = torch.export.export(model, example, dynamic_shapes=dynamic_shapes)
            torch.export.save(program, out / "model.pt2")
            metadata["files"]["pt2"] = "model.pt2"
        if "onnx" in formats:
            torch.onnx.export(
                model,
                example,
                str(out / "model.onnx"),
                input_names=list(examples),
                output_names=[output_name],
                dynamic_shapes=dynamic_shapes,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            metadata["files"]["onnx"] = "model.onnx"
    datamodule = load_datamodule_state(checkpoint)
    # facts about the inputs the data define: normalisation constants, class names, ...
    data_metadata = getattr(datamodule, "export_metadata", None)
    if callable(data_metadata):
        metadata.update(data_metadata())
    if datamodule is not None and hasattr(datamodule, "save_preprocessor"):
        datamodule.save_preprocessor(out / "preprocessor.json")
        metadata["files"]["preprocessor"] = "preprocessor.json"
        metadata["feature_names"] = list(datamodule.feature_names)
        metadata["class_names"] = [str(c) for c in datamodule.class_names]
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return metadata


class _Parser(argparse.ArgumentParser):
    """argparse that raises (one line via :func:`one_line_errors`) instead of printing usage."""

    def error(self, message: str) -> None:
        raise ValueError(f"ahop export: {message} (see ahop export --help)")


def main(argv: list[str] | None = None) -> None:
    """``ahop export``: parse ``argv`` and export; errors end in one ``error: ...`` line."""
    with one_line_errors():
        _main(argv)


def _main(argv: list[str] | None) -> None:
    parser = _Parser(prog="ahop export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by train.py")
    parser.add_argument("--out", default="exports", help="output folder")
    parser.add_argument(
        "--format", choices=(*FORMATS, "all"), default="all", help="what to write (default: all)"
    )
    args = parser.parse_args(argv)
    formats = FORMATS if args.format == "all" else (args.format,)
    metadata = export(args.ckpt_path, args.out, formats)
    print(json.dumps(metadata["files"], indent=2))


if __name__ == "__main__":
    main()

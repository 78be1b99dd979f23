"""Export a trained checkpoint for inference without the training code.

    ahop export --ckpt_path runs/tabular/version_0/checkpoints/last.ckpt --out exports/tabular
    python export.py ...   (the same, from a checkout)

writes into ``--out``:

- ``model.pt2``: a ``torch.export`` program (``torch.export.load(path).module()(x)``),
- ``model.onnx``: the same graph for ONNX Runtime (needs the ``export`` extra),
- ``preprocessor.json``: the fitted raw-rows -> features transform of a tabular checkpoint as plain
  data (``TabularPreprocessor.load(path)(frame)`` -> float32 tensor; JSON, so loading it cannot
  run code), when the checkpoint has one,
- ``metadata.json``: input / output names and shapes, class names, feature names, the task.

Both graphs take the task's inputs (``metadata.json`` names them: ``inputs`` for tabular rows and
images; ``instances`` + ``mask`` for MIL bags) with any batch size (and any bag size for MIL) and
return probabilities: ``(batch, classes)``, or ``(batch,)`` positive-bag probabilities for MIL.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

FORMATS = ("pt2", "onnx")


class ProbabilityModel(nn.Module):
    """Wraps a task so the exported graph maps its inputs to probabilities
    (``task.export_probabilities``)."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.task.export_probabilities(*inputs)


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def load_task(ckpt_path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The LightningModule stored in a checkpoint (class from its ``_class_path``), in eval mode,
    and the raw checkpoint dictionary."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    class_path = checkpoint.get("hyper_parameters", {}).get("_class_path")
    if class_path is None:
        raise ValueError(
            f"{path} does not record its task class (_class_path); train it with train.py"
        )
    task = _import(class_path).load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return task.eval(), checkpoint


def load_datamodule_state(checkpoint: dict[str, Any]) -> Any | None:
    """Rebuild the checkpoint's datamodule from its saved state (no data are read), if any."""
    hparams = checkpoint.get("datamodule_hyper_parameters")
    if not hparams or "_class_path" not in hparams:
        return None
    cls = _import(hparams["_class_path"])
    if cls.__name__ not in checkpoint:
        return None
    init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
    datamodule = cls(**init_args)
    datamodule.load_state_dict(checkpoint[cls.__name__])
    return datamodule


def export(
    ckpt_path: str | Path, out: str | Path, formats: tuple[str, ...] = FORMATS
) -> dict[str, Any]:
    """Write the exported artifacts for ``ckpt_path`` into ``out``; returns the metadata."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(
            f"unknown export format(s) {unknown}; allowed values: {', '.join(FORMATS)}"
        )
    task, checkpoint = load_task(ckpt_path)
    try:
        examples = task.export_inputs(batch_size=2)
    except (AttributeError, NotImplementedError) as error:
        raise ValueError(f"{type(task).__name__} does not support export: {error}") from error
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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
    if datamodule is not None and hasattr(datamodule, "save_preprocessor"):
        datamodule.save_preprocessor(out / "preprocessor.json")
        metadata["files"]["preprocessor"] = "preprocessor.json"
        metadata["feature_names"] = list(datamodule.feature_names)
        metadata["class_names"] = [str(c) for c in datamodule.class_names]
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ahop export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by train.py")
    parser.add_argument("--out", default="exports", help="output folder")
    parser.add_argument(
        "--format", choices=(*FORMATS, "all"), default="all", help="what to write (default: all)"
    )
    args = parser.parse_args(argv)
    formats = FORMATS if args.format == "all" else (args.format,)
    try:
        metadata = export(args.ckpt_path, args.out, formats)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(json.dumps(metadata["files"], indent=2))


if __name__ == "__main__":
    main()

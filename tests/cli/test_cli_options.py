"""The command line's own behaviour: config lookup, --help listing the task's options with their
descriptions, hparams of model and data, val/<metric>_best without a NaN first point, the LSHN
sanity check's cap, and the console script of the built wheel."""

from __future__ import annotations

import configparser
import glob
import inspect
import subprocess
import sys
import zipfile
from importlib import import_module
from pathlib import Path

import docstring_parser
import pytest
import torch
import yaml

from ahop_cli.cli import DATA_CLASSES, TASK_CLASSES, main, run_cli
from ahop_cli.paths import resolve_config

ROOT = Path(__file__).resolve().parents[2]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def test_config_names_are_looked_up(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert resolve_config("tabular.yaml") == "configs/tabular.yaml"
    assert resolve_config("tabular") == "configs/tabular.yaml"
    monkeypatch.chdir(tmp_path)  # no configs/ here: the package's configs
    assert Path(resolve_config("tabular.yaml")) == ROOT / "configs" / "tabular.yaml"
    (tmp_path / "mine.yaml").write_text("seed_everything: 1\n")
    assert resolve_config("mine.yaml") == "mine.yaml"  # a path that exists wins
    inline = "seed_everything: 3\ntrainer: {logger: false}\n"
    assert resolve_config(inline) == inline  # inline YAML (the evaluation engine's fits)
    cli = main(["--config", "tabular.yaml", "--trainer.logger", "false"], run=False)
    assert cli.model.hparams.similarity == "euclidean"  # what configs/tabular.yaml says


@pytest.mark.parametrize("class_path", TASK_CLASSES + DATA_CLASSES)
def test_every_option_has_a_description(class_path: str) -> None:
    """jsonargparse shows docstring Args in --help: every init argument must have one."""
    module, _, name = class_path.rpartition(".")
    cls = getattr(import_module(module), name)
    documented = {p.arg_name for p in docstring_parser.parse(cls.__doc__ or "").params}
    arguments = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert [a for a in arguments if a not in documented] == []


def test_fit_help_lists_the_configured_task_options(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        run_cli(["fit", "--config", "tabular.yaml", "--help"])
    assert done.value.code in (0, None)
    text = capsys.readouterr().out
    assert "--trainer.max_epochs" in text  # LightningCLI's own help comes first
    tail = text[text.index("Options of the configured classes:") :]
    assert "model: tasks.tabular.TabularClassifier" in tail
    assert "--model.init_args.embedding_dim" in tail
    assert "size of the embedding / association space" in tail
    assert "--data.init_args.predict_path" in tail and "a CSV of new rows" in tail
    with pytest.raises(SystemExit):
        run_cli(["fit", "--help"])
    text = capsys.readouterr().out
    assert "Tasks (--model CLASS): tasks.tabular.TabularClassifier" in text


def test_hparams_hold_model_and_data_and_best_starts_real(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    main(["fit", "--config", "tabular.yaml", "--trainer.max_epochs", "2",
          "--trainer.logger.init_args.save_dir", str(tmp_path), "--model.init_args.context_size", "4",
          "--model.init_args.embedding_dim", "8", *QUIET])  # fmt: skip
    run = next(tmp_path.rglob("hparams.yaml")).parent
    saved = yaml.safe_load((run / "hparams.yaml").read_text())
    assert saved["model"]["embedding_dim"] == 8 and saved["model"]["num_features"] == 30
    assert saved["data"]["name"] == "breast_cancer" and saved["data"]["batch_size"] == 64
    events = EventAccumulator(str(next(run.glob("events.out.tfevents.*"))))
    events.Reload()
    # the tabular task selects by val/selection (accuracy, ties to the lower loss)
    best = [e.value for e in events.Scalars("val/selection_best")]
    selection = [e.value for e in events.Scalars("val/selection")]
    assert len(best) == 2 and best[0] == selection[0]  # no NaN point first
    assert best[1] == max(selection)
    keys = set()
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            keys |= set(data.session_start_info.hparams)
    assert {"model/embedding_dim", "data/batch_size", "data/name"} <= keys


def test_lshn_sanity_check_uses_few_attractor_steps(tmp_path: Path, monkeypatch) -> None:
    cli = main(["--config", "lshn.yaml", "--trainer.logger", "false",
                "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "1",
                "--trainer.limit_val_batches", "1", *QUIET], run=False)  # fmt: skip
    from ahop.lshn import LSHN

    sanity: list[bool] = []
    steps: list[int] = []
    inner = LSHN.retrieve

    def counting(model, cues, dt, max_steps, tol):
        sanity.append(cli.trainer.sanity_checking)
        steps.append(max_steps)
        return inner(model, cues, dt=dt, max_steps=max_steps, tol=tol)

    monkeypatch.setattr(LSHN, "retrieve", counting)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert sanity and all(sanity)  # max_steps 1: only the sanity check retrieved
    hp = cli.model.hparams
    assert set(steps) == {hp.sanity_max_steps} and hp.sanity_max_steps < hp.eval_max_steps


def test_ahop_fit_and_export_from_a_folder_without_configs(tmp_path: Path, monkeypatch) -> None:
    """What the `ahop` console script runs (ahop_cli.cli:run_cli), from a folder without
    configs/: the config comes with the package."""
    monkeypatch.chdir(tmp_path)
    run_cli(["fit", "--config", "tabular.yaml", "--trainer.max_epochs", "1",
             "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
             "--model.init_args.context_size", "4", "--model.init_args.embedding_dim", "8",
             "--model.init_args.similarity", "dot", *QUIET])  # fmt: skip
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    run_cli(["export", "--ckpt_path", str(ckpt), "--out", "exported", "--format", "pt2"])
    program = torch.export.load(tmp_path / "exported" / "model.pt2").module()
    assert program(torch.zeros(3, 30)).shape == (3, 2)
    assert (tmp_path / "exported" / "preprocessor.json").is_file()


@pytest.mark.slow
def test_the_wheel_ships_the_console_script_and_configs(tmp_path: Path) -> None:
    """Build the wheel, unpack it, and run the `ahop` entry point it declares from a folder
    without configs/: `ahop fit --config tabular.yaml` then `ahop export`."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         str(ROOT), "-w", str(tmp_path / "dist")],
        check=True, cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    wheel = zipfile.ZipFile(glob.glob(str(tmp_path / "dist" / "ahop-*.whl"))[0])
    names = wheel.namelist()
    assert "ahop_cli/configs/tabular.yaml" in names and "ahop_cli/cli.py" in names
    entry_points = configparser.ConfigParser()
    entry_points.read_string(
        wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    target = entry_points["console_scripts"]["ahop"]
    assert target == "ahop_cli.cli:run_cli"
    site = tmp_path / "site"
    wheel.extractall(site)
    module, function = target.split(":")
    work = tmp_path / "work"
    work.mkdir()
    script = f"""
import sys
sys.path.insert(0, {str(site)!r})
import ahop, ahop_cli
assert ahop_cli.__file__.startswith({str(site)!r}), ahop_cli.__file__
print("version", ahop.__version__)
from {module} import {function} as ahop_command
ahop_command(["fit", "--config", "tabular.yaml", "--trainer.max_epochs", "1",
              "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
              "--model.init_args.context_size", "4", "--model.init_args.embedding_dim", "8",
              "--trainer.enable_progress_bar", "false"])
import glob
ckpt = glob.glob("runs/**/last.ckpt", recursive=True)[0]
ahop_command(["export", "--ckpt_path", ckpt, "--out", "exported", "--format", "pt2"])
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=work, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "version " in done.stdout
    assert (work / "exported" / "model.pt2").is_file()
    assert (work / "exported" / "preprocessor.json").is_file()
    program = torch.export.load(work / "exported" / "model.pt2").module()
    assert program(torch.zeros(3, 30)).shape == (3, 2)

"""Run folders of ``ahop cv`` / ``ahop search``: a fresh folder per invocation, atomic JSON files,
fold claims shared by several worker processes, and the checks of ``--resume``."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import secrets
import socket
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ahop_cli.cv.protocol import FoldResult, FoldSpec, Protocol


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """A fresh folder ``<output_dir>/<name>-<date>-<time>-<random>``; never an existing one."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    while True:
        path = root / f"{name}-{stamp}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # same second and same random suffix: draw again
            continue


def run_name(args: Sequence[str]) -> str:
    """The run folder's name: the stem of the last ``--config`` in ``args`` (else ``cv``)."""
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    configs += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    return Path(configs[-1]).stem if configs else "cv"


def write_json(path: Path, payload: Any) -> None:
    """Write atomically, so an interrupted run never leaves half a result behind."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)


def result_path(run_dir: Path, spec: FoldSpec) -> Path:
    """Where fold ``spec`` of the run keeps its ``result.json``."""
    return run_dir / "folds" / spec.key / "result.json"


def load_result(path: Path) -> FoldResult:
    """A fold's ``result.json``."""
    return FoldResult(**json.loads(path.read_text()))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def claim(fold_dir: Path) -> Iterator[bool]:
    """Claim a fold for this process (a ``claim`` file; stale claims of dead local processes are
    taken over). Yields False when another live worker holds it."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    path = fold_dir / "claim"
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            alive = holder.get("host") != me["host"] or _pid_alive(int(holder.get("pid", -1)))
            if alive and holder:
                yield False
                return
            path.unlink(missing_ok=True)  # a crashed worker's claim
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)
        return
    yield False


def new_run(
    args: Sequence[str], protocol: Protocol, plan: Sequence[FoldSpec], output_dir: str | Path
) -> Path:
    """A new run folder with its ``run.json`` (arguments, protocol, fold plan)."""
    run_dir = new_run_dir(output_dir, run_name(args))
    payload = {"args": list(args), "protocol": asdict(protocol), "folds": [s.key for s in plan]}
    write_json(run_dir / "run.json", payload)
    return run_dir


def check_resume(
    run_dir: Path, args: Sequence[str], protocol: Protocol | None
) -> tuple[list[str], Protocol]:
    """The arguments and protocol of run folder ``run_dir`` (``args`` / ``protocol``, when given,
    must be the ones it was started with)."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"--resume {run_dir}: no run.json there (not an ahop cv run folder)"
        )
    saved = json.loads(path.read_text())
    saved_protocol = Protocol(**saved["protocol"])
    if args and list(args) != saved["args"]:
        raise ValueError(
            f"--resume {run_dir}: it was started with other arguments {saved['args']}; "
            "resume without arguments, or start a new run"
        )
    if protocol is not None and protocol.selection is None:  # the task's default: the run's
        protocol = replace(protocol, selection=saved_protocol.selection)
    if protocol is not None and protocol != saved_protocol:
        raise ValueError(
            f"--resume {run_dir}: it was started with another protocol {saved['protocol']}"
        )
    return list(saved["args"]), saved_protocol

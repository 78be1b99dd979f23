"""The commands in README.md and docs/*.md run from a fresh clone as written: no absolute paths
of one machine (``/work/...``, ``/tmp/...``, home folders) and no wrappers that exist only there
(a CPU lock, a slot script)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

#: an absolute path into a machine's own folders (a URL's path is preceded by its host name)
ABSOLUTE = re.compile(r"(?<![\w.~:/-])/(?:work|tmp|home|root|Users|mnt|scratch|opt|var|srv)/\S*")
#: commands of the development machines that a user does not have
WRAPPERS = re.compile(r"\b(?:flock|cpuslot|taskset|srun)\b")


def machine_specific(text: str) -> list[str]:
    """``line: match`` of every absolute machine path or machine-only wrapper in ``text``."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        found += [f"{number}: {m.group(0)}" for m in ABSOLUTE.finditer(line)]
        found += [f"{number}: {m.group(0)}" for m in WRAPPERS.finditer(line)]
    return found


def test_the_docs_are_there() -> None:
    names = {path.name for path in DOCS}
    assert {"README.md", "results.md", "results_retrieval.md", "results_lshn.md"} <= names


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_no_machine_specific_paths_or_wrappers(path: Path) -> None:
    assert machine_specific(path.read_text()) == []


@pytest.mark.parametrize(
    ("text", "hits"),
    [
        ("flock /tmp/cpu.lock python benchmarks/lshn.py", 2),
        ("/work/cpuslot python benchmarks/retrieval.py paper", 2),  # the path and the wrapper
        ("see /home/me/data and /root/x", 2),
        ("--data_dir ../shared/data and https://example.org/home/page", 0),
        ("`benchmarks/out/tmp/` and runs/tabular/version_0", 0),
    ],
)
def test_the_scan_finds_what_it_should(text: str, hits: int) -> None:
    assert len(machine_specific(text)) == hits

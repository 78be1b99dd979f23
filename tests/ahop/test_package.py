"""The core library stands alone: importable without Lightning, usable like torch.nn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ahop

PACKAGE = Path(ahop.__file__).parent


def test_importing_ahop_loads_no_lightning() -> None:
    code = (
        "import sys, ahop\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'lightning', 'pytorch_lightning', 'torchmetrics'})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)


def test_no_module_in_ahop_imports_lightning() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "import lightning" not in text and "from lightning" not in text, path


def test_public_names_resolve() -> None:
    for name in ahop.__all__:
        assert getattr(ahop, name) is not None, name

"""The Lightning the CLI runs on: inside pyproject's range, and with the private LightningCLI
methods that :mod:`tasks.lightning_compat` overrides (names and parameters)."""

from __future__ import annotations

import inspect
from importlib.metadata import version
from pathlib import Path

import pytest
from lightning.pytorch.cli import LightningCLI
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ahop_cli.lightning_cli import AhopCLI
from tasks.lightning_compat import LIGHTNING_CLI_PRIVATE_ATTRIBUTES, LIGHTNING_CLI_PRIVATE_METHODS

tomllib = pytest.importorskip("tomllib")

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def dependency_range(pyproject: str, name: str) -> SpecifierSet:
    """The version range of dependency ``name`` in a pyproject.toml text."""
    for entry in tomllib.loads(pyproject)["project"]["dependencies"]:
        requirement = Requirement(entry)
        if requirement.name == name:
            return requirement.specifier
    raise KeyError(f"{name} is not a dependency")


def test_installed_lightning_is_in_pyprojects_range() -> None:
    allowed = dependency_range(PYPROJECT.read_text(), "lightning")
    assert Version(version("lightning")) in allowed, (version("lightning"), str(allowed))


def test_the_range_has_an_upper_bound_it_enforces() -> None:
    allowed = dependency_range(PYPROJECT.read_text(), "lightning")
    assert any(spec.operator in ("<", "<=", "~=", "==") for spec in allowed)
    assert Version("99.0") not in allowed and Version("2.4.0") in allowed
    toy = dependency_range('[project]\ndependencies = ["lightning>=2.4,<2.6"]\n', "lightning")
    assert Version("2.6.6") not in toy  # what the first test reports for a too-new Lightning


@pytest.mark.parametrize(
    "where", list(LIGHTNING_CLI_PRIVATE_METHODS), ids=lambda w: f"{w[0].__name__}.{w[1]}"
)
def test_the_overridden_private_methods_exist(where: tuple[type, str]) -> None:
    klass, name = where
    method = getattr(klass, name, None)
    assert callable(method), f"{klass.__name__}.{name} is gone: update tasks/lightning_compat.py"
    parameters = tuple(inspect.signature(method).parameters)
    assert parameters == LIGHTNING_CLI_PRIVATE_METHODS[where]


def test_the_private_attributes_exist() -> None:
    for klass, names in LIGHTNING_CLI_PRIVATE_ATTRIBUTES.items():
        instance = klass()
        for name in names:
            assert hasattr(instance, name), f"{klass.__name__}().{name} is gone"


def test_the_cli_overrides_no_other_private_lightning_method() -> None:
    private = {
        name
        for klass in AhopCLI.__mro__
        if klass.__module__.startswith(("ahop_cli", "tasks"))
        for name in vars(klass)
        if name.startswith("_") and not name.startswith("__") and hasattr(LightningCLI, name)
    }
    assert private == {
        name for klass, name in LIGHTNING_CLI_PRIVATE_METHODS if klass is LightningCLI
    }

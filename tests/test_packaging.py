"""What `pip install .` ships: every package of the tree and its data files (migrations, schema).

The package list in pyproject.toml is explicit, so a new package (agent/store, agent/config) that is
not listed works from a checkout and the editable install, and breaks only in a real install.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_of_the_tree_is_listed() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("agent", "checks", "actions")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found == listed


def test_data_files_are_shipped() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "migrations/*.sql" in data["agent.store"] and "schemas/*.json" in data["agent"]

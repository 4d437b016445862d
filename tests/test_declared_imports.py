"""Every third-party module the code imports is a declared dependency of the project.

An undeclared import works only while some other package happens to pull it in
(habluetooth once came with bthome-ble): the next release of that package may drop it,
and a licence check of the declared dependencies would not see it.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("daemon", "config", "drivers")


def imported_top_levels(folder: Path) -> dict[str, set[str]]:
    """Top-level module names imported (absolutely) by the files under `folder`, and by whom."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(
                    str(path.relative_to(folder.parent))
                )
    return found


def third_party(found: dict[str, set[str]]) -> dict[str, set[str]]:
    ours = {"fleet", "__future__", *LAYERS}
    return {
        name: users
        for name, users in found.items()
        if name not in sys.stdlib_module_names and name not in ours
    }


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}


def test_every_third_party_import_is_declared() -> None:
    distributions = md.packages_distributions()
    wanted = declared()
    undeclared = []
    for layer in LAYERS:
        for module, users in third_party(imported_top_levels(ROOT / layer)).items():
            owners = {canonicalize_name(d) for d in distributions.get(module, [])}
            if not owners & wanted:
                undeclared.append(f"{module} ({', '.join(sorted(owners)) or '?'}): {sorted(users)}")
    assert undeclared == []


def test_the_check_sees_an_undeclared_import(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "import json\nfrom hypothesis import given\nimport bleak\nfrom fleet.drivers import base\n"
    )
    assert third_party(imported_top_levels(tmp_path)).keys() == {"hypothesis", "bleak"}
    owners = md.packages_distributions()
    assert [canonicalize_name(o) for o in owners["hypothesis"]] == ["hypothesis"]
    # Installed (a dev tool) but not a runtime dependency: importing it from the code is the error.
    assert "hypothesis" not in declared()
    assert "bleak" in declared()

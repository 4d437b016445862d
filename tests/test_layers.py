"""The layer contracts bite: a copy of the package with a deliberate violation fails them.

The contracts live in pyproject.toml ([tool.importlinter]) and run as their own step of
scripts/test (`lint-imports`). Here each one is run on a copy of the package tree, kept on
the unmodified copy and broken by one deliberately added import, so a contract that no
longer matches anything (a renamed module, a typo) cannot pass unnoticed.

import-linter's `acyclic_siblings` contract sees a cycle between the children of a
package, at every depth, but not one that runs through a package's own `__init__`
(`fleet.daemon.wire` importing `.topics` while `.topics` imports a name re-exported
by `fleet.daemon.wire`); `package_init_cycles` below covers exactly that gap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grimp
import pytest

pytestmark = pytest.mark.integration  # runs lint-imports on copies of the tree

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = ("daemon", "config", "drivers")


def contract_names() -> dict[str, str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c["name"] for c in config["contracts"]}


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every set of modules that import each other round a loop (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def enter(module: str) -> tuple[str, Iterator[str]]:
        index[module] = low[module] = len(index)
        stack.append(module)
        return module, iter(sorted(graph.find_modules_directly_imported_by(module)))

    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [enter(start)]
        while work:
            module, imported = work[-1]
            for other in imported:
                if other not in index:
                    work.append(enter(other))
                    break
                if other in stack:
                    low[module] = min(low[module], index[other])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    at = stack.index(module)
                    component, stack[at:] = stack[at:], []
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def package_init_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The cycles that run through the `__init__` of the package holding all their modules.

    Any other cycle has its modules in two or more children of their deepest common
    package, which `acyclic_siblings` reports; these it cannot see.
    """
    return [
        cycle
        for cycle in cycles(graph)
        if any(all(m == top or m.startswith(f"{top}.") for m in cycle) for top in cycle)
    ]


def copy_tree(dest: Path) -> Path:
    """The three folders, fleet/ with its links, and pyproject.toml (the contracts)."""
    for layer in LAYERS:
        shutil.copytree(ROOT / layer, dest / layer, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "fleet").mkdir()
    shutil.copy(ROOT / "fleet" / "__init__.py", dest / "fleet" / "__init__.py")
    for layer in LAYERS:
        (dest / "fleet" / layer).symlink_to(Path("..") / layer)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def a_module(root: Path, layer: str) -> Path:
    """A plain module of the layer (not a package's __init__), the same one every run."""
    return min(p for p in (root / layer).rglob("*.py") if p.name != "__init__.py")


def dotted(root: Path, path: Path) -> str:
    return "fleet." + ".".join(path.relative_to(root).with_suffix("").parts)


def add_violations(root: Path) -> dict[str, list[str]]:
    """One deliberate breach of each rule; per contract, the imports its report must name."""
    drivers, config, daemon = (a_module(root, layer) for layer in ("drivers", "config", "daemon"))
    added = {
        # Inside a function: imports that run late count as well.
        drivers: "def _upward() -> None:\n    import fleet.daemon\n    import fleet.config\n",
        config: "import fleet.daemon\nimport paho.mqtt.client\nimport bthome_ble\n",
        daemon: "import paho.mqtt.client\nimport bleak\nimport serial\n",
    }
    for path, text in added.items():
        path.write_text(path.read_text() + "\n# deliberate, by tests/test_layers.py\n" + text)
    (root / "drivers" / "cycle_a.py").write_text("import fleet.drivers.cycle_b\n")
    (root / "drivers" / "cycle_b.py").write_text(
        "def late() -> None:\n    import fleet.drivers.cycle_a\n"
    )
    package = root / "drivers" / "init_cycle"
    package.mkdir()
    (package / "__init__.py").write_text("from fleet.drivers.init_cycle.part import VALUE\n")
    (package / "part.py").write_text("import fleet.drivers.init_cycle\n\nVALUE = 1\n")
    d, c, m = dotted(root, drivers), dotted(root, config), dotted(root, daemon)
    return {
        "layers": [f"{d} -> fleet.daemon", f"{d} -> fleet.config", f"{c} -> fleet.daemon"],
        "paho-in-mqtt": [f"{c} -> paho", f"{m} -> paho"],
        "devices-in-drivers": [f"{c} -> bthome_ble", f"{m} -> bleak", f"{m} -> serial"],
        "no-cycles": ["No cycles are allowed in fleet.drivers.", "- .cycle_"],  # either way round
    }


@dataclass(frozen=True)
class Checked:
    lint: subprocess.CompletedProcess[str]  # lint-imports, every contract
    init_cycles: subprocess.CompletedProcess[str]  # this file as a script: package_init_cycles


def check(root: Path) -> Checked:
    """Both checks on a copy, each in its own interpreter with the copy's fleet first on the path.

    grimp finds `fleet` by import, and this interpreter has already imported the checkout's.
    """
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "250", "NO_COLOR": "1"}

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=120
        )

    return Checked(
        lint=run(str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")),
        init_cycles=run(sys.executable, __file__, "--init-cycles"),
    )


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Checked:
    return check(copy_tree(tmp_path_factory.mktemp("clean")))


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Checked, dict[str, list[str]]]:
    root = copy_tree(tmp_path_factory.mktemp("broken"))
    expected = add_violations(root)
    return check(root), expected


@pytest.mark.parametrize("contract", sorted(contract_names()))
def test_each_contract_is_kept_by_the_unmodified_copy(clean: Checked, contract: str) -> None:
    assert f"{contract_names()[contract]} KEPT" in clean.lint.stdout, clean.lint.stdout
    assert clean.lint.returncode == 0, clean.lint.stdout + clean.lint.stderr


@pytest.mark.parametrize("contract", sorted(contract_names()))
def test_each_contract_fails_on_its_deliberate_breach(
    broken: tuple[Checked, dict[str, list[str]]], contract: str
) -> None:
    # The imports named exist only in the copy: lint-imports read it, not the checkout.
    checked, expected = broken
    assert checked.lint.returncode == 1, checked.lint.stdout + checked.lint.stderr
    assert f"{contract_names()[contract]} BROKEN" in checked.lint.stdout, checked.lint.stdout
    report = checked.lint.stdout.split(f"\n{contract_names()[contract]}\n-", 1)[1]
    for name in expected[contract]:
        assert name in report, report


def test_no_cycle_runs_through_a_package_init() -> None:
    found = package_init_cycles(grimp.build_graph("fleet", cache_dir=None))
    assert found == [], f"import cycles through a package's __init__: {found}"


def test_a_module_importing_its_own_package_back_is_found(
    clean: Checked, broken: tuple[Checked, dict[str, list[str]]]
) -> None:
    assert (clean.init_cycles.returncode, clean.init_cycles.stdout) == (0, ""), clean.init_cycles
    found = broken[0].init_cycles
    assert found.returncode == 1, found.stderr
    # Only that one: the sibling cycle is the contract's to report, not this check's...
    assert found.stdout.split() == ["fleet.drivers.init_cycle", "fleet.drivers.init_cycle.part"]
    # ...and this one the contract cannot see.
    assert "init_cycle" not in broken[0].lint.stdout


if __name__ == "__main__" and sys.argv[1:] == ["--init-cycles"]:
    found = package_init_cycles(grimp.build_graph("fleet", cache_dir=None))
    for cycle in found:
        print(" ".join(cycle))
    sys.exit(1 if found else 0)

"""The wheel built from the checkout holds one top-level package, `fleet`.

`daemon`, `config` and `drivers` are generic names (python-daemon installs
`daemon`); installing them bare would break, or be broken by, other packages.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.integration]  # builds a wheel with pip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: a build writes build/ and *.egg-info beside the sources.
    src = out / "src"
    # The tracked files only: what a clean clone would build.
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], check=True, capture_output=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        rel = Path(name.decode())
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        origin = ROOT / rel
        if origin.is_symlink():
            target.symlink_to(origin.readlink())
        elif origin.is_file():
            target.write_bytes(origin.read_bytes())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_has_one_top_level_package_fleet(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"fleet"}


def test_the_wheel_holds_every_module_of_the_three_layers(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for layer in ("daemon", "config", "drivers"):
        for source in (ROOT / layer).rglob("*.py"):
            assert f"fleet/{source.relative_to(ROOT).as_posix()}" in names
    assert "fleet/config/examples/fleet.toml" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fleet = fleet.daemon.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()

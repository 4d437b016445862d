"""Small modules with one job: none of the product's modules grows past 400 lines."""

from __future__ import annotations

from tests.harness.paths import REPO

LIMIT = 400


def test_no_module_over_400_lines() -> None:
    sizes = {
        path.relative_to(REPO).as_posix(): len(path.read_text().splitlines())
        for folder in ("daemon", "config", "drivers", "grafana")
        for path in (REPO / folder).rglob("*.py")
    }
    assert len(sizes) > 50  # the tree was found
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}

"""Every runtime dependency's licence lets fleet-telemetry be distributed under Apache-2.0.

The closure is walked from the dependencies declared in pyproject.toml (the checkout's
truth, even before `pip install -e` has refreshed the installed metadata) through the
installed packages' own metadata, with their environment markers evaluated here: on the
Linux machines the project runs on. GPL and AGPL are refused (they would put the
combination under their terms); LGPL is allowed: we import the unmodified library from its
own installed files, the dynamic linking the LGPL permits, and never ship a changed copy.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt, the text every Apache-2.0
# project ships unchanged.
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"

# GPL or AGPL, any version, spelled as an SPDX id (GPL-3.0-only, AGPL-3.0-or-later, GPL-2.0+)
# or in prose (GPLv3, "GNU General Public License", "GNU Affero ..."); never LGPL, whose
# "L" / "Lesser" / "Library" keeps these from matching.
_SPDX_STRONG_COPYLEFT = re.compile(r"A?GPL-", re.IGNORECASE)
_PROSE_STRONG_COPYLEFT = re.compile(r"\bA?GPL|\bGNU (Affero )?General Public", re.IGNORECASE)
_SPDX_TOKEN = re.compile(r"\(|\)|[^\s()]+")


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    licence: str  # as the package declares it: expression, License field or classifiers
    strong_copyleft: bool
    chain: tuple[str, ...]  # fleet-telemetry -> ... -> name


def _expression_is_strong_copyleft(expression: str) -> bool:
    """An SPDX expression forces GPL/AGPL only if no `OR` alternative avoids it."""
    tokens = _SPDX_TOKEN.findall(expression)
    position = 0

    def either() -> bool:  # a OR b: forced only if both are
        nonlocal position
        forced = both()
        while position < len(tokens) and tokens[position].upper() == "OR":
            position += 1
            forced = both() and forced
        return forced

    def both() -> bool:  # a AND b: forced if either is
        nonlocal position
        forced = single()
        while position < len(tokens) and tokens[position].upper() == "AND":
            position += 1
            forced = single() or forced
        return forced

    def single() -> bool:
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "(":
            forced = either()
            position += 1  # the closing parenthesis
            return forced
        if position < len(tokens) and tokens[position].upper() == "WITH":
            position += 2  # an exception loosens, never lifts, the copyleft: still refused
        return bool(_SPDX_STRONG_COPYLEFT.match(token))

    return either()


def classify(expression: str | None, field: str | None, classifiers: list[str]) -> tuple[str, bool]:
    """(the package's licence as it names it, whether that is GPL/AGPL).

    PEP 639's License-Expression is authoritative when present. Otherwise the free-text
    License field (when it is a name, not a whole licence text) and the licence
    classifiers are all taken at their word: any of them naming GPL/AGPL refuses the
    package, for a human to look at.
    """
    if expression:
        return expression, _expression_is_strong_copyleft(expression)
    named = field.strip() if field and "\n" not in field.strip() and len(field) <= 80 else ""
    classified = [
        c.split(" :: ")[-1]
        for c in classifiers
        if c.startswith("License :: ") and c.split(" :: ")[-1] not in ("OSI Approved", "UNKNOWN")
    ]
    refused = any(_PROSE_STRONG_COPYLEFT.search(s) for s in [named, *classified])
    return named or "; ".join(classified), refused


def _first(meta: md.PackageMetadata, field: str) -> str | None:
    values = meta.get_all(field)
    return values[0] if values else None


def runtime_closure() -> list[Dependency]:
    chains: dict[str, tuple[str, ...]] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[Requirement, tuple[str, ...]]] = [
        (Requirement(r), ("fleet-telemetry",)) for r in PROJECT["dependencies"]
    ]
    missing = []
    while todo:
        requirement, via = todo.pop()
        name = canonicalize_name(requirement.name)
        if (name, frozenset(requirement.extras)) in seen:
            continue
        seen.add((name, frozenset(requirement.extras)))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing.append(" -> ".join((*via, name)))
            continue
        chain = chains.setdefault(name, (*via, name))
        for text in dist.requires or []:
            sub = Requirement(text)
            extras = requirement.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append((sub, chain))
    assert not missing, f"not installed (run scripts/setup): {missing}"
    found = []
    for dist_name, chain in sorted(chains.items()):
        meta = md.metadata(dist_name)
        licence, copyleft = classify(
            _first(meta, "License-Expression"),
            _first(meta, "License"),
            meta.get_all("Classifier") or [],
        )
        found.append(Dependency(dist_name, meta["Version"], licence, copyleft, chain))
    return found


@pytest.fixture(scope="module")
def closure() -> list[Dependency]:
    return runtime_closure()


def test_no_runtime_dependency_is_gpl_or_agpl(closure: list[Dependency]) -> None:
    refused = [
        f"{d.name} {d.version}: {d.licence}, via {' -> '.join(d.chain)}"
        for d in closure
        if d.strong_copyleft
    ]
    assert not refused, "GPL/AGPL in the runtime dependencies:\n" + "\n".join(refused)


def test_every_runtime_dependency_states_a_licence(closure: list[Dependency]) -> None:
    silent = [f"{d.name} {d.version}" for d in closure if not d.licence]
    assert not silent, f"no licence in the metadata (check by hand): {silent}"


def test_the_readme_lists_every_runtime_dependency_with_its_licence(
    closure: list[Dependency],
) -> None:
    section = (ROOT / "README.md").read_text().split("\n## Licence\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \|$", section, re.MULTILINE)
    table = "\n".join(f"| `{d.name}` | {d.licence} |" for d in closure)
    assert dict(rows) == {d.name: d.licence for d in closure}, f"the table should be:\n{table}"


def test_the_project_is_apache_2_0() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_0_SHA256


@pytest.mark.parametrize(
    ("expression", "field", "classifiers", "refused"),
    [
        ("GPL-3.0-only", None, [], True),
        ("AGPL-3.0-or-later", None, [], True),
        ("GPL-2.0+", None, [], True),
        ("MIT AND GPL-2.0-only", None, [], True),
        ("GPL-2.0-only WITH Classpath-exception-2.0", None, [], True),
        ("(MIT OR GPL-3.0-only) AND AGPL-3.0-only", None, [], True),
        ("LGPL-2.1-or-later", None, [], False),
        ("GPL-3.0-only OR MIT", None, [], False),
        ("EPL-2.0 OR BSD-3-Clause", None, [], False),
        ("(MIT OR GPL-3.0-only) AND Apache-2.0", None, [], False),
        # A License-Expression overrides stale classifiers (PEP 639).
        ("MIT", None, ["License :: OSI Approved :: GNU General Public License v3 (GPLv3)"], False),
        (None, "GPLv3", [], True),
        (None, "AGPL", [], True),
        (None, "LGPLv3+", [], False),
        (None, "MIT", ["License :: OSI Approved :: GNU Affero General Public License v3"], True),
        (None, None, ["License :: OSI Approved :: GNU General Public License (GPL)"], True),
        (
            None,
            None,
            ["License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)"],
            False,
        ),
        (
            None,
            None,
            ["License :: OSI Approved :: GNU Library or Lesser General Public License (LGPL)"],
            False,
        ),
        (None, "BSD", ["License :: OSI Approved :: BSD License"], False),
    ],
)
def test_the_check_tells_gpl_from_lgpl_and_choices(
    expression: str | None, field: str | None, classifiers: list[str], refused: bool
) -> None:
    assert classify(expression, field, classifiers)[1] is refused


def test_a_whole_licence_text_in_the_license_field_is_left_to_the_classifiers() -> None:
    text = "MIT License\n\nCopyright (c) someone\n\nPermission is hereby granted..."
    assert classify(None, text, ["License :: OSI Approved :: MIT License"]) == (
        "MIT License",
        False,
    )
    assert classify(None, text, []) == ("", False)

"""The committed dashboards and provisioning files are exactly what grafana/generate.py writes,
and the provisioning YAML it writes reads back as the data it was written from."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.grafana.dashboards import REPO

pytestmark = pytest.mark.integration  # runs the generator as a process

GRAFANA = REPO / "grafana"
GENERATED = ("dashboards", "provisioning")


def _tree(base: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(base)): p.read_bytes()
        for folder in GENERATED
        for p in sorted((base / folder).rglob("*"))
        if p.is_file()
    }


def test_regenerating_reproduces_the_committed_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--out", str(tmp_path)],
        cwd=tmp_path,  # the generator must not depend on the working directory
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    generated, committed = _tree(tmp_path), _tree(GRAFANA)
    assert sorted(generated) == sorted(committed), "generated and committed file sets differ"
    assert len(committed) == 7  # four dashboards, three provisioning files
    for name, text in generated.items():
        if text != committed[name]:
            diff = difflib.unified_diff(
                committed[name].decode().splitlines(),
                text.decode().splitlines(),
                f"committed {name}",
                f"generated {name}",
                lineterm="",
            )
            pytest.fail(
                f"{name} differs from what grafana/generate.py writes (edit grafana/gen/, "
                "run `python grafana/generate.py`):\n" + "\n".join(list(diff)[:40])
            )


@pytest.fixture
def gen(monkeypatch: pytest.MonkeyPatch) -> None:
    # The generator is a dev tool beside the package, imported as the script imports it.
    monkeypatch.syspath_prepend(str(GRAFANA))


@pytest.mark.usefixtures("gen")
def test_provisioning_yaml_reads_back_as_its_data() -> None:
    from gen import provisioning

    texts = provisioning.files()
    data = {
        "datasources/fleet-influxdb.yaml": provisioning.datasource(),
        "dashboards/fleet.yaml": provisioning.dashboards(),
        "alerting/low-battery.yaml": provisioning.low_battery(),
    }
    assert sorted(texts) == sorted(data)
    for path, text in texts.items():
        assert yaml.safe_load(text) == data[path], path
        assert text.startswith("# "), f"{path}: the header comment is missing"


PLAIN = ["${FLEET_INFLUX_URL}", "10s", "Fleet (InfluxDB)", "/var/lib/x", "it's", "a:b", "x#y"]
QUOTED = [
    "", " x", "x ", "x:", "a: b", "x #y", "#x", "-x", "- x", "?x", "*x", "&x", "!x", "|x", ">x",
    "'x'", '"x"', "%x", "@x", "`x", "[x]", "{x}", "{{ $labels.x }}", "x {{ y }}",
    "yes", "No", "TRUE", "off", "On", "y", "n", "null", "Null", "~",
    "10", "-1", "+1", "1.5", "1e3", "0x1F", "0o17", "1_000", "1:20", "2001-12-14", ".inf",
    "-.INF", ".nan", ".5",
]  # fmt: skip


@pytest.mark.usefixtures("gen")
@pytest.mark.parametrize("text", PLAIN + QUOTED)
def test_yaml_scalars_read_back_as_the_same_string(text: str) -> None:
    from gen.yamltext import Flow, document

    written = document("", {"k": text, "f": Flow({"k": text}), "l": [text]})
    assert yaml.safe_load(written) == {"k": text, "f": {"k": text}, "l": [text]}, written


@pytest.mark.usefixtures("gen")
@pytest.mark.parametrize("text", PLAIN)
def test_plain_strings_stay_plain(text: str) -> None:
    from gen.yamltext import scalar

    assert scalar(text) == text


@pytest.mark.usefixtures("gen")
@pytest.mark.parametrize("text", QUOTED)
def test_ambiguous_strings_are_quoted(text: str) -> None:
    from gen.yamltext import scalar

    assert scalar(text) == "'" + text.replace("'", "''") + "'"


@pytest.mark.usefixtures("gen")
def test_yaml_writer_refuses_what_it_cannot_write() -> None:
    from gen.yamltext import document

    with pytest.raises(ValueError, match="line break"):
        document("", {"k": "two\nlines"})
    with pytest.raises(ValueError, match="not a plain identifier"):
        document("", {"a key": 1})
    with pytest.raises(TypeError, match="cannot write float"):
        document("", {"k": 1.5})

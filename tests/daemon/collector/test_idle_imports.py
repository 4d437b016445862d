"""apprise (~16 MB resident, ~0.2 s to import) is loaded only when a notification route has
URLs: a collector that notifies nobody does not carry it (issue 14, memory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.harness.paths import REPO

# A fresh interpreter each time: this test run's own sys.modules has apprise from other tests.
_PROBE = """
import json, sys
from pathlib import Path
from fleet.config import load_settings
from fleet.daemon.collector.app import Collector

collector = Collector(load_settings(Path(sys.argv[1]), environ={}))
assert collector.alerts is not None
print(json.dumps({
    "apprise": "apprise" in sys.modules,
    "routes": collector.alerts.notifier.routes(),
}))
"""


def _probe(tmp_path: Path, notify: str) -> dict[str, object]:
    # Nothing listens on port 9: the collector is built, never started.
    config = tmp_path / "fleet.toml"
    config.write_text(
        f"""
[site]
id = "allingtown"
name = "Allingtown"

[mqtt]
host = "127.0.0.1"
port = 9

[influx]
url = "http://127.0.0.1:9"
database = "fleet"

[spool]
path = "{tmp_path / "spool.sqlite"}"

[http]
bind = "127.0.0.1:0"

[alerts]
state_path = "{tmp_path / "alerts.sqlite"}"

[alerts.notify]
{notify}
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(config)],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result: dict[str, object] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def test_a_collector_without_notification_urls_does_not_import_apprise(tmp_path: Path) -> None:
    result = _probe(tmp_path, "")
    assert result == {
        "apprise": False,
        "routes": {"warning": [], "critical": [], "escalation": []},
    }


def test_a_route_with_a_url_loads_apprise_and_keeps_its_url(tmp_path: Path) -> None:
    result = _probe(tmp_path, 'critical = ["json://127.0.0.1:9/alerts"]')
    assert result["apprise"] is True
    routes = result["routes"]
    assert isinstance(routes, dict)
    assert routes["warning"] == []
    assert routes["escalation"] == []
    assert len(routes["critical"]) == 1  # its label: the URL redacted (a secret)

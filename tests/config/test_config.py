"""Configuration: sources and their precedence, error lines, examples, secrets, check-config."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from fleet.config import AgentSettings, ConfigError, FleetSettings, load_settings
from fleet.config.errors import _unwrap
from fleet.daemon.cli_support import EX_CONFIG
from tests.harness.paths import REPO

EXAMPLES = sorted((REPO / "config" / "examples").glob("*.toml"))
SECRET_FIELDS = {("mqtt", "password"), ("influx", "token"), ("influx", "password")}

# Runs the sub-command through its own add_parser, as `fleet` does, without
# needing the other sub-commands to import.
CHECK_CONFIG = (
    "import argparse, sys\n"
    "from fleet.daemon import cmd_check_config\n"
    "parser = argparse.ArgumentParser(prog='fleet')\n"
    "cmd_check_config.add_parser(parser.add_subparsers(dest='command', required=True))\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.handler(args))\n"
)


def write(tmp_path: Path, text: str, name: str = "fleet.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path | None, environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=environ)
    return info.value.problems


def all_models(root: type[BaseModel] = FleetSettings) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        annotation = _unwrap(annotation)
        for arg in getattr(annotation, "__args__", ()):
            visit(arg)
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if is_model and annotation not in found:
            found.append(annotation)
            for field in annotation.model_fields.values():
                visit(field.annotation)

    visit(root)
    return found


def run_check_config(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("FLEET_") and k != "CREDENTIALS_DIRECTORY"
    }
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", CHECK_CONFIG, "check-config", *args],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- the models -------------------------------------------------------------------------------


def test_the_model_walk_finds_every_section() -> None:
    names = {model.__name__ for model in all_models()}
    assert names == {
        "FleetSettings",
        "SiteSettings",
        "MqttSettings",
        "MqttTls",
        "InfluxSettings",
        "SpoolSettings",
        "HttpSettings",
        "CollectorSettings",
        "DeviceConfig",
        "AgentSettings",
        "NinebotSerialConfig",
        "NinebotBleConfig",
        "BleBatteryConfig",
        "BTHomeConfig",
        "NmeaGpsConfig",
        "SegwayPtBatteryConfig",
        "AlertSettings",
        "Limits",
        "LimitsOverride",
        "Geofence",
        "NotifySettings",
        "BoardSettings",
        "KindReadiness",
        "BrokerSettings",
        "BridgeSettings",
        "BrokerCollector",
        "AgentRegistration",
    }


def test_every_field_has_a_description() -> None:
    missing = [
        f"{model.__name__}.{name}"
        for model in all_models()
        for name, field in model.model_fields.items()
        if not (field.description and field.description.strip())
    ]
    assert missing == []


def test_every_model_forbids_unknown_keys() -> None:
    assert [m.__name__ for m in all_models() if m.model_config.get("extra") != "forbid"] == []


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(environ={})
    assert settings.log_level == "INFO"
    assert settings.kinds == ["segway", "handheld"]
    assert (settings.site.id, settings.site.name) == ("allingtown", "Allingtown")
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.protocol) == (
        "localhost",
        1883,
        "5",
    )
    assert settings.mqtt.client_id == "fleet-collector"
    assert (settings.mqtt.session_expiry_s, settings.mqtt.receive_maximum) == (86400, 10000)
    assert settings.influx.url == "http://localhost:8086"
    assert (settings.influx.api, settings.influx.database, settings.influx.retention_policy) == (
        "v1",
        "fleet",
        "raw",
    )
    assert settings.influx.retention_seconds == 30 * 86400
    assert settings.spool.path == Path("/var/lib/fleet/spool.sqlite")
    assert settings.spool.max_bytes == 1_073_741_824
    assert settings.spool.fsync is True
    assert (settings.http.bind_host, settings.http.bind_port) == ("127.0.0.1", 8080)
    assert settings.collector.ingest_batch_max == 2000
    assert settings.devices == []
    assert settings.mqtt.password is None
    assert settings.influx.token is None


def test_settings_are_immutable() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValidationError):
        settings.mqtt.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("retention", "seconds"),
    [
        ("30d", 30 * 86400.0),
        ("12w", 12 * 604800.0),
        ("720h", 720 * 3600.0),
        ("1h30m", 5400.0),
        ("INF", None),
        ("inf", None),
    ],
)
def test_retention_seconds(retention: str, seconds: float | None) -> None:
    settings = load_settings(environ={"FLEET_INFLUX__RETENTION": retention})
    assert settings.influx.retention_seconds == seconds


def test_http_bind_accepts_ipv6_and_port_zero() -> None:
    settings = load_settings(environ={"FLEET_HTTP__BIND": "[::1]:0"})
    assert (settings.http.bind_host, settings.http.bind_port) == ("::1", 0)


def test_device_site_comes_from_the_registry_else_the_site(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[site]\nid = "allingtown"\n'
        '[[devices]]\nid = "sw-03"\nkind = "segway"\nsite = "westhaven"\n'
        '[[devices]]\nid = "sw-01"\nkind = "segway"\n',
    )
    settings = load_settings(path, environ={})
    assert settings.device_site("sw-03") == "westhaven"
    assert settings.device_site("sw-01") == "allingtown"
    assert settings.device_site("never-seen") == "allingtown"


# --- examples ---------------------------------------------------------------------------------


def example_env(path: Path, tmp_path: Path) -> dict[str, str]:
    """Point every *_file key of an example at a temporary file holding a known secret."""
    env: dict[str, str] = {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for section, key in sorted(SECRET_FIELDS):
        if f"{key}_file" in data.get(section, {}):
            secret = tmp_path / f"{section}.{key}"
            secret.write_text(f"{section}-{key}-value\n", encoding="utf-8")
            env[f"FLEET_{section.upper()}__{key.upper()}_FILE"] = str(secret)
    return env


def test_there_are_three_examples() -> None:
    assert [p.name for p in EXAMPLES] == [
        "agent.toml",
        "fleet.toml",
        "influx-v2.toml",
        "minimal.toml",
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads(path: Path, tmp_path: Path) -> None:
    env = example_env(path, tmp_path)
    settings = load_settings(path, environ=env)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for section, key in SECRET_FIELDS:
        secret = getattr(getattr(settings, section), key)
        if f"{key}_file" in data.get(section, {}):
            assert secret.get_secret_value() == f"{section}-{key}-value"
        else:
            assert secret is None
    assert settings.site.id == data["site"]["id"]


def test_full_example_is_the_west_haven_deployment(tmp_path: Path) -> None:
    path = REPO / "config" / "examples" / "fleet.toml"
    settings = load_settings(path, environ=example_env(path, tmp_path))
    segways = [d.id for d in settings.devices if d.kind == "segway"]
    handhelds = [d.id for d in settings.devices if d.kind == "handheld"]
    assert segways == ["sw-01", "sw-02", "sw-03", "sw-04"]
    assert handhelds == ["hh-01", "hh-02", "hh-03"]
    assert {settings.device_site(d.id) for d in settings.devices} == {"allingtown", "westhaven"}
    assert [d.owntracks for d in settings.devices if d.owntracks] == ["reyes/hh-02"]


def test_full_example_takes_the_units_credentials(tmp_path: Path) -> None:
    # As systemd/fleet-collector.service hands them over (LoadCredential=).
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt.password").write_text("mqtt-pw", encoding="utf-8")
    (credentials / "influx.token").write_text("influx-tok\n", encoding="utf-8")
    path = REPO / "config" / "examples" / "fleet.toml"
    settings = load_settings(path, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.mqtt.username == "fleet-collector"
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "mqtt-pw"
    assert settings.influx.token is not None
    assert settings.influx.token.get_secret_value() == "influx-tok"


def test_full_example_shows_every_key_with_its_default() -> None:
    text = (REPO / "config" / "examples" / "fleet.toml").read_text(encoding="utf-8")
    # The agent and its drivers are shown in their own example, agent.toml.
    agent_models = set(all_models(AgentSettings))
    agent_text = (REPO / "config" / "examples" / "agent.toml").read_text(encoding="utf-8")
    missing = []
    for model in all_models():
        shown_in = agent_text if model in agent_models else text
        for name in model.model_fields:
            key = re.compile(rf"^(# )?{re.escape(name)} = ", re.MULTILINE)
            listed = re.compile(rf"^#\s+{re.escape(name)}\s", re.MULTILINE)  # device keys
            table = re.compile(rf"^\[\[?([a-z_]+\.)?{re.escape(name)}\]", re.MULTILINE)
            if not (key.search(shown_in) or table.search(shown_in) or listed.search(shown_in)):
                missing.append(f"{model.__name__}.{name}")
    assert missing == []
    # Above the registry, every key line comes right after the comment that explains it.
    lines = text.split("[[devices]]")[0].splitlines()
    uncommented = [
        line
        for index, line in enumerate(lines)
        if re.match(r"^[a-z_]+ = ", line) and not lines[index - 1].startswith("#")
    ]
    assert uncommented == []


def test_influx_v2_example_uses_org_and_token_file(tmp_path: Path) -> None:
    path = REPO / "config" / "examples" / "influx-v2.toml"
    settings = load_settings(path, environ=example_env(path, tmp_path))
    assert settings.influx.api == "v2"
    assert settings.influx.org == "westhaven-pd"
    assert settings.influx.token is not None


# --- sources and precedence -------------------------------------------------------------------


def test_fleet_config_variable_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[mqtt]\nport = 1999\n")
    assert load_settings(environ={"FLEET_CONFIG": str(path)}).mqtt.port == 1999
    other = write(tmp_path, "[mqtt]\nport = 2999\n", "other.toml")
    # An explicit path wins over FLEET_CONFIG.
    assert load_settings(other, environ={"FLEET_CONFIG": str(path)}).mqtt.port == 2999


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[mqtt]\nhost = "broker"\nport = 1883\n[influx]\nurl = "http://db:8086/"\n'
    )
    env = {
        "FLEET_MQTT__PORT": "1884",
        "fleet_log_level": "debug",
        "FLEET_INFLUX__URL": "https://db.example:8086/",
        "FLEET_MQTT__TLS__ENABLED": "true",
        "FLEET_KINDS": '["segway", "handheld", "drone"]',
        "FLEET_DEVICES": '[{"id": "dr-01", "kind": "drone"}]',
    }
    settings = load_settings(path, environ=env)
    assert settings.mqtt.port == 1884
    assert settings.mqtt.host == "broker"  # the rest of the table stays from the file
    assert settings.log_level == "DEBUG"
    assert settings.influx.url == "https://db.example:8086"
    assert settings.mqtt.tls.enabled is True
    assert settings.kinds == ["segway", "handheld", "drone"]
    assert [(d.id, d.kind) for d in settings.devices] == [("dr-01", "drone")]


def test_unknown_top_level_variable_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="config"):
        settings = load_settings(environ={"FLEET_MQTT_PORT": "1999"})
    assert settings.mqtt.port == 1883
    assert "FLEET_MQTT_PORT" in caplog.text
    assert "FLEET_MQTT__PORT" in caplog.text


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ({"toml"}, "from-toml"),
        ({"toml", "file"}, "from-file"),
        ({"toml", "file", "credential"}, "from-credential"),
        ({"toml", "file", "credential", "env"}, "from-env"),
        ({"file", "env"}, "from-env"),
        ({"credential"}, "from-credential"),
    ],
)
def test_secret_precedence(tmp_path: Path, layers: set[str], expected: str) -> None:
    toml = '[mqtt]\nusername = "collector"\n'
    env: dict[str, str] = {}
    if "toml" in layers:
        toml += 'password = "from-toml"\n'
    if "file" in layers:
        secret = tmp_path / "mqtt-password"
        secret.write_text("from-file\n", encoding="utf-8")
        toml += f'password_file = "{secret}"\n'
    if "credential" in layers:
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "mqtt.password").write_text("from-credential\n", encoding="utf-8")
        env["CREDENTIALS_DIRECTORY"] = str(credentials)
    if "env" in layers:
        env["FLEET_MQTT__PASSWORD"] = "from-env"
    settings = load_settings(write(tmp_path, toml), environ=env)
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == expected


def test_credentials_directory_supplies_every_secret(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "mqtt.password").write_text("mqtt-secret\n", encoding="utf-8")
    (credentials / "influx.token").write_text("influx-token\r\n", encoding="utf-8")
    env = {
        "CREDENTIALS_DIRECTORY": str(credentials),
        "FLEET_MQTT__USERNAME": "collector",
        "FLEET_INFLUX__API": "v2",
        "FLEET_INFLUX__ORG": "pd",
    }
    settings = load_settings(environ=env)
    assert settings.mqtt.password is not None
    assert settings.influx.token is not None
    assert settings.mqtt.password.get_secret_value() == "mqtt-secret"
    assert settings.influx.token.get_secret_value() == "influx-token"
    assert settings.influx.password is None  # no credential file, no secret


def test_file_keys_read_the_secret_and_keep_the_path(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-123\n", encoding="utf-8")
    settings = load_settings(
        write(tmp_path, f'[influx]\napi = "v2"\norg = "pd"\ntoken_file = "{token}"\n'), environ={}
    )
    assert settings.influx.token is not None
    assert settings.influx.token.get_secret_value() == "tok-123"
    assert settings.influx.token_file == token


def test_direct_construction_uses_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("FLEET_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("FLEET_CONFIG", str(write(tmp_path, "[mqtt]\nport = 1777\n")))
    monkeypatch.setenv("FLEET_MQTT__KEEPALIVE_S", "60")
    settings = FleetSettings()
    assert (settings.mqtt.port, settings.mqtt.keepalive_s) == (1777, 60)
    monkeypatch.setenv("FLEET_MQTT__PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"mqtt\.password_file: cannot read"):
        FleetSettings()


# --- error lines ------------------------------------------------------------------------------

BROKEN = [
    pytest.param(
        "[mqtt]\nport = 70000\n",
        {},
        ["{src}: mqtt.port: Input should be less than or equal to 65535"],
        id="out-of-range",
    ),
    pytest.param(
        "[influx]\nbackfill_timeout_s = 0\n",
        {},
        ["{src}: influx.backfill_timeout_s: Input should be greater than 0"],
        id="backfill-timeout-zero",
    ),
    pytest.param(
        "[influx]\nbackfill_timeout_s = 7200\n",
        {},
        ["{src}: influx.backfill_timeout_s: Input should be less than or equal to 3600"],
        id="backfill-timeout-over-an-hour",
    ),
    pytest.param(
        '[mqtt]\nusername = "u"\npassword_fle = "/x"\n',
        {},
        ["{src}: mqtt.password_fle: unknown key; did you mean 'password_file'?"],
        id="unknown-key-suggestion",
    ),
    pytest.param(
        "zzz = 1\n[mqt]\nport = 1\n",
        {},
        ["{src}: zzz: unknown key", "{src}: mqt: unknown key; did you mean 'mqtt'?"],
        id="unknown-top-level",
    ),
    pytest.param(
        '[[devices]]\nid = "sw-01"\nkind = "segway"\n[[devices]]\nid = "hh-01"\nkind = "handheld"\n'
        '[[devices]]\nid = "x-01"\nkind = "scooter"\n',
        {},
        ["{src}: devices[2].kind: not one of the configured kinds (segway, handheld)"],
        id="unconfigured-kind",
    ),
    pytest.param(
        '[[devices]]\nid = "sw-01"\nkind = "segway"\n[[devices]]\nid = "sw-02"\nkind = "segway"\n'
        '[[devices]]\nid = "sw-01"\nkind = "segway"\n',
        {},
        ["{src}: devices[2].id: duplicate device id 'sw-01' (devices[0] and devices[2])"],
        id="duplicate-device",
    ),
    pytest.param(
        '[[devices]]\nid = "sw-01"\nkind = "segway"\n[[devices]]\nid = "sw-02"\nkind = "segway"\n'
        'site = "westhaven"\n'
        '[[agents]]\nid = "dock-a"\ndevices = ["sw-01", "sw-09"]\n'
        '[[agents]]\nid = "dock-a"\ndevices = ["sw-01", "sw-02"]\n',
        {},
        [
            "{src}: agents[0].devices[1]: 'sw-09' is not in the device registry",
            "{src}: agents[1].id: duplicate agent id (also agents[0])",
            "{src}: agents[1].devices[0]: 'sw-01' is already read by agents[0]",
            "{src}: agents[1].devices[1]: 'sw-02' belongs to site 'westhaven', the agent to "
            "'allingtown'",
        ],
        id="agents",
    ),
    pytest.param(
        "[broker]\ntls = true\ncertfile = 'broker.pem'\n",
        {},
        ["{src}: broker.keyfile: needed when broker.tls is true"],
        id="broker-tls-without-key",
    ),
    pytest.param(
        '[[devices]]\nid = "hh-01"\nkind = "handheld"\nowntracks = "amy/phone"\n'
        '[[devices]]\nid = "hh-02"\nkind = "handheld"\nowntracks = "amy/phone"\n',
        {},
        ["{src}: devices[1].owntracks: OwnTracks pair already used by devices[0]"],
        id="duplicate-owntracks",
    ),
    pytest.param(
        '[[devices]]\nkind = "segway"\n',
        {},
        ["{src}: devices[0].id: required key is missing"],
        id="missing-device-id",
    ),
    pytest.param(
        '[[devices]]\nid = "bad id"\nkind = "segway"\nowntracks = "a/b/c"\n',
        {},
        [
            "{src}: devices[0].id: must be 1-64 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            "{src}: devices[0].owntracks: must be an OwnTracks 'user/device' pair: two non-empty "
            "parts separated by one '/', without '+' or '#'",
        ],
        id="bad-ids",
    ),
    pytest.param(
        '[[devices]]\nid = "sw-01\\n"\nkind = "segway"\nowntracks = "amy/phone\\n"\n',
        {},
        [
            "{src}: devices[0].id: must be 1-64 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            "{src}: devices[0].owntracks: must be an OwnTracks 'user/device' pair: two non-empty "
            "parts separated by one '/', without '+' or '#'",
        ],
        id="trailing-newline-in-ids",
    ),
    pytest.param(
        'kinds = ["segway", "agent", "segway"]\n',
        {},
        [
            "{src}: kinds[1]: 'agent' and 'alerts' are reserved topic levels and cannot be device kinds"
        ],
        id="reserved-kind",
    ),
    pytest.param(
        'kinds = ["segway", "handheld", "segway"]\n',
        {},
        ["{src}: kinds[2]: duplicate kind (also kinds[0])"],
        id="duplicate-kind",
    ),
    pytest.param(
        '[mqtt]\npassword = "pw-value"\n',
        {},
        ["{src}: mqtt.password: set, but mqtt.username is not"],
        id="password-without-username",
    ),
    pytest.param(
        '[mqtt.tls]\ncert_file = "/etc/ssl/c.pem"\n',
        {},
        ["{src}: mqtt.tls.cert_file: set, but mqtt.tls.key_file is not"],
        id="cert-without-key",
    ),
    pytest.param(
        '[mqtt.tls]\nenabled = true\nca_file = "/nonexistent/ca.pem"\n',
        {},
        ["{src}: mqtt.tls.ca_file: no such file: /nonexistent/ca.pem"],
        id="tls-file-missing",
    ),
    pytest.param(
        '[influx]\napi = "v2"\n',
        {},
        [
            "{src}: influx.org: required when influx.api is 'v2'",
            "{src}: influx.token: required when influx.api is 'v2'",
        ],
        id="v2-needs-org-and-token",
    ),
    pytest.param(
        '[influx]\nretention = "30 days"\n',
        {},
        ["{src}: influx.retention: must be an InfluxQL duration such as 30d, 12w or 720h, or INF"],
        id="bad-retention",
    ),
    pytest.param(
        '[influx]\nretention = "30m"\n',
        {},
        ["{src}: influx.retention: must be at least 1h (InfluxDB's minimum), or INF"],
        id="short-retention",
    ),
    pytest.param(
        '[influx]\nurl = "http://admin:pw-in-url@db:8086"\n',
        {},
        [
            "{src}: influx.url: must not contain credentials; use token/token_file or "
            "username/password_file"
        ],
        id="credentials-in-url",
    ),
    pytest.param(
        '[influx]\nurl = "ftp://db"\n',
        {},
        ["{src}: influx.url: must be an http:// or https:// URL with a host"],
        id="bad-url-scheme",
    ),
    pytest.param(
        '[http]\nbind = "8080"\n',
        {},
        ["{src}: http.bind: must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080"],
        id="bad-bind",
    ),
    pytest.param(
        "[mqtt]\nprotocol = 4\n[influx]\nwrite_backoff_initial_s = 10\nwrite_backoff_max_s = 1\n",
        {},
        [
            "{src}: mqtt.protocol: Input should be '5' or '3.1.1'",
            "{src}: influx.write_backoff_max_s: must be at least write_backoff_initial_s",
        ],
        id="literal-and-cross-field",
    ),
    pytest.param(
        "[alerts.notify]\ndelivery_backoff_initial_s = 60\ndelivery_backoff_max_s = 30\n",
        {},
        [
            "{src}: alerts.notify.delivery_backoff_max_s: must be at least delivery_backoff_initial_s"
        ],
        id="backoff-pair-out-of-order",
    ),
    pytest.param(
        "[influx]\nbackoff_initial_s = 1\nbackoff_max_s = 2\n"
        "[alerts.notify]\nretry_initial_s = 3\nretry_max_s = 4\n",
        {},
        [
            "{src}: influx.backoff_initial_s: renamed to influx.write_backoff_initial_s",
            "{src}: influx.backoff_max_s: renamed to influx.write_backoff_max_s",
            "{src}: alerts.notify.retry_initial_s: renamed to alerts.notify.delivery_backoff_initial_s",
            "{src}: alerts.notify.retry_max_s: renamed to alerts.notify.delivery_backoff_max_s",
        ],
        id="renamed-keys",
    ),
    pytest.param(
        "",
        {"FLEET_ALERTS__NOTIFY__RETRY_MAX_S": "60"},
        [
            "environment FLEET_ALERTS__NOTIFY__RETRY_MAX_S: alerts.notify.retry_max_s: "
            "renamed to alerts.notify.delivery_backoff_max_s"
        ],
        id="env-renamed-key",
    ),
    pytest.param(
        "[mqtt]\nport = 1883\n",
        {"FLEET_MQTT__PORT": "not-a-port"},
        [
            "environment FLEET_MQTT__PORT: mqtt.port: Input should be a valid integer, "
            "unable to parse string as an integer"
        ],
        id="env-bad-value",
    ),
    pytest.param(
        "",
        {"FLEET_MQTT__PROT": "1884"},
        ["environment FLEET_MQTT__PROT: mqtt.prot: unknown key; did you mean 'port'?"],
        id="env-unknown-key",
    ),
    pytest.param(
        "",
        {"FLEET_DEVICES": "[{not json"},
        [
            "environment FLEET_DEVICES: devices: not valid JSON: Expecting property name "
            "enclosed in double quotes: line 1 column 3 (char 2)"
        ],
        id="env-bad-json",
    ),
    pytest.param(
        '[[devices]]\nid = "sw-01"\nkind = "drone"\n',
        {"FLEET_KINDS": '["segway", "alerts"]'},
        [
            "environment FLEET_KINDS: kinds[1]: 'agent' and 'alerts' are reserved topic levels "
            "and cannot be device kinds"
        ],
        id="env-list-item",
    ),
    pytest.param(
        '[influx]\nusername = "fleet"\n',
        {"FLEET_INFLUX__TOKEN": "tok-value"},
        [
            "environment FLEET_INFLUX__TOKEN: influx.token: set together with influx.username; "
            "use a token or a user, not both"
        ],
        id="env-cross-field",
    ),
    pytest.param(
        '[mqtt]\npassword_file = "/nonexistent/mqtt.pw"\n',
        {},
        ["{src}: mqtt.password_file: cannot read /nonexistent/mqtt.pw: No such file or directory"],
        id="missing-secret-file",
    ),
    pytest.param(
        '[influx]\napi = "v2"\norg = "pd"\n',
        {"FLEET_INFLUX__TOKEN_FILE": "/nonexistent/token"},
        [
            "environment FLEET_INFLUX__TOKEN_FILE: influx.token_file: cannot read "
            "/nonexistent/token: No such file or directory"
        ],
        id="missing-secret-file-from-env",
    ),
    pytest.param(
        "[mqtt]\nport = \n",
        {},
        ["{src}: line 2, column 8: Invalid value"],
        id="toml-syntax",
    ),
    pytest.param(
        "[mqtt]\nport = 1\n[mqtt]\n",
        {},
        ["{src}: line 3, column 6: Cannot declare ('mqtt',) twice"],
        id="toml-duplicate-table",
    ),
]


@pytest.mark.parametrize(("toml", "env", "expected"), BROKEN)
def test_broken_config_gives_exactly_these_lines(
    tmp_path: Path, toml: str, env: dict[str, str], expected: list[str]
) -> None:
    path = write(tmp_path, toml)
    assert problems_of(path, env) == [line.format(src=path) for line in expected]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[mqtt]\nport = 0\nkeepalive_s = 1\n[influx]\nbatch_size = 0\n[spool]\nmax_bytes = 10\n",
    )
    lines = problems_of(path, {"FLEET_HTTP__BIND": "x"})
    assert [line.split(": ")[1] for line in lines] == [
        "mqtt.port",
        "mqtt.keepalive_s",
        "influx.batch_size",
        "spool.max_bytes",
        "http.bind",
    ]


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert problems_of(path, {}) == [f"{path}: cannot read: No such file or directory"]


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    path = write(tmp_path, f'[mqtt]\nusername = "u"\npassword_file = "{empty}"\n')
    assert problems_of(path, {}) == [f"{path}: mqtt.password_file: {empty} is empty"]


def test_unreadable_credential_is_an_error(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "influx.token").mkdir()  # present but not a readable file
    lines = problems_of(None, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert lines == [
        f"credential {credentials / 'influx.token'}: influx.token: cannot read "
        f"{credentials / 'influx.token'}: Is a directory"
    ]


def test_problem_from_a_secret_file_names_the_file_key_source(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw-from-file\n", encoding="utf-8")
    path = write(tmp_path, "")
    lines = problems_of(path, {"FLEET_MQTT__PASSWORD_FILE": str(secret)})
    assert lines == [
        "environment FLEET_MQTT__PASSWORD_FILE: mqtt.password: set, but mqtt.username is not"
    ]


# --- secrets never shown ----------------------------------------------------------------------

SECRETS = ("Toml-Secret-4242", "Env-Secret-5353", "Cred-Secret-6464", "File-Secret-7575")


def secret_setup(tmp_path: Path, variant: str) -> tuple[Path, dict[str, str], list[str]]:
    """A broken configuration with a recognisable secret in every place a secret can be.

    Returns the file, the environment and key paths the errors must name.
    "typed" puts secrets into keys of the wrong type or shape (field errors);
    "cross" leaves every field valid so the cross-field rules about the secrets fire.
    """
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "influx.password").write_text(SECRETS[2] + "\n", encoding="utf-8")
    secret_file = tmp_path / "token"
    secret_file.write_text(SECRETS[3] + "\n", encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    if variant == "typed":
        toml = (
            "[mqtt]\n"
            f'password = "{SECRETS[0]}"\n'
            f'port = "{SECRETS[0]}"\n'
            f'pasword = "{SECRETS[0]}"\n'
            "[influx]\n"
            f'token_file = "{secret_file}"\n'
            f'database = "bad\\"{SECRETS[0]}"\n'
        )
        env |= {
            "FLEET_MQTT__KEEPALIVE_S": SECRETS[1],
            "FLEET_INFLUX__RETENTION": SECRETS[1],
            "FLEET_SITE__ID": f"bad id {SECRETS[1]}",
            "FLEET_KINDS": f'["{SECRETS[1]}", ',
        }
        keys = ["mqtt.port", "mqtt.pasword", "influx.database", "mqtt.keepalive_s", "kinds"]
    else:
        toml = (
            "[mqtt]\n"
            f'password = "{SECRETS[0]}"\n'
            "[influx]\n"
            'username = "fleet"\n'
            f'token_file = "{secret_file}"\n'
        )
        env["FLEET_INFLUX__PASSWORD"] = SECRETS[1]
        keys = ["mqtt.password", "influx.token"]
    return write(tmp_path, toml), env, keys


@pytest.mark.parametrize("variant", ["typed", "cross"])
def test_secrets_never_in_config_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, variant: str
) -> None:
    path, env, keys = secret_setup(tmp_path, variant)
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as info:
        load_settings(path, environ=env)
    problems = info.value.problems
    assert all(any(f": {key}: " in line for line in problems) for key in keys), problems
    text = "\n".join(problems) + str(info.value) + repr(info.value) + caplog.text
    for secret in SECRETS:
        assert secret not in text
    # Chained exceptions would print the ValidationError, which shows input values.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


@pytest.mark.parametrize("variant", ["typed", "cross"])
def test_secrets_never_printed_by_check_config(tmp_path: Path, variant: str) -> None:
    path, env, keys = secret_setup(tmp_path, variant)
    result = run_check_config("--config", str(path), env=env)
    assert result.returncode == EX_CONFIG
    for key in keys:
        assert f": {key}: " in result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr


def test_secrets_never_in_a_loaded_settings_repr(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(SECRETS[3] + "\n", encoding="utf-8")
    env = {
        "FLEET_MQTT__USERNAME": "u",
        "FLEET_MQTT__PASSWORD": SECRETS[1],
        "FLEET_INFLUX__USERNAME": "fleet",
        "FLEET_INFLUX__PASSWORD_FILE": str(secret_file),
    }
    settings = load_settings(environ=env)
    assert settings.influx.password is not None
    assert settings.influx.password.get_secret_value() == SECRETS[3]
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in SECRETS:
        assert secret not in shown


# --- fleet check-config -----------------------------------------------------------------------


def test_check_config_rejects_a_bad_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[devices]]\nid = "sw-01"\nkind = "segway"\n[[devices]]\nid = "x"\nkind = "scooter"\n',
    )
    result = run_check_config("--config", str(path))
    assert result.returncode == EX_CONFIG == 78
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: devices[1].kind: not one of the configured kinds (segway, handheld)"
    ]


def test_check_config_accepts_the_full_example(tmp_path: Path) -> None:
    path = REPO / "config" / "examples" / "fleet.toml"
    result = run_check_config("--config", str(path), env=example_env(path, tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"ok: {path}",
        "site allingtown (Allingtown); mqtt mqtt.westhaven.internal:8883 (tls, MQTT 5); "
        "influx http://localhost:8086 api v1 database fleet; "
        "spool /var/lib/fleet/spool.sqlite; 7 devices",
    ]
    assert "influx.password-value" not in result.stdout
    assert "mqtt-password-value" not in result.stdout


def test_check_config_uses_fleet_config_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[mqtt]\nport = 1999\n")
    result = run_check_config(env={"FLEET_CONFIG": str(path), "FLEET_MQTT__HOST": "broker.lan"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"ok: {path}"
    assert "mqtt broker.lan:1999 " in result.stdout


def test_check_config_without_any_file(tmp_path: Path) -> None:
    result = run_check_config(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "ok: (no file: defaults and environment)"


def test_the_fleet_console_script_runs_check_config(tmp_path: Path) -> None:
    fleet = Path(sys.executable).parent / "fleet"
    path = write(tmp_path, "[mqtt]\nport = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLEET_")}
    result = subprocess.run(
        [str(fleet), "check-config", "--config", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EX_CONFIG
    assert result.stderr.splitlines() == [
        f"{path}: mqtt.port: Input should be greater than or equal to 1"
    ]


def test_site_names_cover_this_site_and_the_others() -> None:
    from fleet.config import SiteSettings

    site = SiteSettings(id="allingtown", name="Allingtown", others={"westhaven": "West Haven"})
    assert site.names() == {"allingtown": "Allingtown", "westhaven": "West Haven"}
    with pytest.raises(ValidationError):
        SiteSettings(others={"west haven": "West Haven"})

"""Secrets from files and systemd credentials: notification routes and BTHome bind keys.

The same sources as mqtt.password (tests/config/test_config.py): a `*_file`
key, a credential named after the key path, the TOML file, the environment,
with the same precedence and the same `source: key.path: message` error lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

import pytest

from fleet.config import ConfigError, FleetSettings, load_settings
from fleet.daemon.cli_support import EX_CONFIG
from tests.config.test_config import run_check_config

ROUTES = ("warning", "critical", "escalation")
KEY_A = "231d39c1d7cc1ab1aee224cd096db932"
KEY_B = "00112233445566778899aabbccddeeff"
KEY_C = "ffeeddccbbaa99887766554433221100"
MAC = "A4:C1:38:8D:18:B2"
URL_PW = "Pw-Url-8181zz"  # distinctive: a leak cannot hide in ordinary text


def mail(n: int, pw: str = URL_PW) -> str:
    return f"mailtos://station{n}:{pw}@mail.example.com?to=maint{n}@example.com"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path | None, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=env)
    return info.value.problems


def bthome(device: str, extra: str = "") -> str:
    return f'[[agent.drivers]]\nkind = "bthome"\ndevice = "{device}"\naddress = "{MAC}"\n{extra}'


def creds(tmp_path: Path, **files: str) -> tuple[Path, dict[str, str]]:
    """A credentials directory holding `files` (name -> content), and the environment naming it."""
    directory = tmp_path / "credentials"
    directory.mkdir(exist_ok=True)
    for name, content in files.items():
        write(directory / name, content)
    return directory, {"CREDENTIALS_DIRECTORY": str(directory)}


def urls(settings: FleetSettings, route: str) -> list[str]:
    return settings.alerts.notify.routes()[route]


# --- notification routes -------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_a_route_file_holds_one_url_per_line(tmp_path: Path, route: str) -> None:
    listing = write(
        tmp_path / "urls",
        f"# the maintenance desk\n\n  {mail(1)}  \n# {mail(9)}\n{mail(2)}\r\n\n",
    )
    path = write(tmp_path / "fleet.toml", f'[alerts.notify]\n{route}_file = "{listing}"\n')
    settings = load_settings(path, environ={})
    assert urls(settings, route) == [mail(1), mail(2)]
    assert getattr(settings.alerts.notify, f"{route}_file") == listing
    others = [r for r in ROUTES if r != route]
    assert [urls(settings, r) for r in others] == [[], []]


@pytest.mark.parametrize("route", ROUTES)
def test_a_route_credential_is_named_after_its_key(tmp_path: Path, route: str) -> None:
    _, env = creds(tmp_path, **{f"alerts.notify.{route}": f"{mail(1)}\n# spare\n{mail(2)}\n"})
    settings = load_settings(None, environ=env)
    assert urls(settings, route) == [mail(1), mail(2)]


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ({"toml"}, 1),
        ({"toml", "file"}, 2),
        ({"toml", "file", "credential"}, 3),
        ({"toml", "file", "credential", "env"}, 4),
        ({"file", "env"}, 4),
        ({"credential", "toml"}, 3),
    ],
)
def test_route_precedence(tmp_path: Path, layers: set[str], expected: int) -> None:
    toml = "[alerts.notify]\n"
    env: dict[str, str] = {}
    if "toml" in layers:
        toml += f'critical = ["{mail(1)}"]\n'
    if "file" in layers:
        toml += f'critical_file = "{write(tmp_path / "urls", mail(2))}"\n'
    if "credential" in layers:
        env |= creds(tmp_path, **{"alerts.notify.critical": mail(3)})[1]
    if "env" in layers:
        env["FLEET_ALERTS__NOTIFY__CRITICAL"] = json.dumps([mail(4)])
    settings = load_settings(write(tmp_path / "fleet.toml", toml), environ=env)
    # A higher source replaces the whole list, as lists do across every source.
    assert urls(settings, "critical") == [mail(expected)]


@pytest.mark.integration  # a real HTTP receiver
def test_a_route_from_a_credential_reaches_its_webhook(tmp_path: Path) -> None:
    # The collector builds its notifier from exactly these routes (daemon/collector/alerting.py).
    from fleet.daemon.alerts.notify import Notifier
    from tests.harness.http_receiver import HttpReceiver, Reply
    from tests.harness.waiting import wait_until

    with HttpReceiver(Reply(200)) as receiver:
        url = f"json://127.0.0.1:{receiver.port}/hook?-token=Tok-Cred-2727&cto=2&rto=2"
        _, env = creds(tmp_path, **{"alerts.notify.critical": f"# on call\n{url}\n"})
        notify = load_settings(None, environ=env).alerts.notify
        notifier = Notifier(notify.routes(), min_interval_s=0.0)
        stop = notifier.start()
        try:
            notifier.submit("critical", "title", "body", key="sw-03/fault", notify_type="failure")
            [request] = wait_until(lambda: list(receiver.requests), message="webhook called")
        finally:
            assert stop(10.0)
    assert (request.path, request.query) == ("/hook", {"token": ["Tok-Cred-2727"]})


# --- BTHome bind keys ----------------------------------------------------------------------


def test_bind_keys_from_a_credential_a_file_and_the_toml(tmp_path: Path) -> None:
    key_file = write(tmp_path / "hh-03.key", KEY_B + "\n")
    _, env = creds(tmp_path, **{"agent.drivers.hh-02.bind_key": KEY_A + "\n"})
    env["FLEET_AGENT__ID"] = "dock-a"  # the [agent] table merges; its drivers stay the file's
    toml = (
        bthome("hh-02")
        + bthome("hh-03", f'bind_key_file = "{key_file}"\n')
        + bthome("hh-04", f'bind_key = "{KEY_C}"\n')
        + bthome("hh-05")
        + '[[agent.drivers]]\nkind = "nmea_gps"\ndevice = "hh-06"\nport = "/dev/ttyACM0"\n'
    )
    agent = load_settings(write(tmp_path / "fleet.toml", toml), environ=env).agent
    drivers = agent.drivers
    assert agent.id == "dock-a"
    keys = [getattr(d, "bind_key", None) for d in drivers]
    shown = [k.get_secret_value() if k is not None else None for k in keys]
    assert shown == [KEY_A, KEY_B, KEY_C, None, None]
    assert getattr(drivers[1], "bind_key_file") == key_file  # noqa: B009 - a union member's key


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ({"toml"}, KEY_A),
        ({"toml", "file"}, KEY_B),
        ({"toml", "file", "credential"}, KEY_C),
        ({"credential"}, KEY_C),
    ],
)
def test_bind_key_precedence(tmp_path: Path, layers: set[str], expected: str) -> None:
    extra = f'bind_key = "{KEY_A}"\n' if "toml" in layers else ""
    if "file" in layers:
        extra += f'bind_key_file = "{write(tmp_path / "key", KEY_B)}"\n'
    env = (
        creds(tmp_path, **{"agent.drivers.hh-02.bind_key": KEY_C})[1]
        if "credential" in layers
        else {}
    )
    settings = load_settings(write(tmp_path / "fleet.toml", bthome("hh-02", extra)), environ=env)
    key = getattr(settings.agent.drivers[0], "bind_key")  # noqa: B009
    assert key.get_secret_value() == expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"bind_key": KEY_A}, KEY_A),  # the environment's own value wins over a credential
        ({}, KEY_C),  # else the credential fills the environment's table
        ({"bind_key_file": "FILE"}, KEY_C),  # and wins over its file
    ],
)
def test_bind_keys_of_drivers_given_in_the_environment(
    tmp_path: Path, entry: dict[str, str], expected: str
) -> None:
    key_file = write(tmp_path / "key", KEY_B)
    table = {"kind": "bthome", "device": "hh-02", "address": MAC}
    table |= {k: str(key_file) if v == "FILE" else v for k, v in entry.items()}
    env = creds(tmp_path, **{"agent.drivers.hh-02.bind_key": KEY_C})[1]
    env["FLEET_AGENT__DRIVERS"] = json.dumps([table])
    key = getattr(load_settings(None, environ=env).agent.drivers[0], "bind_key")  # noqa: B009
    assert key.get_secret_value() == expected


def test_a_bind_key_file_in_the_environments_drivers_is_read(tmp_path: Path) -> None:
    key_file = write(tmp_path / "key", KEY_B + "\n")
    table = {"kind": "bthome", "device": "hh-02", "address": MAC, "bind_key_file": str(key_file)}
    env = {"FLEET_AGENT__DRIVERS": json.dumps([table])}
    key = getattr(load_settings(None, environ=env).agent.drivers[0], "bind_key")  # noqa: B009
    assert key.get_secret_value() == KEY_B


def test_a_credential_is_never_looked_up_outside_its_directory(tmp_path: Path) -> None:
    directory, env = creds(tmp_path)
    # What a device id "../evil" would name; a directory, so reading it would be a problem.
    (directory / "agent.drivers.." / "evil.bind_key").mkdir(parents=True)
    (directory / "agent.drivers.sw-01.bind_key").mkdir()  # a driver without a bind key
    toml = bthome("../evil") + (
        '[[agent.drivers]]\nkind = "ninebot_serial"\ndevice = "sw-01"\nport = "/dev/ttyUSB0"\n'
    )
    path = write(tmp_path / "fleet.toml", toml)
    lines = problems(path, env)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: agent.drivers[0].device: String should match pattern")


async def test_the_bind_key_decrypts_through_the_real_bthome_driver(tmp_path: Path) -> None:
    # The agent builds its drivers from exactly these settings (daemon/agent/registry.py).
    from fleet.daemon.agent.registry import spec_for
    from fleet.drivers.ble.decode import BTHOME_SERVICE_DATA
    from fleet.drivers.readings import Battery
    from tests.drivers.ble.test_bthome import encrypted
    from tests.drivers.emulators.ble import BleAir
    from tests.drivers.emulators.recording import RecordingSink, until

    _, env = creds(tmp_path, **{"agent.drivers.hh-02.bind_key": KEY_A + "\n"})
    toml = bthome("hh-02", "min_interval_s = 0\n")
    settings = load_settings(write(tmp_path / "fleet.toml", toml), environ=env)
    air, sink = BleAir(), RecordingSink()
    driver = spec_for(settings.agent.drivers[0], scanner_backend=air.scanner_backend).factory()
    task = asyncio.create_task(driver.run(sink))
    try:
        await until(lambda: air.scanners or task.done(), message="scanner never started")
        payload = encrypted(bytes.fromhex("015d"), key=bytes.fromhex(KEY_A))
        air.advertise(MAC, service_data={BTHOME_SERVICE_DATA: payload})
        await until(lambda: sink.readings)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sink.readings[0].battery == Battery(pct=93.0)


# --- error lines ---------------------------------------------------------------------------


def test_missing_empty_and_unreadable_route_files(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty", "\n  \n")
    comments = write(tmp_path / "comments", "# nobody yet\n\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    path = write(
        tmp_path / "fleet.toml",
        "[alerts.notify]\n"
        f'warning_file = "{tmp_path / "absent"}"\n'
        f'critical_file = "{empty}"\n'
        f'escalation_file = "{folder}"\n',
    )
    assert problems(path, {}) == [
        f"{path}: alerts.notify.warning_file: cannot read {tmp_path / 'absent'}: "
        "No such file or directory",
        f"{path}: alerts.notify.critical_file: {empty} is empty",
        f"{path}: alerts.notify.escalation_file: cannot read {folder}: Is a directory",
    ]
    path = write(tmp_path / "fleet.toml", f'[alerts.notify]\nwarning_file = "{comments}"\n')
    assert problems(path, {}) == [
        f"{path}: alerts.notify.warning_file: {comments} has no URL, only comments and blank lines"
    ]


def test_route_file_named_in_the_environment(tmp_path: Path) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe json://x\n")
    env = {"FLEET_ALERTS__NOTIFY__ESCALATION_FILE": str(binary)}
    assert problems(None, env) == [
        f"environment FLEET_ALERTS__NOTIFY__ESCALATION_FILE: alerts.notify.escalation_file: "
        f"{binary} is not UTF-8 text"
    ]


def test_unusable_route_credentials(tmp_path: Path) -> None:
    directory, env = creds(tmp_path, **{"alerts.notify.warning": "# none\n"})
    (directory / "alerts.notify.escalation").mkdir()
    assert problems(None, env) == [
        f"credential {directory / 'alerts.notify.warning'}: alerts.notify.warning: "
        f"{directory / 'alerts.notify.warning'} has no URL, only comments and blank lines",
        f"credential {directory / 'alerts.notify.escalation'}: alerts.notify.escalation: "
        f"cannot read {directory / 'alerts.notify.escalation'}: Is a directory",
    ]


def test_missing_empty_and_bad_bind_keys(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty", "\n")
    bad = write(tmp_path / "bad", "Bad-Key-Secret-3131\n")
    directory, env = creds(tmp_path, **{"agent.drivers.hh-04.bind_key": "Cred-Key-Secret-4141"})
    (directory / "agent.drivers.hh-05.bind_key").write_text("", encoding="utf-8")
    path = write(
        tmp_path / "fleet.toml",
        bthome("hh-01", f'bind_key_file = "{tmp_path / "absent"}"\n')
        + bthome("hh-02", f'bind_key_file = "{empty}"\n')
        + bthome("hh-03", f'bind_key_file = "{bad}"\n')
        + bthome("hh-04")
        + bthome("hh-05"),
    )
    lines = problems(path, env)
    cred4, cred5 = (directory / f"agent.drivers.hh-0{n}.bind_key" for n in (4, 5))
    assert lines == [
        f"{path}: agent.drivers[0].bind_key_file: cannot read {tmp_path / 'absent'}: "
        "No such file or directory",
        f"{path}: agent.drivers[1].bind_key_file: {empty} is empty",
        f"credential {cred5}: agent.drivers[4].bind_key: {cred5} is empty",
        f"{path}: agent.drivers[2].bind_key: Value error, bind_key must be 32 hex digits",
        f"credential {cred4}: agent.drivers[3].bind_key: Value error, bind_key must be 32 hex "
        "digits",
    ]
    assert not any("Secret-" in line for line in lines)


def test_a_bind_key_file_named_in_the_environments_drivers(tmp_path: Path) -> None:
    table = {"kind": "bthome", "device": "hh-02", "address": MAC, "bind_key_file": "/nonexistent"}
    env = {"FLEET_AGENT__DRIVERS": json.dumps([table])}
    assert problems(None, env) == [
        "environment FLEET_AGENT__DRIVERS: agent.drivers[0].bind_key_file: cannot read "
        "/nonexistent: No such file or directory"
    ]


# --- never shown ---------------------------------------------------------------------------

SECRET_KEY = "0123456789abcdef0123456789abcdef"  # a bind key


def secret_config(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Every new secret source at once, in a configuration that loads."""
    key_file = write(tmp_path / "key", SECRET_KEY + "\n")
    listing = write(tmp_path / "urls", mail(1, "File-Url-Pw-7575") + "\n")
    _, env = creds(
        tmp_path,
        **{
            "alerts.notify.critical": mail(2, "Cred-Url-Pw-6464"),
            "agent.drivers.hh-03.bind_key": KEY_C,
        },
    )
    env["FLEET_ALERTS__NOTIFY__ESCALATION"] = json.dumps([mail(3, "Env-Url-Pw-5353")])
    toml = (
        f'[alerts.notify]\nwarning_file = "{listing}"\n'
        + bthome("hh-02", f'bind_key_file = "{key_file}"\n')
        + bthome("hh-03")
        + bthome("hh-04", f'bind_key = "{KEY_A}"\n')
    )
    return write(tmp_path / "fleet.toml", toml), env


SHOWN_NEVER = ("File-Url-Pw-7575", "Cred-Url-Pw-6464", "Env-Url-Pw-5353", SECRET_KEY, KEY_A, KEY_C)


def test_secrets_never_in_the_settings_repr(tmp_path: Path) -> None:
    path, env = secret_config(tmp_path)
    settings = load_settings(path, environ=env)
    assert urls(settings, "warning") == [mail(1, "File-Url-Pw-7575")]  # they were loaded
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in SHOWN_NEVER:
        assert secret not in shown


def test_secrets_never_in_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, env = secret_config(tmp_path)
    env["FLEET_MQTT__PORT"] = "0"  # one unrelated error, so every source is rendered
    env["FLEET_ALERTS__NOTIFY__ATTEMPTS"] = f"{SECRET_KEY}"  # a secret typed in the wrong key
    with caplog.at_level(logging.DEBUG):
        lines = problems(path, env)
    assert len(lines) == 2
    text = "\n".join(lines) + caplog.text
    for secret in SHOWN_NEVER:
        assert secret not in text


def test_secrets_never_printed_by_check_config(tmp_path: Path) -> None:
    path, env = secret_config(tmp_path)
    result = run_check_config("--config", str(path), env=env)
    assert result.returncode == 0, result.stderr
    for secret in SHOWN_NEVER:
        assert secret not in result.stdout + result.stderr
    env["FLEET_INFLUX__API"] = "v2"  # an error: org and token missing
    result = run_check_config("--config", str(path), env=env)
    assert result.returncode == EX_CONFIG
    assert ": influx.org: " in result.stderr
    for secret in SHOWN_NEVER:
        assert secret not in result.stdout + result.stderr

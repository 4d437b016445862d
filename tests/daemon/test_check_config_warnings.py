"""`fleet check-config` warnings: secrets others can read, passwords that would go in clear.

Most cases load real settings and call the warnings directly; the last tests run
the real sub-command to show the lines on stderr, the unchanged exit status 0,
and that no secret is ever printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.config import load_settings
from fleet.daemon.check_warnings import config_warnings, is_loopback
from tests.config.test_config import run_check_config

URL_PW = "Url-Pw-9292zz"
TOKEN = "tok4e3d2c1b0a9f"
HASH = "scrypt$16384$8$1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"  # only its shape is checked on load
FIX = "(0600, or 0640 with the service's group)"


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def warnings_of(tmp_path: Path, toml: str, mode: int = 0o600) -> list[str]:
    """The warnings of `toml`, its spool (and so the session key's default) under tmp_path."""
    text = toml + f'\n[spool]\npath = "{tmp_path / "spool.sqlite"}"\n'
    path = write(tmp_path / "fleet.toml", text, mode)
    return config_warnings(load_settings(path, environ={}), path)


# --- files holding secrets ------------------------------------------------------------------

SECRET_FILES = [
    ("mqtt.password_file", '[mqtt]\nusername = "u"\npassword_file = "{f}"\n', "pw-1234"),
    ("influx.token_file", '[influx]\ntoken_file = "{f}"\n', "token-1234"),
    ("influx.password_file", '[influx]\nusername = "u"\npassword_file = "{f}"\n', "pw-1234"),
    ("alerts.notify.warning_file", '[alerts.notify]\nwarning_file = "{f}"\n', "jsons://h/x"),
    ("alerts.notify.critical_file", '[alerts.notify]\ncritical_file = "{f}"\n', "jsons://h/x"),
    ("alerts.notify.escalation_file", '[alerts.notify]\nescalation_file = "{f}"\n', "jsons://h"),
    (
        "agent.drivers[0].bind_key_file",
        '[[agent.drivers]]\nkind = "bthome"\ndevice = "hh-02"\naddress = "A4:C1:38:8D:18:B2"\n'
        'bind_key_file = "{f}"\n',
        "231d39c1d7cc1ab1aee224cd096db932",
    ),
    ("mqtt.tls.key_file", '[mqtt.tls]\ncert_file = "{cert}"\nkey_file = "{f}"\n', "KEY"),
    ("http.tls_key", '[http]\ntls_cert = "{cert}"\ntls_key = "{f}"\n', "KEY"),
    ("broker.keyfile", '[broker]\nkeyfile = "{f}"\n', "KEY"),
    ("http.session_key_path", '[http]\nsession_key_path = "{f}"\n', "KEY"),
]


@pytest.mark.parametrize(
    ("mode", "exposure"),
    [
        (0o644, "readable by others (mode 0644)"),
        (0o604, "readable by others (mode 0604)"),
        (0o602, "writable by others (mode 0602)"),
        (0o666, "readable and writable by others (mode 0666)"),
        (0o600, None),
        (0o640, None),  # the service's group may read it: the installed layout
        (0o660, None),
        (0o400, None),
    ],
)
@pytest.mark.parametrize(
    ("key", "toml", "content"), SECRET_FILES, ids=[k for k, *_ in SECRET_FILES]
)
def test_a_secret_file_open_to_others_warns(
    tmp_path: Path, key: str, toml: str, content: str, mode: int, exposure: str | None
) -> None:
    secret = write(tmp_path / "secret", content + "\n", mode)
    cert = write(tmp_path / "cert.pem", "CERT\n", 0o644)  # a certificate is public: no warning
    lines = warnings_of(tmp_path, toml.format(f=secret, cert=cert))
    expected = (
        f"warning: {key}: {secret} holds a secret and is {exposure}; run chmod o-rwx {secret} {FIX}"
    )
    assert lines == ([expected] if exposure else [])


def test_the_session_key_beside_the_spool_is_checked_once_it_exists(tmp_path: Path) -> None:
    assert warnings_of(tmp_path, "") == []  # not created yet: nothing to say
    key = write(tmp_path / "spool.session-key", "KEY", 0o644)
    assert warnings_of(tmp_path, "") == [
        f"warning: http.session_key_path: {key} holds a secret and is readable by others "
        f"(mode 0644); run chmod o-rwx {key} {FIX}"
    ]


@pytest.mark.parametrize(
    ("toml", "keys"),
    [
        (f'[mqtt]\nusername = "u"\npassword = "{URL_PW}"\n', "mqtt.password"),
        (f'[influx]\ntoken = "{TOKEN}"\n', "influx.token"),
        (f'[alerts.notify]\nwarning = ["jsons://h/x?t={TOKEN}"]\n', "alerts.notify.warning"),
        (
            '[[agent.drivers]]\nkind = "bthome"\ndevice = "hh-02"\naddress = "A4:C1:38:8D:18:B2"\n'
            'bind_key = "231d39c1d7cc1ab1aee224cd096db932"\n',
            "agent.drivers[0].bind_key",
        ),
        (f'[http.users]\namy = "{HASH}"\n', "http.users"),
        (
            f'[mqtt]\nusername = "u"\npassword = "{URL_PW}"\n[influx]\ntoken = "{TOKEN}"\n',
            "mqtt.password, influx.token",
        ),
    ],
)
def test_a_config_file_with_secrets_written_in_it_open_to_others_warns(
    tmp_path: Path, toml: str, keys: str
) -> None:
    path = tmp_path / "fleet.toml"
    assert warnings_of(tmp_path, toml, 0o640) == []
    assert warnings_of(tmp_path, toml, 0o644) == [
        f"warning: {path}: holds secrets ({keys}) and is readable by others (mode 0644); run "
        f"chmod o-rwx {path}, or move them to systemd credentials or *_file keys"
    ]


def test_a_config_file_without_secrets_may_be_readable(tmp_path: Path) -> None:
    toml = '[mqtt]\nusername = "u"\n[alerts.notify]\nwarning = []\n'
    assert warnings_of(tmp_path, toml, 0o644) == []


# --- passwords in clear ---------------------------------------------------------------------


def mqtt_warning(host: str, port: int = 1883) -> str:
    return (
        f"warning: mqtt.tls.enabled: the MQTT password goes in clear to {host}:{port}, which is "
        "not this machine; set mqtt.tls.enabled = true (the broker's TLS listener, usually port "
        "8883), or use a broker on this machine"
    )


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('host = "broker.lan"\nusername = "u"\n', [mqtt_warning("broker.lan")]),
        (f'host = "10.0.0.5"\nusername = "u"\npassword = "{URL_PW}"\n', [mqtt_warning("10.0.0.5")]),
        ('host = "broker.lan"\nport = 1884\nusername = "u"\n', [mqtt_warning("broker.lan", 1884)]),
        ('host = "broker.lan"\nusername = "u"\n[mqtt.tls]\nenabled = true\n', []),
        ('host = "127.0.0.1"\nusername = "u"\n', []),
        ('host = "127.8.9.10"\nusername = "u"\n', []),
        ('host = "::1"\nusername = "u"\n', []),
        ('host = "localhost"\nusername = "u"\n', []),
        ('host = "broker.lan"\n', []),  # anonymous: no password to lose
    ],
)
def test_mqtt_password_without_tls(tmp_path: Path, toml: str, expected: list[str]) -> None:
    assert warnings_of(tmp_path, "[mqtt]\n" + toml) == expected


INFLUX_WARNING = (
    "warning: influx.url: the InfluxDB token or password goes in clear to db.lan, which is not "
    "this machine; use an https:// URL (TLS in front of InfluxDB), or an InfluxDB on this machine"
)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (f'url = "http://db.lan:8086"\ntoken = "{TOKEN}"\n', [INFLUX_WARNING]),
        (f'url = "http://db.lan:8086"\nusername = "u"\npassword = "{URL_PW}"\n', [INFLUX_WARNING]),
        ('url = "http://db.lan:8086"\nusername = "u"\n', [INFLUX_WARNING]),  # password: credential
        (f'url = "https://db.lan:8086"\ntoken = "{TOKEN}"\n', []),
        (f'url = "http://127.0.0.1:8086"\ntoken = "{TOKEN}"\n', []),
        (f'url = "http://[::1]:8086"\ntoken = "{TOKEN}"\n', []),
        ('url = "http://db.lan:8086"\n', []),  # no authentication
    ],
)
def test_influx_credentials_over_http(tmp_path: Path, toml: str, expected: list[str]) -> None:
    assert warnings_of(tmp_path, "[influx]\n" + toml) == expected


def clear_url(scheme: str, host: str, secure: str) -> str:
    return (
        f"{scheme}:// sends its password or token in clear to {host}, which is not this "
        f"machine; use {secure}:// (TLS)"
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            f"mailto://u:{URL_PW}@mail.example.com",
            clear_url("mailto", "mail.example.com", "mailtos"),
        ),
        (f"mailtos://u:{URL_PW}@mail.example.com", None),
        (f"mailto://u:{URL_PW}@mail.example.com?mode=starttls", None),
        (f"mailto://u:{URL_PW}@gmail.com", None),  # apprise knows gmail wants STARTTLS
        (f"mailto://u:{URL_PW}@example.com?smtp=127.0.0.1", None),  # a relay on this machine
        (
            f"json://hooks.example.com/x?-token={TOKEN}",
            clear_url("json", "hooks.example.com", "jsons"),
        ),
        (f"jsons://hooks.example.com/x?-token={TOKEN}", None),
        ("json://hooks.example.com/x", None),  # nothing secret in it
        (f"json://127.0.0.1:9/x?-token={TOKEN}", None),
        (
            f"ntfy://u:{URL_PW}@ntfy.example.com/topic",
            clear_url("ntfy", "ntfy.example.com", "ntfys"),
        ),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", None),  # always HTTPS
        (
            f"bogus://u:{URL_PW}@x",
            "apprise cannot use this URL (scheme 'bogus'): nothing can be sent through it",
        ),
    ],
)
def test_notification_urls_in_clear(tmp_path: Path, url: str, problem: str | None) -> None:
    lines = warnings_of(tmp_path, f'[alerts.notify]\ncritical = ["jsons://h/x", "{url}"]\n')
    assert lines == ([f"warning: alerts.notify.critical[1]: {problem}"] if problem else [])
    assert URL_PW not in "".join(lines)


def test_a_url_from_a_file_is_named_by_its_place_in_the_file(tmp_path: Path) -> None:
    listing = write(tmp_path / "urls", f"# desk\njsons://h/x\n\nmailto://u:{URL_PW}@mail.lan\n")
    lines = warnings_of(tmp_path, f'[alerts.notify]\nescalation_file = "{listing}"\n')
    assert lines == [
        "warning: alerts.notify.escalation[1] (URL 2 of alerts.notify.escalation_file): "
        + clear_url("mailto", "mail.lan", "mailtos")
    ]


@pytest.mark.parametrize(
    ("toml", "warns"),
    [
        ('bind = "0.0.0.0"\n', True),
        ('bind = "192.168.10.2"\nport = 1884\n', True),
        ('bind = "127.0.0.1"\n', False),
        ('bind = "0.0.0.0"\ntls = true\ncertfile = "c.pem"\nkeyfile = "k.pem"\n', False),
    ],
)
def test_the_generated_broker_without_tls(tmp_path: Path, toml: str, warns: bool) -> None:
    lines = warnings_of(tmp_path, "[broker]\n" + toml)
    settings = load_settings(tmp_path / "fleet.toml", environ={})
    where = f"{settings.broker.bind}:{settings.broker.port}"
    expected = (
        f"warning: broker.tls: the generated broker takes passwords in clear on {where}; set "
        "broker.tls = true with broker.certfile and broker.keyfile, or broker.bind = 127.0.0.1"
    )
    assert lines == ([expected] if warns else [])


@pytest.mark.parametrize(
    ("toml", "warns"),
    [
        (f'bind = "0.0.0.0:8080"\n[http.users]\namy = "{HASH}"\n', True),
        (f'bind = "127.0.0.1:8080"\n[http.users]\namy = "{HASH}"\n', False),
        ('bind = "0.0.0.0:8080"\n', False),  # no logins
        (
            f'bind = "0.0.0.0:8080"\ntls_cert = "{{cert}}"\ntls_key = "{{key}}"\n'
            f'[http.users]\namy = "{HASH}"\n',
            False,
        ),
    ],
)
def test_board_logins_without_tls(tmp_path: Path, toml: str, warns: bool) -> None:
    cert = write(tmp_path / "cert.pem", "CERT")
    key = write(tmp_path / "key.pem", "KEY")
    lines = warnings_of(tmp_path, "[http]\n" + toml.format(cert=cert, key=key))
    expected = (
        "warning: http.tls_cert: board logins (http.users) go in clear to 0.0.0.0:8080; set "
        "http.tls_cert and http.tls_key, or bind 127.0.0.1 behind a TLS reverse proxy"
    )
    assert lines == ([expected] if warns else [])


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("db.localhost", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),  # every address, not this machine only
        ("::", False),
        ("localhost.example.com", False),
        ("128.0.0.1", False),
        ("", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# --- the command ----------------------------------------------------------------------------


def test_check_config_prints_the_warnings_and_still_exits_0(tmp_path: Path) -> None:
    password = write(tmp_path / "mqtt.pw", f"{URL_PW}\n", 0o644)
    listing = write(tmp_path / "urls", f"mailto://u:{URL_PW}@mail.lan\n")
    path = write(
        tmp_path / "fleet.toml",
        f'[mqtt]\nhost = "broker.lan"\nusername = "u"\npassword_file = "{password}"\n'
        f'[alerts.notify]\nwarning_file = "{listing}"\n'
        f'[spool]\npath = "{tmp_path / "spool.sqlite"}"\n'
        '[[devices]]\nid = "sw-01"\nkind = "segway"\n'
        '[[agents]]\nid = "dock-a"\ndevices = ["sw-01"]\n',
    )
    result = run_check_config("--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"ok: {path}"
    assert result.stderr.splitlines() == [
        f"warning: mqtt.password_file: {password} holds a secret and is readable by others "
        f"(mode 0644); run chmod o-rwx {password} {FIX}",
        mqtt_warning("broker.lan"),
        "warning: alerts.notify.warning[0] (URL 1 of alerts.notify.warning_file): "
        + clear_url("mailto", "mail.lan", "mailtos"),
    ]
    assert URL_PW not in result.stdout + result.stderr


def test_check_config_never_prints_a_url_apprise_complains_about(tmp_path: Path) -> None:
    # URLs apprise cannot use are named by their key and scheme only.
    path = write(
        tmp_path / "fleet.toml",
        f'[alerts.notify]\nwarning = ["mailto://u:{URL_PW}@", "json://:{URL_PW}@/?x={TOKEN}"]\n',
    )
    result = run_check_config("--config", str(path))
    assert result.returncode == 0, result.stderr
    assert URL_PW not in result.stdout + result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert "alerts.notify.warning[0]: apprise cannot use this URL" in result.stderr

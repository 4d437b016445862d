"""The warnings of `fleet check-config`: secrets others can read, and secrets sent in clear.

They are not errors (the configuration works; the exit status stays 0): each
is one line `warning: KEY: what is wrong; what to do`, naming the key to change
and never a secret. Found on this machine, as check-config is run: a file's
mode is read where it is, and a secret that only a systemd credential supplies
is not seen outside the unit.

- A file holding a secret (a `*_file` secret, a TLS private key, the board's
  session key, or the configuration file itself when secrets are written in
  it) that *others* can read or write. Group bits are accepted: the installed
  layout gives the service's group read access (`0640 root:fleet`).
- A password or token that would cross the network without TLS to a host
  that is not this machine (127.0.0.0/8, ::1, localhost): MQTT, InfluxDB,
  notification URLs of a scheme with a TLS twin (mailto:// vs mailtos://),
  the generated broker's listener, the board's logins.
- An agent whose drivers read devices its `[[agents]]` entry does not list
  (or that is not registered at all): a generated broker refuses those
  publishes (MQTT 5 says so; MQTT 3.1.1 drops them without a word).
- A collector whose broker user is not among `[[broker.collectors]]`, or whose
  `collector.sites` are not its entry's (a generated broker would refuse or starve it).
"""

from __future__ import annotations

import ipaddress
import stat
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fleet.config import FleetSettings
from fleet.config.base import format_loc
from fleet.config.secrets import secret_locs
from fleet.daemon.broker.collectors import collector_warning


def config_warnings(settings: FleetSettings, config_path: Path | None) -> list[str]:
    """Every warning about `settings` (loaded from `config_path`), one line each."""
    lines = [
        *_file_warnings(settings, config_path),
        *_cleartext_warnings(settings),
        *_agent_registry_warnings(settings),
    ]
    collector = collector_warning(settings)  # [[broker.collectors]] against this collector
    if collector is not None:
        lines.append(collector)
    return [f"warning: {line}" for line in lines]


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine: localhost, 127.0.0.0/8 or ::1."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# --- files ----------------------------------------------------------------------------------


def _exposure(path: Path) -> str | None:
    """How others can reach `path` ("readable by others (mode 0644)"); None if they cannot."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # a missing file is the loader's business, not a warning
    rights = [
        word for bit, word in ((stat.S_IROTH, "readable"), (stat.S_IWOTH, "writable")) if mode & bit
    ]
    if not rights:
        return None
    return f"{' and '.join(rights)} by others (mode {stat.S_IMODE(mode):04o})"


def _secret_files(s: FleetSettings) -> Iterator[tuple[str, Path]]:
    """(key, file) of every file the settings name that holds a secret."""
    notify = s.alerts.notify
    named: list[tuple[str, Path | None]] = [
        ("mqtt.password_file", s.mqtt.password_file),
        ("mqtt.tls.key_file", s.mqtt.tls.key_file),
        ("influx.token_file", s.influx.token_file),
        ("influx.password_file", s.influx.password_file),
        ("alerts.notify.warning_file", notify.warning_file),
        ("alerts.notify.critical_file", notify.critical_file),
        ("alerts.notify.escalation_file", notify.escalation_file),
        ("http.tls_key", s.http.tls_key),
        ("broker.keyfile", s.broker.keyfile),
    ]
    for index, driver in enumerate(s.agent.drivers):
        key_file: Path | None = getattr(driver, "bind_key_file", None)
        named.append((f"agent.drivers[{index}].bind_key_file", key_file))
    # The key that signs board sessions exists once the collector has run.
    named.append(("http.session_key_path", s.http.session_key_file(s.spool.path)))
    yield from ((key, path) for key, path in named if path is not None)


def _file_warnings(settings: FleetSettings, config_path: Path | None) -> Iterator[str]:
    for key, path in _secret_files(settings):
        exposed = _exposure(path)
        if exposed:
            yield (
                f"{key}: {path} holds a secret and is {exposed}; "
                f"run chmod o-rwx {path} (0600, or 0640 with the service's group)"
            )
    if config_path is None:
        return
    written = _secrets_written_in(config_path)
    exposed = _exposure(config_path)
    if written and exposed:
        yield (
            f"{config_path}: holds secrets ({', '.join(written)}) and is {exposed}; run "
            f"chmod o-rwx {config_path}, or move them to systemd credentials or *_file keys"
        )


def _secrets_written_in(path: Path) -> list[str]:
    """Key paths of the secrets written out in the TOML file (the board's user hashes too)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    keys = [format_loc(loc) for loc in secret_locs(data)]
    users = data.get("http", {}).get("users") if isinstance(data.get("http"), dict) else None
    return [*keys, "http.users"] if users else keys


# --- secrets in clear -----------------------------------------------------------------------


def _cleartext_warnings(settings: FleetSettings) -> Iterator[str]:
    mqtt = settings.mqtt
    if (mqtt.username or mqtt.password) and not mqtt.tls.enabled and not is_loopback(mqtt.host):
        yield (
            f"mqtt.tls.enabled: the MQTT password goes in clear to {mqtt.host}:{mqtt.port}, "
            "which is not this machine; set mqtt.tls.enabled = true (the broker's TLS "
            "listener, usually port 8883), or use a broker on this machine"
        )
    influx = settings.influx
    url = urlsplit(influx.url)
    has_auth = influx.token or influx.username or influx.password or influx.api == "v2"
    if has_auth and url.scheme == "http" and not is_loopback(url.hostname or ""):
        yield (
            f"influx.url: the InfluxDB token or password goes in clear to {url.hostname}, "
            "which is not this machine; use an https:// URL (TLS in front of InfluxDB), or "
            "an InfluxDB on this machine"
        )
    broker = settings.broker
    if not broker.tls and not is_loopback(broker.bind):
        yield (
            f"broker.tls: the generated broker takes passwords in clear on "
            f"{broker.bind}:{broker.port}; set broker.tls = true with broker.certfile and "
            "broker.keyfile, or broker.bind = 127.0.0.1"
        )
    http = settings.http
    if http.users and http.tls_cert is None and not is_loopback(http.bind_host):
        yield (
            f"http.tls_cert: board logins (http.users) go in clear to {http.bind}; set "
            "http.tls_cert and http.tls_key, or bind 127.0.0.1 behind a TLS reverse proxy"
        )
    yield from _notify_warnings(settings)


def _notify_warnings(settings: FleetSettings) -> Iterator[str]:
    notify = settings.alerts.notify
    routes = notify.routes()
    if not any(routes.values()):
        return
    # Imported only here: apprise loads its plugins, which check-config needs for URLs alone.
    from fleet.daemon.alerts.redact import REDACTOR, secrets_of

    for route, urls in routes.items():
        from_file = getattr(notify, f"{route}_file") is not None
        for index, url in enumerate(urls):
            REDACTOR.add(secrets_of(url))  # whatever apprise logs about it stays masked
            problem = _url_problem(url, secrets_of(url) - {url})
            if problem:
                # A file's comments and blank lines are not counted: say which URL it is.
                where = f" (URL {index + 1} of alerts.notify.{route}_file)" if from_file else ""
                yield f"alerts.notify.{route}[{index}]{where}: {problem}"


def _url_problem(url: str, secrets: set[str]) -> str | None:
    """Why an apprise URL is a risk or useless; never showing the URL itself."""
    plugin = _apprise_plugin(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else "?"
    if plugin is None:
        return f"apprise cannot use this URL (scheme '{scheme}'): nothing can be sent through it"
    secure_scheme = _names(getattr(plugin, "secure_protocol", None))
    host = str(getattr(plugin, "smtp_host", None) or getattr(plugin, "host", None) or "")
    in_clear = (
        scheme in _names(getattr(plugin, "protocol", None))
        and secure_scheme
        and not getattr(plugin, "secure", False)  # e.g. mailto:// to a provider known for TLS
    )
    if not (in_clear and (secrets or getattr(plugin, "password", None))) or not host:
        return None
    if is_loopback(host):
        return None
    return (
        f"{scheme}:// sends its password or token in clear to {host}, which is not this "
        f"machine; use {secure_scheme[0]}:// (TLS)"
    )


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, tuple | list) else []


def _apprise_plugin(url: str) -> Any:
    import apprise

    with warnings.catch_warnings():
        # The e-mail plugin imports the deprecated `imghdr`; not ours to report.
        warnings.simplefilter("ignore", DeprecationWarning)
        return apprise.Apprise.instantiate(url)


# --- the agent against the registry ---------------------------------------------------------


def _agent_registry_warnings(settings: FleetSettings) -> Iterator[str]:
    """Devices this file's agent reads that its [[agents]] entry does not let it publish."""
    agent = settings.agent
    if not settings.agents or not agent.drivers:
        return  # no registry to hold it to, or not an agent's configuration
    entry = next((a for a in settings.agents if a.id == agent.id), None)
    if entry is None:
        yield (
            f"agent.id: '{agent.id}' is not registered in [[agents]]: a generated broker "
            "has no such user and refuses it, and the collector ignores its availability; "
            "add an [[agents]] entry with its id, site and devices"
        )
        return
    index = settings.agents.index(entry)
    listed = set(entry.devices)
    for n, driver in enumerate(agent.drivers):
        if driver.device not in listed:
            yield (
                f"agent.drivers[{n}].device: '{driver.device}' is not among the devices of "
                f"agents[{index}] ('{agent.id}'): a generated broker refuses its readings "
                "(they are kept in the outbox's refused table, not delivered); add it to "
                f"agents[{index}].devices and run fleet broker-config again"
            )
    site = agent.site_or(settings.site.id)
    registered = entry.site or settings.site.id
    if site != registered:
        yield (
            f"agent.site: the agent publishes its availability under site '{site}', but "
            f"agents[{index}] registers it under '{registered}': a generated broker refuses "
            "it (and its last will); make them the same"
        )

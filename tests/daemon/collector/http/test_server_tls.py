"""TLS on the listener, with a CA and a certificate made here with `cryptography`: HTTPS
works, the cookie is Secure, TLS < 1.2 and plain HTTP are refused without holding a thread,
and the settings check the files."""

from __future__ import annotations

import socket
import ssl

import pytest
from pydantic import ValidationError

from fleet.config.collector import HttpSettings
from fleet.daemon.collector.http.server import tls_context
from tests.daemon.collector.http.rig import PASSWORD, USER, running_api
from tests.harness.certs import make_pki
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.integration  # a real HTTP server on a free port


def read_to_end(sock: socket.socket) -> bytes:
    """What the server sent before closing (a reset is a close too)."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_https_serves_logs_in_with_a_secure_cookie_and_refuses_plain_http(tmp_path):
    ca, cert, key = make_pki(tmp_path)
    settings = HttpSettings(tls_cert=cert, tls_key=key)  # checked at load: the files exist
    server_context = tls_context(settings.tls_cert, settings.tls_key)  # type: ignore[arg-type]
    client = ssl.create_default_context(cafile=str(ca))
    with running_api(tls=(server_context, client), header_deadline_s=1.5) as api:
        assert api.call("GET", "/healthz")[0] == 200
        status, headers, body = api.call(
            "POST", "/api/v1/session", {"user": USER, "password": PASSWORD}
        )
        assert status == 200
        assert headers["Set-Cookie"].endswith("; Secure")
        cookie = headers["Set-Cookie"].split(";")[0]
        origin = f"https://localhost:{api.port}"
        changed = api.call(
            "POST",
            "/api/v1/things",
            {"a": 1},
            headers={"Cookie": cookie, "X-CSRF-Token": body["csrf"], "Origin": origin},
        )
        assert changed[0] == 201

        # A plain-HTTP client on the TLS port: the handshake fails at once, the thread ends.
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as plain:
            plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert b"HTTP/1.1 200" not in read_to_end(plain)
        wait_until(lambda: api.server.counters().tls_failures == 1, message="counted")
        wait_until(lambda: api.server.counters().open == 0, message="no thread held")

        # A silent client is dropped at the deadline, not kept.
        with socket.create_connection(("127.0.0.1", api.port), timeout=10) as silent:
            wait_until(lambda: api.server.counters().open == 1, message="silent one in")
            assert read_to_end(silent) == b""
        wait_until(lambda: api.server.counters().tls_failures == 2, message="counted too")

        # TLS 1.0 / 1.1 are refused by the context (this OpenSSL's clients will not even try).
        assert server_context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert api.call("GET", "/healthz")[0] == 200


def test_tls_settings_need_both_files_and_existing_ones(tmp_path):
    _, cert, key = make_pki(tmp_path)
    with pytest.raises(ValidationError, match="set both tls_cert and tls_key, or neither"):
        HttpSettings(tls_cert=cert)
    with pytest.raises(ValidationError, match="is not a readable file"):
        HttpSettings(tls_cert=cert, tls_key=tmp_path / "missing.key")
    assert HttpSettings(tls_cert=cert, tls_key=key).tls_key == key

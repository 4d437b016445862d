"""The collector's small HTTP API: health, open alerts, acknowledgements.

    GET    /healthz                        200 when MQTT is up and the spool commits, else 503
    GET    /alerts                         the firing alerts, as their retained JSON
    POST   /alerts/{device}/{rule}/ack     body {"by": "name"} (or by=name): stops the repeats
    GET    /silences                       the silences in force
    POST   /silences                       {"device"?, "rule"?, "until" | "hours", "reason", "by"}
    DELETE /silences/{id}                  ends a silence early

Every answer is JSON, errors included ({"error": reason}). A body must come with a
Content-Length of at most 4096 bytes (413 beyond it, 411 for a chunked body); a body
shorter than announced, or a client that stops sending for `timeout_s`, is refused or
dropped without holding a thread.

It binds `http.bind` (127.0.0.1:8080 by default: the station's own machine).
There is no authentication: put a reverse proxy with authentication in front of
it before binding it to a network.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from fleet.daemon import wire
from fleet.daemon.alerts.text import alert_dict

_LOG = logging.getLogger(__name__)
_MAX_BODY = 4096
_SILENCE_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: int() also reads "²" and "١"


class SilenceApi(Protocol):
    def list_silences(self) -> list[dict[str, object]]: ...

    def add_silence(self, body: dict[str, object]) -> dict[str, object]: ...

    def remove_silence(self, silence_id: int) -> bool: ...


class _Refused(Exception):
    """A request we answer with `status` and `message` (no traceback: it is the client's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json_body(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except RecursionError:  # the json module recurses per level; a 4 kB body can go 2,000 deep
        raise _Refused(400, "body is nested too deeply") from None
    except ValueError as exc:
        raise _Refused(400, f"body is not valid JSON: {str(exc)[:80]}") from None


def _check_id(status: int, what: str, value: str) -> None:
    try:
        wire.check_id(what, value)
    except ValueError as exc:
        raise _Refused(status, str(exc)) from None


class HttpApi:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        alerts: Callable[[], list[dict[str, object]]] | None,
        acknowledge: Callable[[str, str, str], None] | None,
        silences: SilenceApi | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "fleet-collector"
            # A client that stops sending (a short body, a half-sent request) holds its
            # thread only this long.
            timeout = timeout_s

            def do_GET(self) -> None:
                with self._answer():
                    path = self._path()
                    if path == "/healthz":
                        ok, details = health()
                        self._json(200 if ok else 503, details)
                    elif path == "/alerts" and alerts is not None:
                        self._json(200, alerts())
                    elif path == "/silences" and silences is not None:
                        self._json(200, silences.list_silences())
                    else:
                        raise _Refused(404, "not found")

            def do_POST(self) -> None:
                with self._answer():
                    path = self._path()
                    if path == "/silences" and silences is not None:
                        body = _json_body(self._body() or b"{}")
                        if not isinstance(body, dict):
                            raise _Refused(400, "send a JSON object")
                        for key in ("device", "rule"):
                            if isinstance(body.get(key), str) and body[key]:
                                _check_id(400, key, body[key])
                        try:
                            self._json(201, silences.add_silence(body))
                        except ValueError as exc:
                            raise _Refused(400, str(exc)) from None
                        return
                    parts = path.strip("/").split("/")
                    if len(parts) != 4 or parts[0] != "alerts" or parts[3] != "ack":
                        raise _Refused(404, "not found")
                    if acknowledge is None:
                        raise _Refused(404, "not found")
                    device, rule = parts[1], parts[2]
                    _check_id(404, "device", device)
                    _check_id(404, "rule", rule)
                    by = api._author(self.headers.get("Content-Type", ""), self._body())
                    if by is None:
                        raise _Refused(400, 'say who acknowledges: {"by": "name"}')
                    acknowledge(device, rule, by)
                    self._json(202, {"accepted": True, "device": device, "rule": rule, "by": by})

            def do_DELETE(self) -> None:
                with self._answer():
                    parts = self._path().strip("/").split("/")
                    if len(parts) != 2 or parts[0] != "silences" or silences is None:
                        raise _Refused(404, "not found")
                    if not _SILENCE_ID.fullmatch(parts[1]):
                        raise _Refused(404, f"no silence {parts[1][:20]}")
                    if not silences.remove_silence(int(parts[1])):
                        raise _Refused(404, f"no silence {parts[1]}")
                    self._json(200, {"removed": int(parts[1])})

            def _path(self) -> str:
                return urlsplit(self.path).path

            @contextmanager
            def _answer(self) -> Iterator[None]:
                """Every request gets a JSON answer: a refusal with its reason, or a 500."""
                try:
                    yield
                except _Refused as refused:
                    self._json(refused.status, {"error": refused.message})
                except TimeoutError:
                    self.close_connection = True  # the client went quiet: nobody to answer
                except Exception:  # noqa: BLE001 - a bug must not drop the connection unanswered
                    _LOG.exception("HTTP %s %.200r failed", self.command, self.path)
                    self._json(500, {"error": "internal error; see the collector's log"})

            def _body(self) -> bytes:
                """The body, all of it: Content-Length is checked, not believed."""
                if "Transfer-Encoding" in self.headers:
                    raise _Refused(411, "send a Content-Length, not a Transfer-Encoding")
                text = self.headers.get("Content-Length") or "0"
                if not text.isascii() or not text.strip().isdigit():
                    raise _Refused(400, f"Content-Length {text[:20]!r} is not a byte count")
                length = int(text)
                if length > _MAX_BODY:
                    self.close_connection = True  # the unread body must not be read as a request
                    raise _Refused(413, f"body is {length} bytes; the limit is {_MAX_BODY}")
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    raise _Refused(400, f"body ended after {len(body)} of {length} bytes")
                return body

            def _json(self, status: int, body: object) -> None:
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                _LOG.debug("http %s", format % args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]

    @staticmethod
    def _author(content_type: str, body: bytes) -> str | None:
        text = body.decode("utf-8", "replace").strip()
        if content_type.startswith("application/json") or text.startswith("{"):
            try:
                decoded = _json_body(body)
            except _Refused:
                return None
            by = decoded.get("by") if isinstance(decoded, dict) else None
        else:
            values = parse_qs(text).get("by")
            by = values[0] if values else None
        if not isinstance(by, str) or not by.strip():
            return None
        if not by.isprintable():
            # The name goes into logs, notifications and the retained alert: no line breaks.
            raise _Refused(400, "the name must be printable text (no control characters)")
        return by.strip()[:64]

    def start(self) -> Callable[[], None]:
        thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        thread.start()
        _LOG.info("HTTP API on port %d", self.port)

        def stop() -> None:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)

        return stop


def alerts_json(snapshots: list[Any]) -> list[dict[str, object]]:
    return [alert_dict(s) for s in snapshots]

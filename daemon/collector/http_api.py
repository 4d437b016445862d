"""The collector's small HTTP API: health, open alerts, acknowledgements.

    GET    /healthz                        200 when MQTT is connected, else 503; JSON details
    GET    /alerts                         the firing alerts, as their retained JSON
    POST   /alerts/{device}/{rule}/ack     body {"by": "name"} (or by=name): stops the repeats
    GET    /silences                       the silences in force
    POST   /silences                       {"device"?, "rule"?, "until" | "hours", "reason", "by"}
    DELETE /silences/{id}                  ends a silence early

It binds `http.bind` (127.0.0.1:8080 by default: the station's own machine).
There is no authentication: put a reverse proxy with authentication in front of
it before binding it to a network.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs

from daemon.alerts.text import alert_dict

_LOG = logging.getLogger(__name__)
_MAX_BODY = 4096


class SilenceApi(Protocol):
    def list_silences(self) -> list[dict[str, object]]: ...

    def add_silence(self, body: dict[str, object]) -> dict[str, object]: ...

    def remove_silence(self, silence_id: int) -> bool: ...


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
    ) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "fleet-collector"

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    ok, details = health()
                    self._json(200 if ok else 503, details)
                elif self.path == "/alerts" and alerts is not None:
                    self._json(200, alerts())
                elif self.path == "/silences" and silences is not None:
                    self._json(200, silences.list_silences())
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                if self.path == "/silences" and silences is not None:
                    self._add_silence(silences)
                    return
                parts = self.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "alerts" or parts[3] != "ack" or not acknowledge:
                    self._json(404, {"error": "not found"})
                    return
                by = api._author(self.headers.get("Content-Type", ""), self._body())
                if by is None:
                    self._json(400, {"error": 'say who acknowledges: {"by": "name"}'})
                    return
                acknowledge(parts[1], parts[2], by)
                self._json(202, {"accepted": True, "device": parts[1], "rule": parts[2], "by": by})

            def do_DELETE(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) != 2 or parts[0] != "silences" or silences is None:
                    self._json(404, {"error": "not found"})
                    return
                if not parts[1].isdigit() or not silences.remove_silence(int(parts[1])):
                    self._json(404, {"error": f"no silence {parts[1][:20]}"})
                    return
                self._json(200, {"removed": int(parts[1])})

            def _add_silence(self, api: SilenceApi) -> None:
                try:
                    body = json.loads(self._body() or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("send a JSON object")
                    self._json(201, api.add_silence(body))
                except ValueError as exc:
                    self._json(400, {"error": str(exc)})

            def _body(self) -> bytes:
                length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
                return self.rfile.read(length) if length > 0 else b""

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
                decoded = json.loads(text)
            except ValueError:
                return None
            by = decoded.get("by") if isinstance(decoded, dict) else None
        else:
            values = parse_qs(text).get("by")
            by = values[0] if values else None
        if not isinstance(by, str) or not by.strip():
            return None
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

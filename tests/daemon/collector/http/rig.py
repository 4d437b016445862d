"""A real HttpApi on port 0 with a small Router behind the real gate, and a client for it."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from fleet.config.collector import HttpSettings
from fleet.daemon.collector.http import HttpApi, Request, Response, Router
from fleet.daemon.collector.http.auth import hash_password
from fleet.daemon.collector.http.gate import Gate
from fleet.daemon.collector.http.models import form_or_json

USER, PASSWORD = "reyes", "correct horse battery"
FAST = {"n": 2**10, "r": 8, "p": 1}  # the format and code of the real cost, at 1/16 the time


def small_router(changes: list[tuple[str | None, dict[str, object]]]) -> Router:
    router = Router()
    router.get("/healthz", lambda request: Response.json(200, {"ok": True}))
    router.get("/api/v1/things", lambda request: Response.json(200, {"user": request.user}))

    def change(request: Request) -> Response:
        content_type = request.headers.get("Content-Type", "")
        body = form_or_json(request.read_body() or b"{}", content_type)
        changes.append((request.user, body))
        return Response.json(201, {"user": request.user, "body": body})

    router.post("/api/v1/things", change)
    router.delete("/api/v1/things/{n:int}", lambda r: Response.json(200, {"user": r.user}))
    return router


@dataclass
class Api:
    server: HttpApi
    settings: HttpSettings
    changes: list[tuple[str | None, dict[str, object]]] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # the client's context, when the server speaks TLS

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def gate(self) -> Gate:
        return self.server.gate

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        headers: dict[str, str] | None = None,
        basic: tuple[str, str] | None = None,
        host: str | None = None,
    ) -> tuple[int, Message, Any]:
        """(status, headers, decoded JSON) over a fresh connection."""
        if self.tls is not None:
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                "localhost", self.port, timeout=10, context=self.tls
            )
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent = dict(headers or {})
        if basic is not None:
            token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            sent["Authorization"] = f"Basic {token}"
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
        if data is not None and not isinstance(body, bytes):
            sent.setdefault("Content-Type", "application/json")
        try:
            if host is not None:
                connection.putrequest(method, path, skip_host=True)
                connection.putheader("Host", host)
                for name, value in sent.items():
                    connection.putheader(name, value)
                payload = data.encode() if isinstance(data, str) else data
                connection.putheader("Content-Length", str(len(payload or b"")))
                connection.endheaders(payload)
            else:
                connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            return response.status, response.headers, json.loads(raw) if raw else None
        finally:
            connection.close()

    def login(self, user: str = USER, password: str = PASSWORD) -> tuple[str, str]:
        """(cookie header value, csrf token) of a new session."""
        status, headers, body = self.call(
            "POST", "/api/v1/session", {"user": user, "password": password}
        )
        assert status == 200, body
        cookie = headers["Set-Cookie"].split(";")[0]
        return cookie, body["csrf"]


@contextmanager
def running_api(
    *, tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None, **overrides: Any
) -> Iterator[Api]:
    values: dict[str, Any] = {
        "bind": "127.0.0.1:0",
        "users": {USER: hash_password(PASSWORD, **FAST)},
    }
    values.update(overrides)
    settings = HttpSettings(**values)
    changes: list[tuple[str | None, dict[str, object]]] = []
    gate = Gate(small_router(changes), settings, key=b"k" * 32, tls=tls is not None)
    server = HttpApi(
        settings.bind_host,
        settings.bind_port,
        gate,
        timeout_s=settings.request_timeout_s,
        header_deadline_s=settings.header_deadline_s,
        max_connections=settings.max_connections,
        tls=tls[0] if tls else None,
    )
    stop = server.start()
    try:
        yield Api(server, settings, changes, tls[1] if tls else None)
    finally:
        stop()

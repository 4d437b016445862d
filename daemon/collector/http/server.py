"""The listener: the standard library's ThreadingHTTPServer in front of a Router.

Every answer is JSON, errors included ({"error": reason}), also the server's own refusals
(a request line it cannot read, an unknown method). A body must come with a Content-Length
of at most 4096 bytes (413 beyond it, 411 for a chunked body); a body shorter than
announced, or a client that stops sending for `timeout_s`, is refused or dropped without
holding a thread. A body no route read closes the connection after the answer, so that it
is never read as the next request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fleet.daemon.collector.http.router import Refused, Response, Router

_LOG = logging.getLogger(__name__)
MAX_BODY = 4096
_NO_BODY = (204, 304)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], router: Router, timeout_s: float) -> None:
        self.router = router
        self.timeout_s = timeout_s
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "fleet-collector"
    _body_read = False

    def setup(self) -> None:
        # A client that stops sending (a short body, a half-sent request) holds its thread
        # only this long.
        super().setup()
        self.connection.settimeout(self.server.timeout_s)

    def _dispatch(self) -> None:
        self._body_read = False
        try:
            response = self.server.router.dispatch(
                self.command, self.path, self.headers, self._body
            )
        except Refused as refused:
            response = refused.response()
        except TimeoutError:
            self.close_connection = True  # the client went quiet: nobody to answer
            return
        except Exception:  # noqa: BLE001 - a bug must not drop the connection unanswered
            _LOG.exception("HTTP %s %.200r failed", self.command, self.path)
            response = Response.json(500, {"error": "internal error; see the collector's log"})
        if not self._body_read and self._announces_body():
            self.close_connection = True
        self._send(response)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _announces_body(self) -> bool:
        length = self.headers.get("Content-Length", "0").strip()
        return "Transfer-Encoding" in self.headers or length != "0"

    def _body(self) -> bytes:
        """The body, all of it: Content-Length is checked, not believed."""
        self._body_read = True
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            raise Refused(411, "send a Content-Length, not a Transfer-Encoding")
        text = self.headers.get("Content-Length") or "0"
        if not text.isascii() or not text.strip().isdigit():
            self.close_connection = True
            raise Refused(400, f"Content-Length {text[:20]!r} is not a byte count")
        length = int(text)
        if length > MAX_BODY:
            self.close_connection = True  # the unread body must not be read as a request
            raise Refused(413, f"body is {length} bytes; the limit is {MAX_BODY}")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise Refused(400, f"body ended after {len(body)} of {length} bytes")
        return body

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The server's own refusals (called by the standard library), as JSON like the rest."""
        if self.request_version == "HTTP/0.9" and len(self.requestline.split()) >= 3:
            # A version it refuses (HTTP/2.0, HTTP/1.x.y) leaves the default, 0.9, which would
            # answer without a status line; the client asked with a version, so it gets one.
            self.request_version = "HTTP/1.0"
        short = self.responses.get(code, ("error", ""))[0]
        self._send(Response.json(code, {"error": message or short}), close=True)

    def _send(self, response: Response, *, close: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if close or self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and response.status not in _NO_BODY:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        _LOG.debug("http %s", format % args)


class HttpApi:
    """Serves `router` on host:port (port 0: any free one, then read `port`)."""

    def __init__(self, host: str, port: int, router: Router, *, timeout_s: float = 10.0) -> None:
        self._server = _Server((host, port), router, timeout_s)
        self.port: int = self._server.server_address[1]

    def start(self) -> Callable[[], None]:
        thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        thread.start()
        _LOG.info("HTTP API on port %d", self.port)

        def stop() -> None:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)

        return stop

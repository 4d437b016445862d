"""The listener: the standard library's ThreadingHTTPServer in front of the gate and router.

Every answer is JSON, errors included ({"error": reason}), also the server's own refusals
(a request line it cannot read, an unknown method), and every answer carries the security
headers (gate.security_headers). A body must come with a Content-Length of at most 4096
bytes (413 beyond it, 411 for a chunked body); a body shorter than announced is refused. A
body no route read closes the connection after the answer, so that it is never read as the
next request; before closing, what the client still sends is read and dropped for up to a
second, so that it reads our answer instead of a reset.

Slow clients: one read waits at most `request_timeout_s`, and a whole request (head and
body) must arrive within `header_deadline_s` of its start, checked before every read, so a
client trickling a byte a second is cut off at the deadline. At most `max_connections` are
served at once; one more is answered 503 at once (over TLS: closed) and counted. With TLS
(`tls_cert`/`tls_key`, TLS 1.2 or newer) the handshake runs on the connection's own thread
under the same deadline, so a plain-HTTP client or a silent one never holds up the listener.
"""

from __future__ import annotations

import io
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fleet.config.collector import HttpSettings
from fleet.daemon.collector.http.auth import load_or_create_key
from fleet.daemon.collector.http.counters import HttpCounters, Tally
from fleet.daemon.collector.http.gate import AuditHook, Gate, security_headers
from fleet.daemon.collector.http.router import Refused, Response, Router

_LOG = logging.getLogger(__name__)
MAX_BODY = 4096
_NO_BODY = (204, 304)
_LINGER_S = 1.0
_LINGER_BYTES = 4 * 1024 * 1024
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nCache-Control: no-store\r\n"
    b"Content-Length: 52\r\n\r\n"
    b'{"error": "too many connections; try again shortly"}'
)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A key with a passphrase fails here instead of prompting on the service's stdin.
    context.load_cert_chain(cert, key, password=lambda: b"")
    return context


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of connections waits in the kernel, not in SYN retries
    block_on_close = False  # stopping does not wait for slow clients: their threads die with us

    def __init__(
        self,
        address: tuple[str, int],
        gate: Gate,
        *,
        timeout_s: float,
        deadline_s: float,
        max_connections: int,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.gate = gate
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.max_connections = max_connections
        self.tls = tls
        self.tally = Tally()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.tally.try_open(self.max_connections):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.tally.add("open", -1)
            raise

    def _refuse(self, sock: socket.socket) -> None:
        """Over the cap: answered at once on the listener's thread, never waited on."""
        try:
            if self.tls is None:
                sock.settimeout(0.2)
                sock.sendall(_BUSY)
                sock.shutdown(socket.SHUT_WR)
                sock.setblocking(False)
                sock.recv(65536)  # what already came, so the close is not a reset
        except OSError:
            pass
        finally:
            sock.close()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        connection = request
        try:
            if self.tls is not None:
                # CPython bounds the whole handshake by the socket timeout, not per read.
                request.settimeout(min(self.timeout_s, self.deadline_s))
                try:
                    connection = self.tls.wrap_socket(request, server_side=True)
                except OSError as exc:
                    self.tally.add("tls_failures")
                    _LOG.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                    return
            self.finish_request(connection, client_address)
        except Exception:  # noqa: BLE001 - a client that reset the connection is no bug of ours
            _LOG.debug("HTTP connection from %s ended", client_address[0], exc_info=True)
        finally:
            self.shutdown_request(connection)
            self.tally.add("open", -1)


class _DeadlineReader(io.RawIOBase):
    """The socket's reads, each bounded by the read timeout and by the request's deadline."""

    def __init__(self, handler: _Handler) -> None:
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        handler = self._handler
        left = handler.deadline - time.monotonic()
        if left <= 0:
            handler.timed_out()
            raise TimeoutError("the request did not arrive within http.header_deadline_s")
        handler.connection.settimeout(min(handler.server.timeout_s, left))
        try:
            count: int = handler.connection.recv_into(buffer)
        except TimeoutError:
            handler.timed_out()
            raise
        handler.received += count
        return count


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "fleet-collector"
    _body_read = False
    _linger = False
    deadline = 0.0
    received = 0
    _requests = 0

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = io.BufferedReader(_DeadlineReader(self))

    def finish(self) -> None:
        super().finish()
        if self._linger:
            self._drain()

    def _drain(self) -> None:
        """Read and drop what the client still sends of a refused body (bounded), so that
        it reads our answer instead of a connection reset."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            until = time.monotonic() + _LINGER_S
            dropped = 0
            while dropped < _LINGER_BYTES and (left := until - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                dropped += len(chunk)
        except (OSError, ValueError):
            pass

    def handle_one_request(self) -> None:
        self.deadline = time.monotonic() + self.server.deadline_s
        self.received = 0
        self._requests += 1
        super().handle_one_request()

    def timed_out(self) -> None:
        if self.received or self._requests == 1:  # not a kept-alive connection left idle
            self.server.tally.add("timeouts")

    def _dispatch(self) -> None:
        self._body_read = False
        try:
            response = self.server.gate.dispatch(
                self.command, self.path, self.headers, self._body, self.client_address[0]
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
            self.close_connection = self._linger = True
        self._send(response)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _announces_body(self) -> bool:
        length = self.headers.get("Content-Length", "0").strip()
        return "Transfer-Encoding" in self.headers or length != "0"

    def _body(self) -> bytes:
        """The body, all of it: Content-Length is checked, not believed."""
        if self._body_read:
            raise RuntimeError("the body was read already")  # the gate hands on what it read
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
            self.close_connection = self._linger = True  # never read it as a request
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
        self.server.tally.answered(response.status)
        self.connection.settimeout(self.server.timeout_s)  # reads may have left it shorter
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in security_headers(response).items():
            self.send_header(name, value)
        if close or self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and response.status not in _NO_BODY:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        _LOG.debug("http %s", format % args)


class HttpApi:
    """Serves `handler` on host:port (port 0: any free one, then read `port`).

    `handler` is a Gate, or a bare Router, which is put behind a gate without users: reads
    are open and every change is refused."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: Gate | Router,
        *,
        timeout_s: float = 10.0,
        header_deadline_s: float = 15.0,
        max_connections: int = 64,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if isinstance(handler, Router):
            bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            handler = Gate(handler, HttpSettings(bind=bind), key=secrets.token_bytes(32))
        self.gate = handler
        self._server = _Server(
            (host, port),
            handler,
            timeout_s=timeout_s,
            deadline_s=header_deadline_s,
            max_connections=max_connections,
            tls=tls,
        )
        self.port: int = self._server.server_address[1]
        self.tls = tls is not None

    @classmethod
    def from_settings(
        cls,
        http: HttpSettings,
        router: Router,
        *,
        session_key_file: Path,
        on_audit: AuditHook | None = None,
    ) -> HttpApi:
        """The collector's listener as configured: gate, limits, TLS, the session key file."""
        tls = None
        if http.tls_cert is not None and http.tls_key is not None:
            tls = tls_context(http.tls_cert, http.tls_key)
        gate = Gate(
            router,
            http,
            key=load_or_create_key(session_key_file),
            tls=tls is not None,
            on_audit=on_audit,
        )
        return cls(
            http.bind_host,
            http.bind_port,
            gate,
            timeout_s=http.request_timeout_s,
            header_deadline_s=http.header_deadline_s,
            max_connections=http.max_connections,
            tls=tls,
        )

    def counters(self) -> HttpCounters:
        tally, gate = self._server.tally, self.gate.counters
        with tally.lock:
            return HttpCounters(
                open=tally.open,
                refused=tally.refused,
                timeouts=tally.timeouts,
                tls_failures=tally.tls_failures,
                by_status=dict(tally.by_status),
                login_failures=gate.login_failures,
                logins_throttled=gate.logins_throttled,
                refused_host=gate.refused_host,
            )

    def start(self) -> Callable[[], None]:
        thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        thread.start()
        scheme = "HTTPS" if self.tls else "HTTP"
        _LOG.info("%s API on port %d", scheme, self.port)

        def stop() -> None:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)

        return stop

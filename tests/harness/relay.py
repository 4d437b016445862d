"""A TCP relay in front of a real server that can hold an HTTP exchange half-way.

The collector talks to InfluxDB through it (the real bytes both ways); a test arms it to
stop forwarding at one exact moment of the next `POST /write`:

- `hold="request"`: the request is held back - InfluxDB never receives it;
- `hold="response"`: the request reaches InfluxDB (stored) but its answer is held back -
  the collector never learns that the write succeeded.

`held` is set once the relay holds; the test then kills the collector, which is exactly "a
crash during the InfluxDB write". `release()` lets everything flow again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

Hold = Literal["request", "response"]


class HttpRelay:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.held = threading.Event()
        self.writes = 0  # `POST /write` requests forwarded
        self._hold: Hold | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def arm(self, hold: Hold) -> None:
        """Hold the next `POST /write` (its request or its response) until `release()`."""
        with self._lock:
            self.held.clear()
            self._hold = hold

    def release(self) -> None:
        with self._lock:
            self._hold = None
        self._flowing.set()

    def close(self) -> None:
        self._stopped = True
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            in_write = threading.Event()  # a /write request went up; its answer is next
            threading.Thread(
                target=self._pump, args=(client, upstream, in_write, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, in_write, False), daemon=True
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, in_write: threading.Event, up: bool
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up and data.startswith(b"POST /write"):
                    self._maybe_hold("request")
                    in_write.set()
                    with self._lock:
                        self.writes += 1
                elif not up and in_write.is_set():
                    in_write.clear()
                    self._maybe_hold("response")
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _maybe_hold(self, moment: Hold) -> None:
        with self._lock:
            if self._hold != moment:
                return
            self._hold = None  # one exchange only
            self._flowing.clear()
            self.held.set()
        self._flowing.wait()

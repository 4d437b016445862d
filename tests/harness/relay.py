"""A TCP relay in front of a real server that can hold an HTTP exchange half-way.

The collector talks to InfluxDB through it (the real bytes both ways); a test arms it to
stop forwarding at one exact moment of the next `POST /write`:

- `hold="request"`: the request is held back - InfluxDB never receives it;
- `hold="response"`: the request reaches InfluxDB (stored) but its answer is held back -
  the collector never learns that the write succeeded.

Only a write whose request carries `marker` is held (the collector also writes its own
`pipeline` points). `held` is set once the relay holds; the test then kills the collector,
which is exactly "a crash during the InfluxDB write". `release()` drops the held exchange
(its connection is closed) and lets every other one flow again.
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
        self._armed_after = 0  # only writes numbered above this are held
        self._hold: Hold | None = None
        self._marker = b""
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def arm(self, hold: Hold, marker: bytes) -> None:
        """Hold the next `POST /write` carrying `marker` (its request or its response) until
        `release()`. A write already under way is not "next": InfluxDB may have answered
        the test before the relay passed the answer on."""
        with self._lock:
            self._armed_after = self.writes
            self.held.clear()
            self._hold = hold
            self._marker = marker

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
            # The /write request going up (its answer comes next) and its number.
            request, number = bytearray(), [0]
            for args in (
                (client, upstream, request, number, True),
                (upstream, client, request, number, False),
            ):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        request: bytearray,
        number: list[int],
        up: bool,
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up:
                    if data.startswith(b"POST /write"):
                        request[:] = b""
                        with self._lock:
                            self.writes += 1
                            number[0] = self.writes
                    if data.startswith(b"POST /write") or request:
                        request += data  # headers and body may come in separate pieces
                        if self._held("request", request, number[0]):
                            break
                elif request:
                    if self._held("response", request, number[0]):
                        break
                    request[:] = b""
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _held(self, moment: Hold, request: bytearray, number: int) -> bool:
        """True if this exchange was held: after `release()` it is dropped, never completed
        (its client was killed meanwhile), and the pump closes the connection."""
        with self._lock:
            if self._hold != moment or number <= self._armed_after or self._marker not in request:
                return False
            self._hold = None  # one exchange only
            self._flowing.clear()
            self.held.set()
        self._flowing.wait()
        return True

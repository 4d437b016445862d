"""What every private server of the harness shares: finding the binary, starting
and waiting for readiness, clean stop, kill, restart, and stopping at exit."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from tests.harness.process import free_port, kill_process, port_open, spawn, stop_process, tail
from tests.harness.waiting import wait_until

_LOG = logging.getLogger(__name__)

SETUP_HINT = "run scripts/setup (installs the Debian packages mosquitto and influxdb)"

# Debian installs daemons in /usr/sbin, which is not on every user's PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin")


class ServerError(RuntimeError):
    """A private server could not be found, started or talked to."""


def find_binary(name: str) -> str:
    """Absolute path of a server binary, or ServerError saying how to install it."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _EXTRA_BIN_DIRS:
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise ServerError(f"{name} not found on PATH or in /usr/sbin: {SETUP_HINT}")


_live: set[ManagedServer] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_live):
        try:
            server.stop(timeout=5)
        except (OSError, subprocess.SubprocessError):
            _LOG.exception("could not stop %r at exit", server)


class ManagedServer:
    """Process life cycle shared by both servers; subclasses write config and probe."""

    name: ClassVar[str] = "server"
    start_timeout: ClassVar[float] = 20.0

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def _command(self) -> list[str]:
        """Write the config file and return the command line."""
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    @property
    def output_path(self) -> Path:
        """The process's stdout and stderr (start-up errors land here)."""
        return self.workdir / f"{self.name}.out"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        if self.running:
            raise ServerError(f"{self!r} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = self._command()
        if port_open(self.host, self.port):
            raise ServerError(f"{self!r}: port {self.port} is already in use by another process")
        self._proc = spawn(command, self.output_path)
        _live.add(self)
        try:
            wait_until(
                self._ready_or_dead,
                timeout=self.start_timeout,
                interval=0.02,
                message=f"{self!r} ready",
            )
        except AssertionError as exc:
            self.kill()
            raise ServerError(f"{exc}\n{self.diagnostics()}") from None
        except BaseException:
            self.kill()
            raise
        _LOG.info("%r started, pid %s", self, self.pid)
        return self

    def _ready_or_dead(self) -> bool:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise ServerError(
                f"{self!r} exited with code {code} while starting\n{self.diagnostics()}"
            )
        return self._is_ready()

    def stop(self, timeout: float = 15) -> int | None:
        """Clean stop (SIGTERM, wait; SIGKILL after `timeout`). Returns the exit code."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        return stop_process(proc, timeout) if proc is not None else None

    def kill(self) -> int | None:
        """Crash it: SIGKILL, nothing saved on the way out. Returns the exit code."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        return kill_process(proc) if proc is not None else None

    def restart(self) -> Self:
        """Stop cleanly, then start again on the same port with the same data."""
        self.stop()
        return self.start()

    def diagnostics(self) -> str:
        """Tail of the server's output, for error messages."""
        return f"--- {self.output_path} ---\n{tail(self.output_path)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.host}:{self.port}, {self.workdir})"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

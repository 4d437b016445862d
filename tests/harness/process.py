"""Child processes for tests and the demo: free ports, spawning with a log file, stopping.

Children are started in their own session (a Ctrl-C in the terminal reaches
only us, and we stop them in order) and, where util-linux `setpriv` exists,
with a parent-death signal, so a test run killed with SIGKILL does not leave
brokers and databases running. The parent-death signal fires when the
*thread* that started the child ends: start long-lived children from the main
thread (pytest fixtures and the demo do).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

_LOG = logging.getLogger(__name__)

_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now and not handed out before by this process.

    The kernel may give the same ephemeral port twice in a row once it is
    closed again; remembering what we handed out keeps two servers of one test
    run from being given the same port before either has bound it.
    """
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free TCP port found in 100 tries")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr appended to `log_path`."""
    setpriv = shutil.which("setpriv")
    command = [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else list(argv)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        # The child keeps its own copy of the descriptor; ours closes here.
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def stop_process(
    proc: subprocess.Popen[bytes], timeout: float = 15, sig: int = signal.SIGTERM
) -> int:
    """Send `sig`, wait up to `timeout` s, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _LOG.warning("pid %d ignored signal %d for %.0f s; killing it", proc.pid, sig, timeout)
        except ProcessLookupError:
            pass
    return kill_process(proc)


def kill_process(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL (if still running) and reap. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    return proc.wait()


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])

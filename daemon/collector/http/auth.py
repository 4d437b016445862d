"""Who is asking: password hashes, the users and their sessions, failed-login throttling.

Standard library only (why: the package's __init__ docstring).

- Passwords are kept as `scrypt$n$r$p$salt$hash` (salt and hash base64). n=2^14, r=8, p=1
  costs ~80 ms and 16 MiB on the station's 2-core machine: slow enough against guessing a
  stolen config, cheap enough for a login; at most two run at once, so a burst of logins
  cannot take 64 x 16 MiB.
- A verified password is remembered (as an HMAC under a per-process key, never the password)
  so a script sending HTTP Basic on every request costs one scrypt, not one per request.
- A session is a signed cookie: user, expiry, nonce and a fingerprint of the user's password
  hash, HMAC-SHA256 under a key kept in a 0600 file (sessions survive a restart). Changing a
  user's password or removing the user ends their sessions at once; the CSRF token is an
  HMAC of the session's nonce, so it stays the same while the session slides forward.
- Logging out forgets the session's nonce in this process: after a restart a logged-out
  cookie would be good again until it expires, but the browser has dropped it (Max-Age=0),
  so only a copied cookie could be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_MAXMEM = 64 * 1024 * 1024
_DKLEN = 32
MIN_PASSWORD_CHARS = 10
_MAX_PASSWORD_BYTES = 1024  # scrypt reads it all; a 4 kB "password" is not one
KEY_BYTES = 32
COOKIE = "fleet_session"
_RENEW_AFTER_S = 60.0  # a new cookie at most once a minute, not on every poll
_DUMMY_SALT = b"\0" * 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass")[:_MAX_PASSWORD_BYTES],
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_MAXMEM,
        dklen=_DKLEN,
    )


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The stored form of `password` (a fresh salt each time)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` is the one `stored` was made from (False for a malformed hash)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError, MemoryError):  # a hand-edited hash: no user, not a crash
        return False
    return hmac.compare_digest(actual, expected)


class Users:
    """The configured users (name -> stored hash); `replace` for a reloaded config."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._lock = threading.Lock()
        self._scrypt_slots = threading.BoundedSemaphore(2)
        self._cache_key = secrets.token_bytes(KEY_BYTES)
        self._verified: dict[str, tuple[str, bytes]] = {}  # user -> (stored, HMAC of password)
        self._users = dict(users)

    def replace(self, users: Mapping[str, str]) -> None:
        with self._lock:
            self._users = dict(users)
            self._verified.clear()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._users)

    def fingerprint(self, user: str) -> bytes | None:
        """A short digest of the user's hash (None: no such user): a session names it, so a
        new password ends the old sessions."""
        with self._lock:
            stored = self._users.get(user)
        return None if stored is None else hashlib.sha256(stored.encode()).digest()[:12]

    def check(self, user: str, password: str) -> bool:
        """Whether user + password are right; an unknown user costs the same scrypt."""
        mark = hmac.new(self._cache_key, password.encode("utf-8", "surrogatepass"), "sha256")
        with self._lock:
            stored = self._users.get(user)
            cached = self._verified.get(user)
        # A wrong password still pays scrypt below, cached user or not: no cheap guessing.
        if (
            cached is not None
            and cached[0] == stored
            and hmac.compare_digest(cached[1], mark.digest())
        ):
            return True
        with self._scrypt_slots:
            if stored is None:
                _scrypt(password, _DUMMY_SALT, SCRYPT_N, SCRYPT_R, SCRYPT_P)
                return False
            ok = verify_password(password, stored)
        if ok:
            with self._lock:
                if self._users.get(user) == stored:
                    self._verified[user] = (stored, mark.digest())
        return ok


class Throttle:
    """Failed logins per (user, client address) in a sliding minute."""

    WINDOW_S = 60.0
    _MAX_KEYS = 10_000  # a spray of invented names cannot grow the table without end

    def __init__(self, max_failures: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_failures
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], list[float]] = {}

    def wait_s(self, user: str, address: str) -> float:
        """Seconds until this pair may try again; 0 when it may now."""
        now = self._clock()
        with self._lock:
            recent = self._recent((user, address), now)
            if len(recent) < self._max:
                return 0.0
            return max(0.1, recent[0] + self.WINDOW_S - now)

    def failed(self, user: str, address: str) -> int:
        """Counts one failure; the failures of the pair in the last minute."""
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self._MAX_KEYS:
                for key in [k for k, v in self._failures.items() if v[-1] <= now - self.WINDOW_S]:
                    del self._failures[key]
                if len(self._failures) >= self._MAX_KEYS:
                    self._failures.pop(next(iter(self._failures)))
            recent = self._recent((user, address), now)
            recent.append(now)
            self._failures[(user, address)] = recent
            return len(recent)

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            self._failures.pop((user, address), None)

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        return [t for t in self._failures.get(key, []) if t > now - self.WINDOW_S]


@dataclass(frozen=True)
class Session:
    user: str
    expires_s: int
    nonce: str
    csrf: str


class Sessions:
    """Signed session cookies for `users`; `hours` after the last request they end."""

    def __init__(
        self,
        key: bytes,
        users: Users,
        *,
        hours: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(key) < 16:
            raise ValueError("the session key must be at least 16 bytes")
        self._key = key
        self._users = users
        self.lifetime_s = int(hours * 3600)
        self._clock = clock
        self._lock = threading.Lock()
        self._revoked: dict[str, int] = {}  # nonce -> its cookie's last possible expiry

    def issue(self, user: str, nonce: str | None = None) -> tuple[str, Session]:
        """A cookie value for `user` (a new session, or `nonce`'s renewed) and the session."""
        nonce = nonce or _b64(secrets.token_bytes(16))
        expires = int(self._clock()) + self.lifetime_s
        fingerprint = self._users.fingerprint(user) or b""
        name = _b64(user.encode())
        sig = self._sign(name, expires, nonce, fingerprint)
        return f"{name}.{expires}.{nonce}.{sig}", Session(user, expires, nonce, self._csrf(nonce))

    def check(self, value: str) -> Session | None:
        """The session of a cookie value; None when forged, expired, revoked or its user gone."""
        parts = value.split(".")
        if (
            len(parts) != 4
            or not parts[1].isascii()
            or not parts[1].isdigit()
            or len(parts[1]) > 12
        ):
            return None
        name, expires_text, nonce, sig = parts
        try:
            user = _unb64(name).decode("utf-8")
        except ValueError:
            return None
        fingerprint = self._users.fingerprint(user)
        expires = int(expires_text)
        if fingerprint is None:
            return None
        if not hmac.compare_digest(sig, self._sign(name, expires, nonce, fingerprint)):
            return None
        if expires <= self._clock():
            return None
        with self._lock:
            if nonce in self._revoked:
                return None
        return Session(user, expires, nonce, self._csrf(nonce))

    def renewal(self, session: Session) -> str | None:
        """A fresh cookie when the session was last renewed over a minute ago."""
        if session.expires_s - self._clock() > self.lifetime_s - _RENEW_AFTER_S:
            return None
        return self.issue(session.user, session.nonce)[0]

    def revoke(self, session: Session) -> None:
        now = int(self._clock())
        with self._lock:
            self._revoked = {n: e for n, e in self._revoked.items() if e > now}
            # Renewals of this nonce can expire at most a lifetime from now.
            self._revoked[session.nonce] = now + self.lifetime_s

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, session.csrf)

    def _sign(self, name: str, expires: int, nonce: str, fingerprint: bytes) -> str:
        message = f"v1|{name}|{expires}|{nonce}|".encode("ascii", "replace") + fingerprint
        return _b64(hmac.new(self._key, message, "sha256").digest())

    def _csrf(self, nonce: str) -> str:
        return _b64(hmac.new(self._key, f"csrf|{nonce}".encode(), "sha256").digest()[:24])


def cookie_header(value: str, *, max_age: int, secure: bool) -> str:
    """The Set-Cookie value: script cannot read it, no other site's request carries it."""
    attributes = f"{COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict"
    return attributes + ("; Secure" if secure else "")


def load_or_create_key(path: Path) -> bytes:
    """The session key in `path`, made (0600, random) when the file does not exist yet."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(KEY_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_or_create_key(path)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(key.hex() + "\n")
            file.flush()
            os.fsync(file.fileno())
        return key
    except UnicodeDecodeError:
        text = ""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ValueError(
            f"{path} does not hold a session key (hex, at least 16 bytes); delete it and a "
            "new one is made at start (everyone signs in again)"
        )
    return key

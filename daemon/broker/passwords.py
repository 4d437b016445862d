"""Mosquitto 2.0's password file: `user:$7$<iterations>$<salt>$<hash>`, one user a line.

The format of `mosquitto_passwd` 2.0 (checked against the real one in the tests): PBKDF2
with HMAC-SHA512 over the password, 101 iterations, a 12-byte random salt, a 64-byte hash,
salt and hash in standard base64 with padding. 101 iterations is what Mosquitto 2.0 writes
and verifies cheaply on every connect; the passwords themselves are long random tokens,
which is what protects them, not the iteration count.

A hash is kept as it is while the user's password still verifies against it, so a second
run writes the same bytes (a fresh salt on every run would rewrite the file every time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

ITERATIONS = 101
SALT_BYTES = 12
_DIGEST = "sha512"
_TAG = "7"  # Mosquitto's id of PBKDF2-SHA512


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`$7$101$<salt>$<hash>` of `password`, with a new random salt unless one is given."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac(_DIGEST, password.encode(), salt, ITERATIONS)
    return f"${_TAG}${ITERATIONS}${_b64(salt)}${_b64(digest)}"


def verify(encoded: str, password: str) -> bool:
    """True if `encoded` (a `$7$...` hash) is the hash of `password`; False for anything else."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != _TAG or not parts[2].isdigit():
        return False
    iterations = int(parts[2])
    if not 1 <= iterations <= 10_000_000:  # a corrupt file must not stall the command
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (binascii.Error, ValueError):
        return False
    digest = hashlib.pbkdf2_hmac(_DIGEST, password.encode(), salt, iterations)
    return hmac.compare_digest(digest, expected)


def parse(text: str) -> dict[str, str]:
    """User -> hash of a password file; lines that are not `user:hash` are left out."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        user, sep, encoded = line.partition(":")
        if sep and user and encoded:
            entries.setdefault(user, encoded)
    return entries


def entries_for(
    passwords: Sequence[tuple[str, str]], existing: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(user, hash) for each (user, password): the existing hash if it still verifies."""
    out: list[tuple[str, str]] = []
    for user, password in passwords:
        old = existing.get(user)
        kept = old is not None and verify(old, password)
        out.append((user, old if kept and old is not None else hash_password(password)))
    return out


def render(entries: Sequence[tuple[str, str]]) -> str:
    """The password file's text. Names are checked by the caller (no ':' nor newline)."""
    return "".join(f"{user}:{encoded}\n" for user, encoded in entries)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")

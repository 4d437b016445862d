"""Pairing with a NinebotCrypto scooter, and the app keys kept so that it happens once.

Handshake (protocols.md §1.7 A): `5B` INIT gets the scooter's BLE key and serial;
`5C` offers our 16-byte app key, once per `interval_s`, until the scooter answers 1
(its power button was pressed, or it knows the key already); `5D` with the serial
completes it. The scooter remembers one app key: whoever pairs last owns it, so a
stored key it answers 0 to was displaced by another app and a new pairing starts.

Keys live in one file per scooter under a directory created 0700; each file is
0600, written atomically (temp file, fsync, rename), and holds the key in hex. A key
never appears in a log line or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from fleet.drivers.ninebot.ble_link import Link
from fleet.drivers.ninebot.crypto import KEY_LEN

_LOG = logging.getLogger(__name__)

CMD_INIT = 0x5B
CMD_APP_KEY = 0x5C
CMD_PAIR = 0x5D
SERIAL_LEN = 14
_INIT_REPLY = KEY_LEN + SERIAL_LEN
_ACCEPTED = 1
_HEX_KEY = re.compile(r"^[0-9a-f]{32}$")


class PairingError(Exception):
    """The handshake did not complete; the message is the device's availability detail."""


class NoInitReply(PairingError):
    """Nothing answered the encrypted INIT: not (or not only) a NinebotCrypto scooter."""


class NotNinebotCrypto(PairingError):
    """Something answered INIT, but not as a NinebotCrypto scooter does."""


class KeyStore:
    """App keys by scooter address, one 0600 file each in a 0700 directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, address: str) -> Path:
        return self.directory / (re.sub(r"[^0-9A-Za-z]", "-", address.upper()) + ".key")

    def load(self, address: str) -> bytes | None:
        """The stored key, or None when there is none or it is unusable (said in the log)."""
        path = self.path(address)
        try:
            text = path.read_text(encoding="ascii").strip().lower()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            _LOG.warning("cannot read the app key file %s (%s): pairing again", path, exc)
            return None
        if not _HEX_KEY.match(text):
            _LOG.warning("app key file %s is not 32 hex digits: pairing again", path)
            return None
        return bytes.fromhex(text)

    def save(self, address: str, key: bytes) -> None:
        """Write the key atomically; raises OSError (the caller logs it and carries on)."""
        self._ensure_directory()
        path = self.path(address)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(key.hex() + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)

    async def store(self, device: str, address: str, key: bytes) -> bool:
        """`save` off the event loop; a failure is logged (never with the key), not raised."""
        try:
            await asyncio.to_thread(self.save, address, key)
        except OSError as exc:
            _LOG.warning(
                "%s: paired, but the app key could not be stored in %s (%s): the next "
                "connection will want the power button again",
                device,
                self.directory,
                exc.strerror or type(exc).__name__,
            )
            return False
        _LOG.info("%s: paired with %s; app key stored in %s", device, address, self.directory)
        return True

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(self.directory.stat().st_mode)
        if mode & 0o077:
            _LOG.warning(
                "app key directory %s is mode %o: others can reach the keys; make it 0700",
                self.directory,
                mode,
            )


async def handshake(
    link: Link,
    keys: KeyStore,
    address: str,
    *,
    timeout_s: float,
    interval_s: float,
    pair_timeout_s: float,
    on_button: Callable[[bool], None],
) -> tuple[bytes, bool]:
    """Pair over `link` (its crypto set up); returns the app key and whether it is new.

    The stored key of `address` is offered first (read only once the scooter answered).

    `on_button(displaced)` is called on every `5C` the scooter answers 0 to: the
    scooter waits for its power button (`displaced`: our stored key was refused).
    Raises PairingError (a subclass says which) with the reason in words.
    """
    crypto = link.crypto
    assert crypto is not None
    init = await link.request(CMD_INIT, b"", timeout_s)
    if init is None:
        raise NoInitReply("no reply over BLE, plaintext or encrypted")
    if len(init.payload) < _INIT_REPLY:
        raise NotNinebotCrypto(
            f"INIT reply of {len(init.payload)} bytes, {_INIT_REPLY} expected: "
            "not NinebotCrypto - not supported; use the serial link"
        )
    crypto.set_ble_key(init.payload[:KEY_LEN])
    serial = init.payload[KEY_LEN:_INIT_REPLY]
    stored = await asyncio.to_thread(keys.load, address)

    key = stored if stored is not None else secrets.token_bytes(KEY_LEN)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + pair_timeout_s
    while True:
        started = loop.time()
        reply = await link.request(CMD_APP_KEY, key, timeout_s)
        if reply is not None and reply.arg == _ACCEPTED:
            break
        if reply is not None:
            displaced = key == stored
            if displaced:
                # The scooter keeps one app key; ours was replaced. A new one, and
                # the button, are the only way back.
                key = secrets.token_bytes(KEY_LEN)
            on_button(displaced)
        if loop.time() >= deadline:
            if reply is None:
                raise PairingError("no reply to the app key (5C)")
            raise PairingError(
                f"not paired: the power button was not pressed within {pair_timeout_s:g} s"
            )
        await asyncio.sleep(max(0.0, started + interval_s - loop.time()))
    crypto.set_app_key(key)
    done = await link.request(CMD_PAIR, serial, timeout_s)
    if done is None or done.arg != _ACCEPTED:
        raise PairingError("pairing refused: the scooter did not confirm the serial (5D)")
    return key, key != stored

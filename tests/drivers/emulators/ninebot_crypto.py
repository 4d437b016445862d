"""The scooter's side of NinebotCrypto, written apart from the driver's `crypto.py`.

Counter frames go through `cryptography`'s AES-CCM (the construction the driver
builds by hand from AES-ECB blocks, protocols.md §1.7 A as the driver's README
reads it), the first message through its own few lines, so a slip in the driver's
keystream, MAC or counter shows up here as a refused frame rather than agreeing
with itself.

`CryptoScooter` refuses plaintext (no answer, counted), wants the handshake
(`5B`, `5C` until its power button is "pressed" after `press_after` offers of an
unknown key, `5D` with its serial), checks the MAC and counter of every frame it
receives (a bad one is counted and unanswered), remembers one paired app key, and
only then answers register reads through the wrapped `NinebotEmulator`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from tests.drivers.emulators.ninebot import BMS, NinebotEmulator, _ck, ninebot_frame

FW = bytes.fromhex("97CFB802844143DE56002B3B34780A5D")
HDR = b"\x5a\xa5"
APP, BLE = 0x3E, 0x21
TAMPERED_PCT = 3  # what a bit-flipped BMS reply would claim, if anyone believed it


def sha16(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()[:16]


def padded_name(name: str) -> bytes:
    return name.encode()[:16].ljust(16, b"\0")


def first_message(key: bytes, body: bytes) -> bytes:
    """The first-message keystream XOR (its own inverse)."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    block = enc.update(FW) + enc.finalize()
    return bytes(b ^ block[i % 16] for i, b in enumerate(body))


def first_crc(body: bytes) -> bytes:
    return (0xFFFF - (sum(body) & 0xFFFF)).to_bytes(2, "little")


@dataclass
class CryptoStats:
    plaintext_refused: int = 0
    bad_mac: int = 0
    bad_counter: int = 0
    unauthenticated: int = 0  # reads before the handshake completed
    inits: int = 0
    app_key_offers: int = 0
    presses: int = 0
    pairings: int = 0


@dataclass
class CryptoScooter:
    name: str
    emulator: NinebotEmulator
    ble_key: bytes = bytes(range(0x40, 0x50))
    serial: bytes = b"N4GSD1234C5678"
    press_after: int = 3  # unknown-key offers before someone presses the button
    paired_key: bytes | None = None
    tamper_bms_replies: int = 0  # next N BMS 0x30 replies get their battery % bit-flipped
    init_reply_crc_wrong: bool = False  # a firmware whose INIT reply we would not understand
    stats: CryptoStats = field(default_factory=CryptoStats)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new connection: the handshake starts over (the paired key is kept)."""
        self._buf = bytearray()
        self._key = sha16(padded_name(self.name) + FW)
        self._keyed = False
        self._authed = False
        self._pending: bytes | None = None
        self._offers = 0
        self._rx = 0  # the app's last counter
        self._tx = 0

    # --- bytes in, bytes out ----------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while True:
            i = self._buf.find(HDR)
            if i < 0 or len(self._buf) < i + 3:
                return bytes(out)
            del self._buf[:i]
            n = self._buf[2]
            plain_len, wire_len = n + 9, n + 13
            head = bytes(self._buf[:plain_len])
            if len(head) == plain_len and _ck(head[2:-2]) == head[-2:]:
                del self._buf[:plain_len]
                self.stats.plaintext_refused += 1
                continue
            if len(self._buf) < wire_len:
                return bytes(out)
            wire = bytes(self._buf[:wire_len])
            del self._buf[:wire_len]
            body = self._open(wire)
            if body is not None:
                out += self._answer(body)

    def _open(self, wire: bytes) -> bytes | None:
        head, sealed, mac = wire[:3], wire[3:-6], wire[-6:-2]
        ctr = int.from_bytes(wire[-2:], "little")
        if not self._keyed:
            body = first_message(self._key, sealed)
            if ctr != 0 or mac != b"\0\0" + first_crc(body):
                self.stats.bad_mac += 1
                return None
            return body
        if ctr != (self._rx + 1) & 0xFFFF:  # the driver never skips one
            self.stats.bad_counter += 1
            return None
        try:
            body = AESCCM(self._key, tag_length=4).decrypt(self._nonce(ctr), sealed + mac, head)
        except InvalidTag:
            self.stats.bad_mac += 1
            return None
        self._rx = ctr
        return body

    def _nonce(self, ctr: int) -> bytes:
        return ctr.to_bytes(4, "big") + self.ble_key[:8] + b"\0"

    def _seal(self, body: bytes, tamper: tuple[int, int] | None = None) -> bytes:
        head = HDR + bytes([len(body) - 4])
        if not self._keyed:
            return head + first_message(self._key, body) + b"\0\0" + first_crc(body) + b"\0\0"
        self._tx += 1
        sealed = bytearray(
            AESCCM(self._key, tag_length=4).encrypt(self._nonce(self._tx), body, head)
        )
        if tamper is not None:
            at, flip = tamper
            sealed[at] ^= flip  # CTR mode: flips exactly that plaintext byte; the MAC stays
        return head + bytes(sealed) + self._tx.to_bytes(2, "little")

    # --- the scooter's behaviour ------------------------------------------------------------

    def _answer(self, body: bytes) -> bytes:
        src, dst, cmd, payload = body[0], body[1], body[2], body[4:]
        if dst == BLE and cmd == 0x5B and not self._keyed:
            self.stats.inits += 1
            reply = self._seal(bytes([BLE, APP, 0x5B, 0]) + self.ble_key + self.serial)
            if self.init_reply_crc_wrong:
                reply = reply[:-3] + bytes([reply[-3] ^ 1]) + reply[-2:]
            self._keyed = True
            self._key = sha16(padded_name(self.name) + self.ble_key)
            return reply
        if dst == BLE and cmd == 0x5C and self._keyed and len(payload) == 16:
            return self._offer(payload)
        if dst == BLE and cmd == 0x5D and self._pending is not None:
            ok = payload == self.serial
            if ok:
                self.paired_key, self._authed = self._pending, True
                self.stats.pairings += 1
            return self._seal(bytes([BLE, APP, 0x5D, 1 if ok else 0]))
        if cmd == 0x01 and src == APP:
            if not self._authed:
                self.stats.unauthenticated += 1
                return b""
            return self._read(body)
        return b""

    def _offer(self, key: bytes) -> bytes:
        self.stats.app_key_offers += 1
        if key != self.paired_key:
            self._offers += 1
            if self._offers < self.press_after:
                return self._seal(bytes([BLE, APP, 0x5C, 0]))
            self.stats.presses += 1
        reply = self._seal(bytes([BLE, APP, 0x5C, 1]))
        self._pending = key
        self._key = sha16(key + self.ble_key)
        return reply

    def _read(self, body: bytes) -> bytes:
        request = ninebot_frame(body[0], body[1], body[2], body[3], body[4:])
        out = bytearray()
        plain = self.emulator.feed(request)
        while plain:
            n = plain[2] + 9
            frame, plain = plain[:n], plain[n:]
            reply = frame[3:-2]  # src dst cmd arg payload, without the checksum
            tamper = None
            if reply[0] == BMS and reply[3] == 0x30 and self.tamper_bms_replies > 0:
                self.tamper_bms_replies -= 1
                # The %-word 0x32 is payload byte 4: body byte 8.
                tamper = (8, reply[8] ^ TAMPERED_PCT)
            out += self._seal(reply, tamper)
        return bytes(out)

"""NinebotCrypto: the encryption of the Ninebot / Xiaomi BLE link on newer BLE firmware.

Written from the protocol description in protocols.md §1.7 A only (every existing
implementation is AGPL or a port of AGPL code; none was read). Pure and free of I/O:
bytes in, bytes out, and the key and counter state of one side of one connection.

Wire layout of an encrypted frame (the plain frame `5A A5 L SRC DST CMD ARG PAYLOAD[L]`
carries no checksum before it is encrypted):

    5A A5 L | encrypted(SRC DST CMD ARG PAYLOAD) | MAC(4) | COUNTER(2)     (L + 13 bytes)

Keys: `SHA1(name16 ‖ FW_KEY)[:16]` until the scooter's BLE key is known (INIT, `5B`),
then `SHA1(name16 ‖ ble_key)[:16]`, then `SHA1(app_key ‖ ble_key)[:16]` once the app key
is accepted (`5C`). name16 is the BLE name, UTF-8, zero-padded (cut) to 16 bytes.

First message (before the BLE key is known; counter 0): the body is XORed with
`AES(key, FW_KEY)`, and the MAC field is `00 00 CRC_lo CRC_hi` with
`CRC = ~sum(plain body) & 0xFFFF`. This reproduces the §1.6.5 vector byte for byte.

Later messages: the keystream is AES-128-ECB over the counter blocks
`01 | counter(4, BE) | ble_key[0:8] | 00 00 | block#` (§1.7) with block# from 1, and the
MAC is a CBC-MAC closed with block# 0 - the shape of AES-CCM with a 13-byte nonce and a
4-byte tag, the `5A A5 L` header as associated data. Those choices are inferred (the
description leaves them open and there is no vector for them); the README says so.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

FW_KEY = bytes.fromhex("97CFB802844143DE56002B3B34780A5D")
HEADER = b"\x5a\xa5"
GEN3_HEADER = b"\x5a\xb5"  # Segway "Encryption2" Gen3: a different protocol
CLEAR = 3  # 5A A5 L stay in clear
MAC_LEN = 4
COUNTER_LEN = 2
OVERHEAD = MAC_LEN + COUNTER_LEN  # what encryption adds to a plain frame without checksum
MIN_WIRE = CLEAR + 4 + OVERHEAD  # SRC DST CMD ARG and an empty payload
KEY_LEN = 16
BLOCK = 16
_NAME_LEN = 16
_BLE_KEY_IN_NONCE = 8
# A peer's counter may jump (our requests or its replies lost) but not by more than
# half the 16-bit space: beyond that, it is an old frame played again.
_COUNTER_WINDOW = 0x8000
_CCM_FLAGS_B0 = 0x49  # associated data present, 4-byte tag, 2-byte length field
_CCM_FLAGS_A = 0x01  # 2-byte block counter


class Refusal(enum.Enum):
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    GEN3 = "gen3"
    MAC = "mac"
    COUNTER = "counter"


class FrameRefused(ValueError):
    """An encrypted frame that must not be used; `reason` says which check it failed."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class Phase(enum.Enum):
    INIT = "init"  # key from the BLE name; first-message format
    BLE_KEY = "ble_key"  # the scooter's BLE key is known; counter frames
    APP_KEY = "app_key"  # our app key was accepted


def _sha16(*parts: bytes) -> bytes:
    # SHA-1 is what the protocol specifies; here it derives keys, it is not a signature.
    return hashlib.sha1(b"".join(parts), usedforsecurity=False).digest()[:KEY_LEN]


def name16(name: str) -> bytes:
    return name.encode("utf-8")[:_NAME_LEN].ljust(_NAME_LEN, b"\0")


def first_crc(body: bytes) -> bytes:
    """CRC of the first message: ~sum(plain bytes after `5A A5 L`) & 0xFFFF, little-endian."""
    return ((~sum(body)) & 0xFFFF).to_bytes(2, "little")


def _xor(data: bytes, stream: bytes) -> bytes:
    """`data` XOR the start of `stream` (as long as `data`)."""
    n = len(data)
    if not n:
        return b""
    mixed = int.from_bytes(data, "big") ^ int.from_bytes(stream[:n], "big")
    return mixed.to_bytes(n, "big")


class NinebotCrypto:
    """One side of one NinebotCrypto connection: keys, our counter, the peer's counter."""

    def __init__(self, name: str) -> None:
        self._name = name16(name)
        self._ble_key: bytes | None = None
        self._ecb = self._cipher(_sha16(self._name, FW_KEY))
        self.phase = Phase.INIT
        self.sent = 0  # counter of our last counter frame
        self.received = 0  # counter of the peer's last accepted frame

    @staticmethod
    def _cipher(key: bytes) -> CipherContext:
        # ECB only ever sees counter blocks and CBC-MAC chaining values: it is the block
        # function the protocol builds its stream and MAC from, not a mode for data. An
        # ECB context keeps no state between whole blocks, so one serves every call
        # (a new context per block was most of the cost of a frame).
        return Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305

    def _aes(self, blocks: bytes) -> bytes:
        return self._ecb.update(blocks)

    def set_ble_key(self, ble_key: bytes) -> None:
        """The scooter's BLE key from its INIT reply: counter frames from now on."""
        if len(ble_key) != KEY_LEN:
            raise ValueError(f"BLE key must be {KEY_LEN} bytes, not {len(ble_key)}")
        self._ble_key = bytes(ble_key)
        self._ecb = self._cipher(_sha16(self._name, ble_key))
        self.phase = Phase.BLE_KEY

    def set_app_key(self, app_key: bytes) -> None:
        """The scooter accepted `app_key` (`5C` answered 1): the session key changes."""
        if self._ble_key is None:
            raise ValueError("the app key needs the BLE key first (INIT)")
        if len(app_key) != KEY_LEN:
            raise ValueError(f"app key must be {KEY_LEN} bytes, not {len(app_key)}")
        self._ecb = self._cipher(_sha16(app_key, self._ble_key))
        self.phase = Phase.APP_KEY

    # --- encrypt ----------------------------------------------------------------------------

    def encrypt(self, plain: bytes) -> bytes:
        """The wire bytes of `plain` (`5A A5 L SRC DST CMD ARG PAYLOAD`, no checksum)."""
        if len(plain) < CLEAR + 4 or plain[:2] != HEADER or len(plain) != plain[2] + CLEAR + 4:
            raise ValueError("not a plain 5A A5 frame without checksum")
        head, body = plain[:CLEAR], plain[CLEAR:]
        if self._ble_key is None:
            stream = self._first_stream(len(body))
            return head + _xor(body, stream) + b"\0\0" + first_crc(body) + b"\0\0"
        self.sent = (self.sent + 1) & 0xFFFFFFFF
        if not self.sent & 0xFFFF:
            # 0 on the wire marks the first-message format: never send it as a counter.
            self.sent += 1
        sealed, mac = self._seal(head, body, self.sent)
        return head + sealed + mac + (self.sent & 0xFFFF).to_bytes(COUNTER_LEN, "little")

    # --- decrypt ----------------------------------------------------------------------------

    def decrypt(self, wire: bytes) -> bytes:
        """The plain frame (no checksum) of `wire`; raises FrameRefused, never returns a forgery.

        The peer's counter advances only for a frame whose MAC is right, so a forged
        frame cannot push it ahead and make the next real frame look like a replay.
        """
        wire = bytes(wire)
        if wire[:2] == GEN3_HEADER:
            raise FrameRefused(Refusal.GEN3, "5A B5 frame (Segway Encryption2), not NinebotCrypto")
        if len(wire) < MIN_WIRE:
            raise FrameRefused(Refusal.TRUNCATED, f"{len(wire)} bytes, at least {MIN_WIRE} needed")
        if wire[:2] != HEADER:
            raise FrameRefused(Refusal.MALFORMED, f"header {wire[:2].hex()} is not 5aa5")
        want = wire[2] + MIN_WIRE
        if len(wire) < want:
            raise FrameRefused(
                Refusal.TRUNCATED, f"{len(wire)} bytes where L={wire[2]} needs {want}"
            )
        if len(wire) > want:
            raise FrameRefused(
                Refusal.MALFORMED, f"{len(wire)} bytes where L={wire[2]} needs {want}"
            )
        head, sealed = wire[:CLEAR], wire[CLEAR:-OVERHEAD]
        mac, low = wire[-OVERHEAD:-COUNTER_LEN], int.from_bytes(wire[-COUNTER_LEN:], "little")
        if low == 0:
            return head + self._open_first(sealed, mac)
        if self._ble_key is None:
            raise FrameRefused(Refusal.COUNTER, f"counter {low} before the key exchange")
        counter = self._peer_counter(low)
        body, expected = self._unseal(head, sealed, counter)
        if not hmac.compare_digest(mac, expected):
            raise FrameRefused(Refusal.MAC, f"MAC of frame {counter} does not match")
        self.received = counter
        return head + body

    def _open_first(self, sealed: bytes, mac: bytes) -> bytes:
        if self._ble_key is not None:
            raise FrameRefused(Refusal.COUNTER, "counter 0 (first-message format) after INIT")
        body = _xor(sealed, self._first_stream(len(sealed)))
        if not hmac.compare_digest(mac, b"\0\0" + first_crc(body)):
            raise FrameRefused(Refusal.MAC, "CRC of the first message does not match")
        return body

    def _peer_counter(self, low: int) -> int:
        ahead = (low - self.received) & 0xFFFF
        if ahead == 0 or ahead > _COUNTER_WINDOW:
            raise FrameRefused(
                Refusal.COUNTER,
                f"counter {low} is not after {self.received & 0xFFFF} (replayed or stale)",
            )
        return (self.received + ahead) & 0xFFFFFFFF

    # --- the keystreams and the MAC ---------------------------------------------------------

    def _first_stream(self, n: int) -> bytes:
        # One block, repeated for bodies longer than 16 bytes (the INIT reply): inferred.
        block = self._aes(FW_KEY)
        return (block * (n // BLOCK + 1))[:n]

    def _nonce(self, counter: int) -> bytes:
        assert self._ble_key is not None
        return counter.to_bytes(4, "big") + self._ble_key[:_BLE_KEY_IN_NONCE] + b"\0"

    def _ctr_blocks(self, nonce: bytes, n: int) -> bytes:
        """AES of the counter blocks 0 (closes the MAC) .. n (keystream for n blocks)."""
        flags = bytes([_CCM_FLAGS_A])
        return self._aes(b"".join(flags + nonce + i.to_bytes(2, "big") for i in range(n + 1)))

    def _cbc_mac(self, nonce: bytes, head: bytes, body: bytes) -> bytes:
        b0 = bytes([_CCM_FLAGS_B0]) + nonce + len(body).to_bytes(2, "big")
        aad = len(head).to_bytes(2, "big") + head
        data = b0 + _pad(aad) + _pad(body)
        x = bytes(BLOCK)
        for i in range(0, len(data), BLOCK):
            x = self._aes(_xor(x, data[i : i + BLOCK]))
        return x[:MAC_LEN]

    def _seal(self, head: bytes, body: bytes, counter: int) -> tuple[bytes, bytes]:
        nonce = self._nonce(counter)
        stream = self._ctr_blocks(nonce, -(-len(body) // BLOCK))
        mac = _xor(self._cbc_mac(nonce, head, body), stream[:MAC_LEN])
        return _xor(body, stream[BLOCK:]), mac

    def _unseal(self, head: bytes, sealed: bytes, counter: int) -> tuple[bytes, bytes]:
        nonce = self._nonce(counter)
        stream = self._ctr_blocks(nonce, -(-len(sealed) // BLOCK))
        body = _xor(sealed, stream[BLOCK:])
        return body, _xor(self._cbc_mac(nonce, head, body), stream[:MAC_LEN])


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


class Reassembler:
    """BLE notifications in, whole encrypted frames out (resync on `5A A5`).

    A notification that starts with the header starts a new frame, and the length
    byte in clear says where it ends (L + 13). A frame cut short by a lost notification
    is dropped when the next header arrives; dropped pieces are counted in `dropped`.
    A `5A B5` (Gen3) notification is handed on as it is, for the caller to recognise.
    """

    def __init__(self, limit: int = 512) -> None:
        self._buf = bytearray()
        self._limit = limit
        self.dropped = 0

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        if data[:2] == GEN3_HEADER:
            return [bytes(data)]
        if data[:2] == HEADER and len(self._buf) > 1:
            self.dropped += 1
            self._buf.clear()
        self._buf += data
        if len(self._buf) > self._limit:
            self.dropped += 1
            self._buf.clear()
        out: list[bytes] = []
        buf = self._buf
        while buf:
            start = buf.find(HEADER)
            if start < 0:
                # Keep a trailing 5A: its A5 may come in the next notification.
                keep = 1 if buf[-1] == HEADER[0] else 0
                if len(buf) > keep:
                    self.dropped += 1
                del buf[: len(buf) - keep]
                break
            if start:
                self.dropped += 1
                del buf[:start]
            if len(buf) < CLEAR or len(buf) < buf[2] + MIN_WIRE:
                break
            total = buf[2] + MIN_WIRE
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

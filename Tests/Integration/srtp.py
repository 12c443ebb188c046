"""SDES-SRTP for the tests: the `a=crypto` attribute (RFC 4568), the SRTP key derivation and the
packet transforms of RFC 3711 (AES-CM with HMAC-SHA1), RFC 6188 (AES-256) and RFC 7714 (AES-GCM),
written from those RFCs, on the `cryptography` package's AES.

Enough for two things: a party that sends SRTP (a call leg with SDES), and an SRS that decrypts
what rtpengine forks to it, to tell whose audio each m-line carries. RTP only (no SRTCP), no MKI,
key derivation rate 0, the rollover counter guessed from sequence wrap-arounds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
from dataclasses import dataclass, field

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # the SRTP checks skip themselves (srtp.available())
    Cipher = algorithms = modes = AESGCM = None


def available() -> bool:
    return AESGCM is not None


@dataclass(frozen=True)
class Suite:
    name: str
    key_len: int  # master (and session) encryption key, bytes
    salt_len: int  # master salt, bytes
    tag_len: int  # authentication tag, bytes
    aead: bool


SUITES = {s.name: s for s in (
    Suite("AES_CM_128_HMAC_SHA1_80", 16, 14, 10, False),
    Suite("AES_CM_128_HMAC_SHA1_32", 16, 14, 4, False),
    Suite("AES_256_CM_HMAC_SHA1_80", 32, 14, 10, False),
    Suite("AES_256_CM_HMAC_SHA1_32", 32, 14, 4, False),
    Suite("AEAD_AES_128_GCM", 16, 12, 16, True),
    Suite("AEAD_AES_256_GCM", 32, 12, 16, True),
)}

AUTH_KEY_LEN = 20  # HMAC-SHA1 session authentication key (RFC 3711 4.2)
LABEL_RTP_ENCRYPTION, LABEL_RTP_AUTH, LABEL_RTP_SALT = 0, 1, 2


# ----------------------------------------------------------------------------- a=crypto

@dataclass
class Crypto:
    """One a=crypto attribute: tag, suite, master key and master salt."""

    tag: int
    suite: str
    key: bytes
    salt: bytes
    params: str = ""  # session parameters after the key params, kept as written

    @property
    def attribute(self) -> str:
        inline = base64.b64encode(self.key + self.salt).decode()
        extra = f" {self.params}" if self.params else ""
        return f"crypto:{self.tag} {self.suite} inline:{inline}{extra}"

    @classmethod
    def fresh(cls, tag: int, suite: str) -> "Crypto":
        spec = SUITES[suite]
        return cls(tag, suite, os.urandom(spec.key_len), os.urandom(spec.salt_len))


def parse_crypto(value: str) -> Crypto:
    """The value of an a=crypto attribute ('1 AES_CM_128_HMAC_SHA1_80 inline:KEY[|lifetime|mki]')."""
    match = re.fullmatch(r"\s*(\d+)\s+(\S+)\s+inline:([A-Za-z0-9+/=]+)(\|[^\s]*)?(?:\s+(.*))?", value)
    assert match, f"not an a=crypto value: {value!r}"
    tag, suite, inline = int(match.group(1)), match.group(2), match.group(3)
    raw = base64.b64decode(inline + "=" * (-len(inline) % 4))
    spec = SUITES.get(suite)
    if spec is None:
        return Crypto(tag, suite, raw, b"", match.group(5) or "")
    assert len(raw) == spec.key_len + spec.salt_len, \
        f"{suite}: {len(raw)} bytes of key and salt, expected {spec.key_len + spec.salt_len}"
    return Crypto(tag, suite, raw[:spec.key_len], raw[spec.key_len:], match.group(5) or "")


# ----------------------------------------------------------------------------- key derivation

def _aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def derive(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """RFC 3711 4.3.1 with key_derivation_rate 0 (r = 0): x = (label || 0^48) XOR master_salt,
    the session key is the AES-CM keystream under the master key with IV x * 2^16. The 96-bit
    master salt of AES-GCM is padded with two zero bytes on the right (RFC 7714 12)."""
    salt = master_salt.ljust(14, b"\0")
    x = bytearray(salt)
    x[7] ^= label
    return _aes_ctr(master_key, bytes(x) + b"\0\0", b"\0" * length)


@dataclass
class Context:
    """The session keys of one direction of one SRTP stream (one sender's master key)."""

    crypto: Crypto
    rollover: dict[int, int] = field(default_factory=dict)  # per SSRC: rollover counter
    last_seq: dict[int, int] = field(default_factory=dict)

    def __post_init__(self):
        spec = SUITES[self.crypto.suite]
        self.spec = spec
        self.key = derive(self.crypto.key, self.crypto.salt, LABEL_RTP_ENCRYPTION, spec.key_len)
        self.session_salt = derive(self.crypto.key, self.crypto.salt, LABEL_RTP_SALT,
                                   spec.salt_len)
        self.auth_key = None if spec.aead else derive(self.crypto.key, self.crypto.salt,
                                                      LABEL_RTP_AUTH, AUTH_KEY_LEN)

    # --- the packet index (RFC 3711 3.3.1, simplified: in-order packets, wrap-around only)

    def _index(self, ssrc: int, seq: int, sending: bool) -> int:
        roc = self.rollover.get(ssrc, 0)
        last = self.last_seq.get(ssrc)
        if last is not None and seq < last and last - seq > 0x8000:
            roc += 1  # wrapped
        elif not sending and last is not None and seq > last and seq - last > 0x8000 and roc:
            return (roc - 1) << 16 | seq  # a late packet from before the wrap
        self.rollover[ssrc], self.last_seq[ssrc] = roc, seq
        return roc << 16 | seq

    # --- transforms

    def protect(self, packet: bytes) -> bytes:
        """RTP -> SRTP."""
        header_len = rtp_header_length(packet)
        seq, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
        index = self._index(ssrc, seq, sending=True)
        header, payload = packet[:header_len], packet[header_len:]
        if self.spec.aead:
            return header + AESGCM(self.key).encrypt(self._gcm_iv(ssrc, index), payload, header)
        encrypted = header + _aes_ctr(self.key, self._cm_iv(ssrc, index), payload)
        return encrypted + self._tag(encrypted, index >> 16)

    def unprotect(self, packet: bytes) -> bytes:
        """SRTP -> RTP; ValueError when the packet does not authenticate."""
        header_len = rtp_header_length(packet)
        seq, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
        index = self._index(ssrc, seq, sending=False)
        header = packet[:header_len]
        if self.spec.aead:
            try:
                plain = AESGCM(self.key).decrypt(self._gcm_iv(ssrc, index), packet[header_len:],
                                                 header)
            except Exception as error:  # cryptography's InvalidTag
                raise ValueError(f"GCM authentication failed (seq {seq})") from error
            return header + plain
        body, tag = packet[:-self.spec.tag_len], packet[-self.spec.tag_len:]
        if not hmac.compare_digest(self._tag(body, index >> 16), tag):
            raise ValueError(f"HMAC-SHA1 authentication failed (seq {seq})")
        return header + _aes_ctr(self.key, self._cm_iv(ssrc, index), body[header_len:])

    def _cm_iv(self, ssrc: int, index: int) -> bytes:
        """RFC 3711 4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)."""
        iv = bytearray(self.session_salt + b"\0\0")
        for position, byte in enumerate(struct.pack("!I", ssrc)):
            iv[4 + position] ^= byte
        for position, byte in enumerate(index.to_bytes(6, "big")):
            iv[8 + position] ^= byte
        return bytes(iv)

    def _gcm_iv(self, ssrc: int, index: int) -> bytes:
        """RFC 7714 8.1: (00 00 || SSRC || ROC || SEQ) XOR the 96-bit session salt."""
        plain = b"\0\0" + struct.pack("!IIH", ssrc, index >> 16, index & 0xFFFF)
        return bytes(a ^ b for a, b in zip(plain, self.session_salt))

    def _tag(self, authenticated: bytes, roc: int) -> bytes:
        digest = hmac.new(self.auth_key, authenticated + struct.pack("!I", roc), hashlib.sha1)
        return digest.digest()[:self.spec.tag_len]


def rtp_header_length(packet: bytes) -> int:
    """Fixed header, CSRCs and the header extension (RFC 3550 5.1, 5.3.1)."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        raise ValueError("not an RTP packet")
    length = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        length += 4 + 4 * struct.unpack_from("!H", packet, length + 2)[0]
    return length


def overhead(suite: str) -> int:
    """Bytes SRTP adds to an RTP packet of the suite (its authentication tag)."""
    return SUITES[suite].tag_len

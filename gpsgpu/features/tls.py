"""The leaf certificate of a TLS server's first flight, as GPS's ``tls cert`` feature needs it.

The reference never published its TLS functions; ``GPS_REFERENCE.md`` fixes the contract: the
certificate is the first one of the first Certificate handshake message (type 0x0b) in the server's
TLS records, and the feature is its DER in lower-case hex.

How a banner is read (the services table stores banners as text):

- a banner made only of hex digit pairs (``16030300...``, any case) is the hex of the bytes;
- any other banner is the bytes themselves as text: characters U+0000..U+00FF are one byte each
  (Latin-1, how LZR's byte strings usually reach text), and a banner with larger characters is
  read as UTF-8.

Handshake messages may span TLS records: the fragments of every handshake record (content type 22)
are joined before messages are read. A truncated or malformed flight gives no certificate.
"""

from __future__ import annotations

import re

_HEX_BANNER = re.compile(r"(?:[0-9a-fA-F]{2})+")
_HANDSHAKE = 22
_CERTIFICATE = 11
#: Record content types of TLS (change_cipher_spec .. heartbeat); anything else ends the parse.
_CONTENT_TYPES = frozenset(range(20, 25))


def banner_bytes(banner: str) -> bytes:
    """The bytes a text banner stands for (see the module docstring)."""
    if _HEX_BANNER.fullmatch(banner):
        return bytes.fromhex(banner)
    try:
        return banner.encode("latin-1")
    except UnicodeEncodeError:
        return banner.encode("utf-8", "surrogatepass")


def first_certificate(flight: bytes) -> bytes | None:
    """DER of the first certificate of the first Certificate message in ``flight``, or ``None``."""
    handshake = bytearray()
    pos = 0
    while pos + 5 <= len(flight):
        content_type = flight[pos]
        if content_type not in _CONTENT_TYPES:
            break
        length = int.from_bytes(flight[pos + 3 : pos + 5], "big")
        if content_type == _HANDSHAKE:
            handshake += flight[pos + 5 : pos + 5 + length]
        pos += 5 + length
    pos = 0
    while pos + 4 <= len(handshake):
        msg_type = handshake[pos]
        length = int.from_bytes(handshake[pos + 1 : pos + 4], "big")
        if msg_type == _CERTIFICATE:
            body = handshake[pos + 4 : pos + 4 + length]
            if len(body) < 6:
                return None
            cert_length = int.from_bytes(body[3:6], "big")
            cert = bytes(body[6 : 6 + cert_length])
            return cert if cert_length > 0 and len(cert) == cert_length else None
        pos += 4 + length
    return None


def certificate_hex(banner: str) -> str | None:
    """The ``tls cert`` value of a banner: lower-case hex DER of its leaf certificate, or ``None``."""
    cert = first_certificate(banner_bytes(banner))
    return cert.hex() if cert is not None else None

"""What a feature is, in words: ``s19: 69cc8000`` is the network 105.204.128.0/19.

A model's features are canonical strings (their 64-bit keys are hashes of them, see
:mod:`gpsgpu.features.gps2022` and :mod:`gpsgpu.features.extended`). :func:`describe_feature`
names a string's kind and decodes what can be decoded: network prefixes from their hex, the /16 of
a cross, the X.509 name attributes (``C=US``) inside TLS certificate fragments; other values are
quoted, hashes and hex shortened. :data:`DATA_KINDS` is the one table of kinds for both presets;
the tests check that every string either preset produces has a kind here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from gpsgpu.features.gps2022 import L4_FEATURE

#: ``<name>: <value>`` kinds: name -> (what it is, how its value reads: text, hex or number).
DATA_KINDS: dict[str, tuple[str, str]] = {
    # gps2022 data features
    "http line": ("banner line", "text"),
    "fingerprint": ("protocol", "text"),
    "window": ("TCP window", "number"),
    "ssh banner": ("SSH banner", "text"),
    "tls cert": ("TLS certificate", "der"),
    "tls oid": ("TLS certificate fragment", "der"),
    # extended application features; HTTP ones exist as "http ..." and, on CWMP endpoints, "cwmp ..."
    **{
        f"{endpoint} {name}": (f"{what} {field}", how)
        for endpoint, what in (("http", "HTTP"), ("cwmp", "CWMP (TR-069)"))
        for name, field, how in (
            ("title", "title", "text"),
            ("server", "Server header", "text"),
            ("body sha256", "body SHA-256", "hex"),
            ("header", "header", "text"),
        )
    },
    "tls cert sha256": ("TLS certificate SHA-256", "hex"),
    "tls subject": ("TLS certificate subject", "text"),
    "tls org": ("TLS certificate organization", "text"),
    "tls issuer": ("TLS certificate issuer", "text"),
    "ssh software": ("SSH software", "text"),
    "ssh hostkey": ("SSH host key SHA-256", "hex"),
    "vnc desktop": ("VNC desktop name", "text"),
    "pptp vendor": ("PPTP vendor", "text"),
    "mysql version": ("MySQL version", "text"),
    "memcached version": ("memcached version", "text"),
    "mssql version": ("MS SQL Server version", "text"),
    "ipmi banner": ("IPMI reply", "hex"),
    "smtp banner": ("SMTP greeting", "text"),
    "ftp banner": ("FTP greeting", "text"),
    "imap banner": ("IMAP greeting", "text"),
    "pop3 banner": ("POP3 greeting", "text"),
    "telnet banner": ("Telnet greeting", "text"),
}
#: Text values longer than this are cut (the raw string stays beside the label).
MAX_TEXT = 64
#: Hashes and hex are shown by their first characters.
HEX_SHOWN = 12

_HEX = re.compile(r"[0-9a-f]+")
_NETWORK = re.compile(r"s(\d{1,2}): ([0-9a-f]{8})")
_CROSS_16 = re.compile(r"16:(.+)-([0-9a-f]{8})", re.DOTALL)
_CROSS_ASN = re.compile(r"asn:(.+)-asn: (\d+)", re.DOTALL)
#: X.509 name attributes (OID 2.5.4.n) a certificate fragment may hold.
_X509_NAMES = {3: "CN", 5: "serialNumber", 6: "C", 7: "L", 8: "ST", 10: "O", 11: "OU"}
#: ASN.1 string types an attribute value may be (UTF8, Printable, Teletex, IA5, BMP is left out).
_DER_STRINGS = {0x0C, 0x13, 0x14, 0x16}


@dataclass(frozen=True)
class FeatureLabel:
    """A feature in words: ``kind`` (e.g. ``network /19``, ``banner line in AS``) and ``label``."""

    kind: str
    label: str


def _quote(value: str) -> str:
    shown = value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
    return '"' + shown.translate({9: "\\t", 10: "\\n", 13: "\\r", 34: '\\"'}) + '"'


def _hex(value: str) -> str:
    return value if len(value) <= HEX_SHOWN else value[:HEX_SHOWN] + "…"


def _ipv4(hex8: str) -> str:
    value = int(hex8, 16)
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def x509_names(hex_der: str) -> list[str]:
    """The ``C=US``-style X.509 name attributes found in DER hex (a certificate or a fragment of one).

    A fragment is the certificate hex cut on ``30``, so the parts around an attribute may be gone;
    this looks for ``06 03 55 04 <n>`` (OID 2.5.4.n) followed by a short string, anywhere."""
    try:
        data = bytes.fromhex(hex_der if len(hex_der) % 2 == 0 else hex_der[:-1])
    except ValueError:
        return []
    names: list[str] = []
    at = data.find(b"\x06\x03\x55\x04")
    while at >= 0 and at + 7 <= len(data):
        kind, tag, size = data[at + 4], data[at + 5], data[at + 6]
        value = data[at + 7 : at + 7 + size]
        if kind in _X509_NAMES and tag in _DER_STRINGS and size < 0x80 and len(value) == size:
            text = value.decode("utf-8", errors="replace")
            if text.isprintable():
                names.append(f"{_X509_NAMES[kind]}={text}")
        at = data.find(b"\x06\x03\x55\x04", at + 4)
    return names


def _der(value: str) -> str:
    names = ", ".join(dict.fromkeys(x509_names(value)))  # a self-signed certificate names itself twice
    if len(value) <= 2 * MAX_TEXT:
        if names:
            return names
        # A fragment cut on "30" often holds only the OID of a name attribute (06 03 55 04 ..).
        return f"{_hex(value)} (X.509 name attribute type)" if "035504" in value else _hex(value)
    return f"({len(value) // 2} bytes) {names or _hex(value)}"


def _value(how: str, value: str) -> str:
    if how == "number":
        return value
    if how == "hex":
        return _hex(value)
    if how == "der":
        return _der(value)
    if len(value) > 2 * HEX_SHOWN and _HEX.fullmatch(value):
        # A binary banner kept as hex: a TLS server flight (record type 0x16, version 3.x) or other.
        what = "TLS handshake" if value.startswith("1603") else "binary"
        names = ", ".join(dict.fromkeys(x509_names(value)))
        shown = f"with certificate {names}" if names else _hex(value)
        return f"{what} ({len(value) // 2} bytes) {shown}"
    return _quote(value)


@lru_cache(maxsize=1 << 16)
def describe_feature(feature: str) -> FeatureLabel:
    """``feature`` (a canonical feature string of either preset) in words; an unknown shape is
    ``kind="unknown"`` with the string itself as its label."""
    if feature == L4_FEATURE:
        return FeatureLabel("port open", "any service on the port (layer 4)")
    if not feature:
        return FeatureLabel("none", "no feature")
    if network := _NETWORK.fullmatch(feature):
        length = int(network.group(1))
        return FeatureLabel(f"network /{length}", f"network {_ipv4(network.group(2))}/{length}")
    if feature.startswith("asn: ") and feature[5:].isdigit():
        return FeatureLabel("AS", f"AS{feature[5:]}")
    # Crosses: a data or application feature within the host's /16 or AS (the data part never starts
    # with a space, so "asn:" followed by a name is a cross and "asn: 123" is not).
    if cross := _CROSS_16.fullmatch(feature):
        inner = describe_feature(cross.group(1))
        if inner.kind != "unknown":
            network = f"{_ipv4(cross.group(2))}/16"
            return FeatureLabel(f"{inner.kind} in /16", f"{inner.label} in network {network}")
    if cross := _CROSS_ASN.fullmatch(feature):
        inner = describe_feature(cross.group(1))
        if inner.kind != "unknown":
            return FeatureLabel(f"{inner.kind} in AS", f"{inner.label} in AS{cross.group(2)}")
    name, sep, value = feature.partition(": ")
    if sep and name in DATA_KINDS:
        what, how = DATA_KINDS[name]
        return FeatureLabel(what, f"{what} {_value(how, value)}")
    return FeatureLabel("unknown", _quote(feature))

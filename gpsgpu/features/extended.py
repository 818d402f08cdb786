"""Feature preset ``extended``: ``gps2022`` plus the application-layer fields of the GPS talk.

Every ``gps2022`` feature of a service is kept (the preset is a superset), and these are added,
each a canonical string hashed like ``gps2022``'s (``XXH64(utf8(string), 0)``):

- application features ``A`` (one per field a service has; ``<P>`` is ``cwmp`` for a CWMP
  endpoint, see :func:`is_cwmp`, else ``http``):

  ====================  ============================================  ==============================
  string                structured column (wins where not null)       parsed from the raw banner
  ====================  ============================================  ==============================
  ``tls cert sha256:``  ``tls_cert_sha256``, else SHA-256 of          leaf certificate of a TLS
                        ``tls_cert``                                  flight (:mod:`.tls`)
  ``tls subject:``      ``tls_subject``                               subject DN of that certificate
  ``tls org:``          ``tls_org``                                   its subject ``O``
  ``tls issuer:``       ``tls_issuer``                                its issuer DN (not in the talk:
                                                                      it groups per-host certificates)
  ``<P> title:``        ``http_title``                                ``<title>`` of the body
  ``<P> server:``       ``http_server``                               ``Server`` header
  ``<P> body sha256:``  ``http_body_sha256``                          SHA-256 of the body bytes
  ``<P> header:``       ``http_headers`` (one per line)               each header ``name: value``
  ``ssh software:``     ``ssh_banner``                                ``SSH-x-<software>`` of the id
  ``ssh hostkey:``      ``ssh_hostkey_sha256``                        (not in a banner)
  ``smtp banner:`` ..   ``app_fields``                                first line, host names,
  ``ftp``, ``imap``,                                                  addresses, times and long
  ``pop3``, ``telnet``                                                numbers masked (``<host>``...)
  ``vnc desktop:``      ``app_fields``                                RFB ServerInit name
  ``pptp vendor:``      ``app_fields``                                Start-Control-Connection-Reply
  ``mysql version:``    ``app_fields``                                initial handshake packet
  ``memcached version:``  ``app_fields``                              ``VERSION``/``STAT version``
  ``mssql version:``    ``app_fields``                                TDS PRELOGIN ``VERSION``
  ``ipmi banner:``      ``app_fields``                                RMCP/IPMI reply bytes (hex)
  ====================  ============================================  ==============================

  ``app_fields`` holds ``"<feature name>: <value>"`` lines (e.g. ``mysql version: 8.0.36``), see
  :data:`APP_FIELD_NAMES`. Values are cut to :data:`MAX_VALUE_CHARS` characters; long values
  (bodies, certificates, host keys) enter as their SHA-256 hex.
- network features ``s23: <x>``, ``s24: <x>`` (``gps2022`` has /16../22 and ``asn``);
- crosses of every application feature: ``16:<A>-<x16>`` and ``asn:<A>-asn: <asn>`` (the same
  shapes as ``gps2022``'s data crosses).

The prefixes differ from every ``gps2022`` prefix, so no added string equals a ``gps2022`` one
and the two sets are concatenated without a merge.

**Bound.** Pair counting costs (features of a service) x (other ports of its host), so the added
features per service are capped: at most :data:`MAX_HTTP_HEADERS` header lines (the first ones;
values of per-connection headers such as ``date`` dropped to the name) and one value per other
field (20 fields, of which a banner fills at most a protocol's few), so a service gains at most
``3 * (MAX_HTTP_HEADERS + 20) + 2`` features (each application feature and its two crosses, plus
/23 and /24); on the simulated Internet it gains 11 on average (34.5 -> 45.5 per service).

Banners are parsed once per distinct banner of a chunk: HTTP, SSH and text greetings with Arrow
compute on the distinct banners; TLS flights and binary protocols in Python (each parser looks at
the first bytes and gives up at once when they do not fit); hashes with :mod:`hashlib` once per
distinct value. Feature strings are built once per distinct value, not per row.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gpsgpu import schema
from gpsgpu.features import gps2022
from gpsgpu.features.gps2022 import (
    DEFAULT_CHUNK_ROWS,
    FeatureArrays,
    _as_large,
    _join,
    _prepend,
)
from gpsgpu.features.tls import banner_bytes, first_certificate
from gpsgpu.ops import cpu

PRESET = "extended"

#: Prefix lengths of the added ``sNN`` network features (``gps2022`` has /16../22).
EXTRA_PREFIX_LENGTHS: tuple[int, ...] = (23, 24)
#: Header features per service at most (the rest are dropped, in the order given).
MAX_HTTP_HEADERS = 16
#: Values are cut to this many characters (long ones: titles, greetings, DNs).
MAX_VALUE_CHARS = 256
#: Ports where an HTTP response is a CWMP (TR-069) connection-request endpoint.
CWMP_PORTS: tuple[int, ...] = (7547, 4567, 30005)
#: Headers whose value changes per connection or per host: only the name is a feature.
VOLATILE_HEADERS: frozenset[str] = frozenset(
    {
        "date",
        "expires",
        "last-modified",
        "set-cookie",
        "etag",
        "age",
        "cf-ray",
        "x-request-id",
        "x-runtime",
        "request-id",
        "x-amz-request-id",
        "x-amz-id-2",
        "nel",
        "report-to",
        "content-security-policy-nonce",
    }
)
#: Greeting protocols: their banner feature is the masked first line.
GREETING_PROTOCOLS: tuple[str, ...] = ("smtp", "ftp", "imap", "pop3", "telnet")
#: Feature names ``app_fields`` lines may carry (others are ignored).
APP_FIELD_NAMES: tuple[str, ...] = (
    "vnc desktop",
    "pptp vendor",
    "mysql version",
    "memcached version",
    "mssql version",
    "ipmi banner",
    *(f"{p} banner" for p in GREETING_PROTOCOLS),
)
APP_FIELDS = "app_fields"

#: Single-valued fields, in output order; each becomes ``"<name>: <value>"``.
_HTTP_FIELDS = ("title", "server", "body sha256")
_OTHER_FIELDS = (
    "tls cert sha256",
    "tls subject",
    "tls org",
    "tls issuer",
    "ssh software",
    "ssh hostkey",
    *APP_FIELD_NAMES,
)
#: Structured column of each single-valued field.
_STRUCTURED = {
    "title": "http_title",
    "server": "http_server",
    "body sha256": "http_body_sha256",
    "tls cert sha256": "tls_cert_sha256",
    "tls subject": "tls_subject",
    "tls org": "tls_org",
    "tls issuer": "tls_issuer",
    "ssh hostkey": "ssh_hostkey_sha256",
}

#: Columns this preset reads when present (besides the core ones).
INPUT_COLUMNS: tuple[str, ...] = (
    "http_server",
    "http_title",
    "http_body_sha256",
    "http_headers",
    "tls_cert",
    "tls_cert_sha256",
    "tls_subject",
    "tls_org",
    "tls_issuer",
    "ssh_banner",
    "ssh_hostkey_sha256",
    APP_FIELDS,
)

_EMPTY = pa.array([], type=pa.large_string())


# --- parsing of one banner (Python; called once per distinct banner) -------------------------------

#: Short names of the attribute types of a DN, by the DER of their OID (as zcrypto prints them).
_DN_NAMES = {
    bytes.fromhex(oid): name
    for oid, name in (
        ("550403", "CN"),
        ("550406", "C"),
        ("550407", "L"),
        ("550408", "ST"),
        ("55040a", "O"),
        ("55040b", "OU"),
        ("550405", "serialNumber"),
        ("2a864886f70d010901", "emailAddress"),
    )
}


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """``(tag, start of value, end of value)`` of the DER TLV at ``pos``; ValueError if cut short."""
    if pos + 2 > len(der):
        raise ValueError("truncated")
    tag, first = der[pos], der[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(der):
            raise ValueError("bad length")
        length = int.from_bytes(der[pos : pos + n], "big")
        pos += n
    if pos + length > len(der):
        raise ValueError("truncated")
    return tag, pos, pos + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, s, e = _tlv(der, start)
        out.append((tag, s, e))
        start = e
    return out


def _oid_text(raw: bytes) -> str:
    name = _DN_NAMES.get(raw)
    if name is not None:
        return name
    if not raw:
        return ""
    parts = [raw[0] // 40, raw[0] % 40]
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _dn(der: bytes, start: int, end: int) -> list[tuple[str, str]]:
    """``(type, value)`` pairs of the DER Name between ``start`` and ``end``, in DER order."""
    pairs = []
    for _, rs, re_ in _children(der, start, end):  # RelativeDistinguishedName SETs
        for _, as_, ae in _children(der, rs, re_):  # AttributeTypeAndValue SEQUENCEs
            (_, os_, oe), (vtag, vs, ve) = _children(der, as_, ae)[:2]
            value = der[vs:ve].decode("utf-16-be" if vtag == 0x1E else "utf-8", "replace")
            pairs.append((_oid_text(der[os_:oe]), value))
    return pairs


def certificate_names(der: bytes) -> tuple[str | None, str | None, str | None]:
    """Subject DN (``"C=US, O=Acme, CN=x"``, DER order), subject ``O`` and issuer DN of a certificate.

    ``(None, None, None)`` when the DER is not an X.509 certificate this reader understands.
    """
    try:
        _, s, e = _tlv(der, 0)  # Certificate
        _, s, e = _tlv(der, s)  # TBSCertificate
        tag, s, e = _tlv(der, s)
        if tag == 0xA0:  # explicit version
            tag, s, e = _tlv(der, e)
        _, s, e = _tlv(der, e)  # signature algorithm (after the serial)
        _, s, e = _tlv(der, e)  # issuer
        issuer = _dn(der, s, e)
        _, s, e = _tlv(der, e)  # validity
        _, s, e = _tlv(der, e)  # subject
        subject = _dn(der, s, e)
    except (ValueError, IndexError):
        return None, None, None

    def text(pairs: list[tuple[str, str]]) -> str | None:
        return ", ".join(f"{k}={v}" for k, v in pairs) or None

    org = next((v for k, v in subject if k == "O"), None)
    return text(subject), org, text(issuer)


def _mysql_version(data: bytes) -> str | None:
    # Initial handshake (protocol 10): 3-byte length, sequence 0, 0x0a, NUL-terminated version.
    if len(data) > 6 and data[3] == 0 and data[4] == 0x0A:
        end = data.find(b"\x00", 5)
        version = data[5 : end if end > 0 else len(data)]
        if version[:1].isdigit():
            return version.decode("latin-1")
    return None


def _mssql_version(data: bytes) -> str | None:
    # TDS packet (type 4, a response) whose PRELOGIN option 0 (VERSION) gives major.minor.build.
    if len(data) < 8 + 5 or data[0] != 0x04:
        return None
    body = data[8:]
    pos = 0
    while pos + 5 <= len(body) and body[pos] != 0xFF:
        token = body[pos]
        offset = int.from_bytes(body[pos + 1 : pos + 3], "big")
        length = int.from_bytes(body[pos + 3 : pos + 5], "big")
        if token == 0 and length >= 4 and offset + 4 <= len(body):
            major, minor = body[offset], body[offset + 1]
            build = int.from_bytes(body[offset + 2 : offset + 4], "big")
            return f"{major}.{minor}.{build}"
        pos += 5
    return None


def _pptp_vendor(data: bytes) -> str | None:
    # Start-Control-Connection-Reply: magic cookie 0x1a2b3c4d at 4, vendor string (64 bytes) at 92.
    if len(data) >= 156 and data[4:8] == b"\x1a\x2b\x3c\x4d":
        vendor = data[92:156].split(b"\x00", 1)[0].decode("latin-1").strip()
        return vendor or None
    if data.startswith(b"PPTP "):  # a text rendering (simulated scans)
        vendor = data[5:].split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1").strip()
        return vendor or None
    return None


def _vnc_desktop(data: bytes) -> str | None:
    # "RFB xxx.yyy\n", then (after security) ServerInit: width, height, 16-byte pixel format,
    # u32 name length, name. Look for a length that ends exactly at the end of the data.
    if not data.startswith(b"RFB ") or len(data) < 12 + 24:
        return None
    for start in range(12, len(data) - 23):
        length_at = start + 20
        length = int.from_bytes(data[length_at : length_at + 4], "big")
        if 0 < length <= MAX_VALUE_CHARS and length_at + 4 + length == len(data):
            name = data[length_at + 4 :].decode("utf-8", "replace")
            if name.isprintable():
                return name
    return None


def _memcached_version(data: bytes) -> str | None:
    match = re.match(rb"(?:VERSION |[\s\S]*?STAT version )([^\r\n ]+)", data)
    return match.group(1).decode("latin-1") if match else None


def _ipmi_banner(data: bytes) -> str | None:
    # RMCP (version 6, class IPMI 0x07): the reply past the RMCP header, as hex (it is binary).
    if len(data) > 4 and data[0] == 0x06 and data[2] == 0xFF and data[3] & 0x1F == 0x07:
        return data[4:68].hex()
    return None


#: Binary parsers: the field a parser fills and its function.
_BINARY: tuple[tuple[str, Callable[[bytes], str | None]], ...] = (
    ("mysql version", _mysql_version),
    ("mssql version", _mssql_version),
    ("pptp vendor", _pptp_vendor),
    ("vnc desktop", _vnc_desktop),
    ("memcached version", _memcached_version),
    ("ipmi banner", _ipmi_banner),
)


def parse_binary(banner: str, is_hex: bool | None = None) -> dict[str, str]:
    """Fields of a non-text banner (TLS flight or binary protocol), by field name.

    ``is_hex`` says whether the banner is hex digit pairs, when the caller knows already.
    """
    data = banner_bytes(banner) if is_hex is None else bytes.fromhex(banner) if is_hex else _latin1(banner)
    out: dict[str, str] = {}
    if data[:1] == b"\x16":
        cert = first_certificate(data)
        if cert is not None:
            out["tls cert"] = cert.hex()
        return out
    for name, parse in _BINARY:
        value = parse(data)
        if value:
            out[name] = value[:MAX_VALUE_CHARS]
            break
    return out


def _latin1(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def tls_fields(cert_hex: str) -> tuple[str, str | None, str | None, str | None]:
    """SHA-256 (hex), subject DN, subject ``O`` and issuer DN of a certificate given as DER hex."""
    der = bytes.fromhex(cert_hex)
    return (hashlib.sha256(der).hexdigest(), *certificate_names(der))


# --- vectorized parsing of the distinct banners ---------------------------------------------------

_HEADER_LINE = r"^(?P<name>[!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(?P<value>.*?)[ \t\r]*$"
_TITLE = r"(?is)<title[^>]*>(?P<t>.*?)</title"
_SSH_ID = r"^SSH-[0-9.]+-(?P<s>[^ \r\n]+)"
#: Masks of the greeting lines: what differs between hosts of the same software.
_MASKS: tuple[tuple[str, str], ...] = (
    (r"\b\d{1,3}(?:\.\d{1,3}){3}\b", "<ip>"),
    # A first label with a letter before any hyphen, so an SMTP "220-host" keeps its "220-".
    (r"\b[A-Za-z0-9]*[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", "<host>"),
    (r"\b\d{1,2}:\d{2}:\d{2}\b", "<time>"),
    (r"\b\d{5,}\b", "<n>"),
)
_TELNET_IAC = r"\x{ff}[\x{fb}-\x{fe}][\s\S]|\x{ff}[\x{f0}-\x{fa}]"


def _cut(values: pa.Array) -> pa.Array:
    return pc.utf8_slice_codeunits(values, 0, MAX_VALUE_CHARS)


def _sha256_hex(values: pa.Array) -> pa.Array:
    """SHA-256 hex of each non-null string's UTF-8 bytes (Latin-1 for text that fits: banner bytes)."""
    out = []
    for text in values.to_pylist():
        if text is None:
            out.append(None)
            continue
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "surrogatepass")
        out.append(hashlib.sha256(data).hexdigest())
    return pa.array(out, type=pa.large_string())


class _Distinct:
    """Fields parsed from the distinct banners of a chunk, each an array over the distinct banners."""

    def __init__(self, banners: pa.Array) -> None:
        self.banners = banners
        n = len(banners)
        self.fields: dict[str, pa.Array] = {}
        is_http = np.asarray(pc.fill_null(pc.starts_with(banners, "HTTP/"), False))
        self.header_parent = np.zeros(0, dtype=np.int64)
        self.header_lines = _EMPTY
        self._http(np.flatnonzero(is_http), n)
        is_ssh = np.asarray(pc.fill_null(pc.starts_with(banners, "SSH-"), False))
        ssh = pc.struct_field(pc.extract_regex(banners, _SSH_ID), "s")
        self.fields["ssh software"] = pc.if_else(
            pa.array(is_ssh), _cut(ssh), pa.scalar(None, pa.large_string())
        )
        # Greetings: the first non-empty line of text, telnet option negotiation removed.
        text = pc.replace_substring_regex(banners, _TELNET_IAC, "")
        line = pc.struct_field(pc.extract_regex(text, r"^[\r\n\x00]*(?P<l>[^\r\n\x00]*)"), "l")
        line = pc.utf8_trim_whitespace(line)
        for pattern, mask in _MASKS:
            line = pc.replace_substring_regex(line, pattern, mask)
        is_hex = np.asarray(pc.fill_null(pc.match_substring_regex(banners, r"^(?:[0-9a-fA-F]{2})+$"), False))
        printable = np.asarray(pc.fill_null(pc.match_substring_regex(line, r"^[^\x00-\x1f\x7f]+$"), False))
        # A greeting port answering with HTTP, SSH or a TLS flight has no greeting line.
        text = pa.array(printable & ~(is_hex | is_http | is_ssh))
        self.line = pc.if_else(text, _cut(line), pa.scalar(None, pa.large_string()))
        self.shape = self._shapes(banners, is_http | is_ssh | is_hex)
        # Everything else (TLS flights, binary protocols) is read in Python, once per banner.
        self._binary(np.flatnonzero(~(is_http | is_ssh) & (self.shape < 0)), n, is_hex)

    def _http(self, rows: np.ndarray, n: int) -> None:
        nulls = pa.nulls(n, pa.large_string())
        for name in _HTTP_FIELDS:
            self.fields[name] = nulls
        if rows.size == 0:
            return
        http = self.banners.take(pa.array(rows))
        parts = pc.split_pattern_regex(http, r"\r?\n\r?\n", max_splits=1)
        head = pc.list_element(parts, 0)
        has_body = np.asarray(pc.greater(pc.list_value_length(parts), 1))
        body = pc.if_else(
            pa.array(has_body),
            pc.list_element(pc.if_else(pa.array(has_body), parts, pa.scalar(["", ""], parts.type)), 1),
            pa.scalar(None, pa.large_string()),
        )
        lines = pc.split_pattern_regex(head, r"\r?\n")
        flat = pc.list_flatten(lines)
        parent = np.asarray(pc.list_parent_indices(lines)).astype(np.int64)
        first = np.concatenate(([True], parent[1:] != parent[:-1])) if parent.size else np.zeros(0, bool)
        parsed = pc.extract_regex(flat, _HEADER_LINE)
        ok = ~first & np.asarray(parsed.is_valid())
        names = pc.utf8_lower(pc.struct_field(parsed, "name")).filter(pa.array(ok))
        values = pc.struct_field(parsed, "value").filter(pa.array(ok))
        parent = parent[ok]
        # The first MAX_HTTP_HEADERS headers of each response.
        keep = _position_in_run(parent) < MAX_HTTP_HEADERS
        names, values, parent = names.filter(pa.array(keep)), values.filter(pa.array(keep)), parent[keep]
        volatile = pc.is_in(names, value_set=pa.array(sorted(VOLATILE_HEADERS), pa.large_string()))
        lines_out = pc.if_else(volatile, names, _join(names, ": ", _cut(values)))
        self.header_parent = rows[parent]
        self.header_lines = _as_large(lines_out)
        is_server = np.asarray(pc.equal(names, "server"))
        server = pa.nulls(n, pa.large_string()).to_pylist()
        server_rows = self.header_parent[is_server][::-1]  # reversed: the first header wins
        for row, value in zip(
            server_rows.tolist(), values.filter(pa.array(is_server)).to_pylist()[::-1], strict=True
        ):
            server[row] = value
        self.fields["server"] = _cut(pa.array(server, type=pa.large_string()))
        title = pc.struct_field(pc.extract_regex(body, _TITLE), "t")
        title = pc.utf8_trim_whitespace(pc.replace_substring_regex(title, r"\s+", " "))
        title = pc.if_else(pc.equal(title, ""), pa.scalar(None, pa.large_string()), title)
        # Entities are rare: unescape only the titles that have one (as ZGrab2 ingest does).
        has_entity = np.flatnonzero(np.asarray(pc.fill_null(pc.match_substring(title, "&"), False)))
        if has_entity.size:
            texts = title.to_pylist()
            for i in has_entity.tolist():
                texts[i] = html.unescape(texts[i])
            title = pa.array(texts, type=pa.large_string())
        self.fields["title"] = _scatter(rows, _cut(title), n)
        nonempty = pc.fill_null(pc.greater(pc.utf8_length(body), 0), False)
        body = pc.if_else(nonempty, body, pa.scalar(None, pa.large_string()))
        self.fields["body sha256"] = _scatter(rows, _sha256_hex(body), n)

    @staticmethod
    def _shapes(banners: pa.Array, excluded: np.ndarray) -> np.ndarray:
        """Greeting protocol a banner looks like (index into GREETING_PROTOCOLS, -1: none)."""
        shape = np.full(len(banners), -1, dtype=np.int8)
        tests = (
            ("telnet", r"^\x{ff}[\x{fb}-\x{fe}]"),
            ("smtp", r"^220[ -].*(?i:smtp|mail)"),
            ("ftp", r"^220[ -]"),
            ("imap", r"^\* (?:OK|PREAUTH)"),
            ("pop3", r"^\+OK"),
        )
        for name, pattern in tests:
            hit = np.asarray(pc.fill_null(pc.match_substring_regex(banners, pattern), False))
            shape[hit & (shape < 0) & ~excluded] = GREETING_PROTOCOLS.index(name)
        return shape

    def _binary(self, rows: np.ndarray, n: int, is_hex: np.ndarray) -> None:
        names = ("tls cert", *(name for name, _ in _BINARY))
        columns: dict[str, list[str | None]] = {name: [None] * n for name in names}
        banners = self.banners.take(pa.array(rows)).to_pylist()
        for row, banner, hexed in zip(rows.tolist(), banners, is_hex[rows].tolist(), strict=True):
            if banner:
                for name, value in parse_binary(banner, hexed).items():
                    columns[name][row] = value
        for name, values in columns.items():
            self.fields[name] = pa.array(values, type=pa.large_string())


def _scatter(rows: np.ndarray, values: pa.Array, n: int) -> pa.Array:
    """An array of ``n`` nulls with ``values`` at ``rows``."""
    index = np.full(n, -1, dtype=np.int64)
    index[rows] = np.arange(rows.size)
    return values.take(pa.array(index, mask=index < 0))


@dataclass(frozen=True)
class _Field:
    """A sparse per-row field: row ``rows[i]`` has the value ``values[idx[i]]`` (never null).

    Values are kept at the level they were found (distinct banners, distinct certificates,
    distinct structured values), so feature strings are built once per distinct value, not per row.
    """

    rows: np.ndarray  # int64
    idx: np.ndarray  # int64
    values: pa.Array  # large_string

    @staticmethod
    def empty() -> _Field:
        return _Field(np.zeros(0, np.int64), np.zeros(0, np.int64), _EMPTY)

    @staticmethod
    def of_distinct(values: pa.Array, banner_index: np.ndarray) -> _Field:
        """The field of every row from a value per distinct banner (null: none)."""
        valid = np.asarray(values.is_valid())
        rows = np.flatnonzero(valid[banner_index])
        return _Field(rows, banner_index[rows], values)

    @staticmethod
    def of_column(column: pa.Array | None) -> _Field:
        """The field given by a structured column (null or empty: none)."""
        if column is None:
            return _Field.empty()
        valid = np.asarray(pc.fill_null(pc.greater(pc.utf8_length(column), 0), False))
        rows = np.flatnonzero(valid)
        encoded = column.filter(pa.array(valid)).dictionary_encode()
        return _Field(rows, np.asarray(encoded.indices).astype(np.int64), _as_large(encoded.dictionary))

    def where(self, keep: np.ndarray) -> _Field:
        return _Field(self.rows[keep], self.idx[keep], self.values)

    def over(self, parsed: _Field, n: int) -> _Field:
        """This (structured) field where it has a value, else ``parsed``: structure wins."""
        if self.rows.size == 0:
            return parsed
        given = np.zeros(n, dtype=bool)
        given[self.rows] = True
        keep = ~given[parsed.rows]
        return _Field(
            np.concatenate([self.rows, parsed.rows[keep]]),
            np.concatenate([self.idx, parsed.idx[keep] + len(self.values)]),
            _as_large(pa.chunked_array([self.values, parsed.values], type=pa.large_string())),
        )

    def mapped(self, values: pa.Array) -> _Field:
        """The field whose value is ``values[k]`` where this one's is ``self.values[k]``."""
        valid = np.asarray(values.is_valid())
        return _Field(self.rows, self.idx, values).where(valid[self.idx])

    def cut(self) -> _Field:
        return _Field(self.rows, self.idx, _as_large(_cut(self.values)))


def _column(table: pa.Table, name: str) -> pa.Array | None:
    if name not in table.column_names:
        return None
    return cpu.text(table[name])  # one chunk is not copied


def is_cwmp(protocol: pa.Array, port: np.ndarray | None, server: pa.Array) -> np.ndarray:
    """Rows that are CWMP (TR-069) endpoints: protocol ``cwmp``, a CWMP port, or a CWMP server."""
    flag = np.asarray(pc.fill_null(pc.equal(protocol, "cwmp"), False))
    if port is not None:
        flag |= np.isin(port, np.asarray(CWMP_PORTS, dtype=np.uint16))
    flag |= np.asarray(pc.fill_null(pc.match_substring(server, "cwmp", ignore_case=True), False))
    return flag


def _app_fields(table: pa.Table, banner_index: np.ndarray, distinct: _Distinct) -> dict[str, _Field]:
    """The value fields of every row (structured columns over parsed banners), by feature name."""
    n = table.num_rows
    protocol = cpu.text(table[schema.PROTOCOL])
    fields: dict[str, _Field] = {}

    def parsed(name: str) -> _Field:
        return _Field.of_distinct(distinct.fields[name], banner_index)

    for name in _HTTP_FIELDS:
        fields[name] = _Field.of_column(_column(table, _STRUCTURED[name])).over(parsed(name), n).cut()

    # TLS: the certificate of the tls_cert column, else of the banner; then per distinct certificate
    # its hash, subject and organization (structured columns still win field by field).
    certs = _Field.of_column(_column(table, "tls_cert")).over(parsed("tls cert"), n)
    encoded = certs.values.dictionary_encode()
    per_cert = [tls_fields(c) if c is not None else (None,) * 4 for c in encoded.dictionary.to_pylist()]
    cert_of = np.asarray(encoded.indices.fill_null(0)).astype(np.int64)  # nulls are never referenced
    certs = _Field(certs.rows, cert_of[certs.idx], _as_large(encoded.dictionary))
    for k, name in enumerate(("tls cert sha256", "tls subject", "tls org", "tls issuer")):
        values = pa.array([c[k] for c in per_cert], type=pa.large_string())
        fields[name] = _Field.of_column(_column(table, _STRUCTURED[name])).over(certs.mapped(values), n).cut()

    ssh = parsed("ssh software")
    ssh_banner = _column(table, "ssh_banner")
    if ssh_banner is not None:
        software = pc.struct_field(pc.extract_regex(ssh_banner, _SSH_ID), "s")
        ssh = _Field.of_column(software).over(ssh, n)
    fields["ssh software"] = ssh.cut()
    fields["ssh hostkey"] = _Field.of_column(_column(table, "ssh_hostkey_sha256")).cut()

    # Greetings: the row's protocol when it is a greeting protocol, else what the banner looks like.
    proto_code = np.full(n, -1, dtype=np.int8)
    for k, name in enumerate(GREETING_PROTOCOLS):
        proto_code[np.asarray(pc.fill_null(pc.equal(protocol, name), False))] = k
    greeting = np.where(proto_code >= 0, proto_code, distinct.shape[banner_index])
    line = _Field.of_distinct(distinct.line, banner_index)
    for k, name in enumerate(GREETING_PROTOCOLS):
        fields[f"{name} banner"] = line.where(greeting[line.rows] == k)
    for name, _ in _BINARY:
        fields[name] = parsed(name)

    # app_fields lines ("<feature name>: <value>") win over what the banner parses to.
    app = _column(table, APP_FIELDS)
    if app is not None:
        lines = pc.split_pattern(app, "\n")
        parent = np.asarray(pc.list_parent_indices(lines)).astype(np.int64)
        pairs = pc.extract_regex(pc.list_flatten(lines), r"^(?P<name>[a-z0-9 ]+): (?P<value>.+)$")
        ok = np.asarray(pairs.is_valid())
        names = pc.struct_field(pairs, "name").filter(pa.array(ok))
        given = _as_large(pc.struct_field(pairs, "value").filter(pa.array(ok)))
        parent = parent[ok]
        for name in APP_FIELD_NAMES:
            mine = np.flatnonzero(np.asarray(pc.equal(names, name)))
            if mine.size:
                structured = _Field(parent[mine], mine.astype(np.int64), given).cut()
                fields[name] = structured.over(fields[name], n)
    return fields


def app_features(table: pa.Table, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """The application features of every row (or of the ``rows`` given) of a services chunk.

    Parameters
    ----------
    table : pyarrow.Table
        ``protocol str, banner str`` and, when present, ``port uint16`` and the structured columns of
        :data:`INPUT_COLUMNS` (strings, null where unknown).
    rows : int64 array, optional
        Featurize only these rows (``row`` then counts among them), as if they had been taken: the
        banner column is not copied.

    Returns
    -------
    row : int64[m]
        Row of each feature (a row may repeat a feature: two equal header lines).
    code : int64[m]
        Index of its string in ``strings``.
    strings : pyarrow.LargeStringArray
        Distinct feature strings.
    """
    encoded = cpu.text(table[schema.BANNER]).dictionary_encode()
    banner_index = np.asarray(encoded.indices).astype(np.int64)
    banners = encoded.dictionary
    if rows is not None:
        # The rows' distinct banners in first-seen order (the taken rows' encoding); the other
        # columns are small, or wanted row by row anyway: taken.
        banner_index, used = cpu.factorize(banner_index[rows])
        banners = banners.take(pa.array(used))
        table = table.drop_columns([schema.BANNER]).take(pa.array(rows))
    n = table.num_rows
    protocol = cpu.text(table[schema.PROTOCOL])
    port = np.asarray(table[schema.PORT]).astype(np.uint16) if schema.PORT in table.column_names else None
    distinct = _Distinct(_as_large(banners))
    fields = _app_fields(table, banner_index, distinct)

    server = fields["server"]
    server_cwmp = np.asarray(pc.fill_null(pc.match_substring(server.values, "cwmp", ignore_case=True), False))
    cwmp = is_cwmp(protocol, port, pa.nulls(n, pa.large_string()))
    cwmp[server.rows[server_cwmp[server.idx]]] = True

    # Each field's strings are built on its distinct values (for HTTP fields, once as "http ..."
    # and once as "cwmp ..."), then all are dictionary-encoded together.
    rows: list[np.ndarray] = []
    idx: list[np.ndarray] = []
    strings: list[pa.Array] = []
    offset = 0

    def add(field: _Field, name: str, by_endpoint: bool) -> None:
        nonlocal offset
        if field.rows.size == 0:
            return
        size = len(field.values)
        if by_endpoint:
            texts = [_prepend(f"http {name}: ", field.values), _prepend(f"cwmp {name}: ", field.values)]
            at = field.idx + size * cwmp[field.rows]
        else:
            texts, at = [_prepend(f"{name}: ", field.values)], field.idx
        rows.append(field.rows)
        idx.append(at + offset)
        strings.extend(texts)
        offset += size * len(texts)

    for name in _HTTP_FIELDS:
        add(fields[name], name, True)
    for name in _OTHER_FIELDS:
        add(fields[name], name, False)
    add(_headers(table, banner_index, distinct, n), "header", True)

    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), _EMPTY
    every = _as_large(pa.chunked_array(strings, type=pa.large_string())).dictionary_encode()
    code = np.asarray(every.indices.fill_null(0)).astype(np.int64)[np.concatenate(idx)]
    return np.concatenate(rows), code, _as_large(every.dictionary)


def _headers(table: pa.Table, banner_index: np.ndarray, distinct: _Distinct, n: int) -> _Field:
    """Header lines of every row: the ``http_headers`` column's where given, else the banner's."""
    parsed = _Field.empty()
    if distinct.header_parent.size:
        # Each row of a banner gets that banner's run of lines.
        count = np.bincount(distinct.header_parent, minlength=len(distinct.banners))
        first = np.concatenate(([0], np.cumsum(count)[:-1]))
        rows = np.flatnonzero(count[banner_index] > 0)
        n_lines = count[banner_index[rows]]
        row_of_line = np.repeat(rows, n_lines)
        starts = np.repeat(first[banner_index[rows]] - (np.cumsum(n_lines) - n_lines), n_lines)
        parsed = _Field(row_of_line, starts + np.arange(row_of_line.size), distinct.header_lines)
    column = _column(table, "http_headers")
    if column is None:
        return parsed
    given = _Field.of_column(column)
    if given.rows.size == 0:
        return parsed
    # Lines of the distinct structured values, capped and with volatile values dropped like parsed ones.
    lines = pc.split_pattern(given.values, "\n")
    parent = np.asarray(pc.list_parent_indices(lines)).astype(np.int64)
    flat = _as_large(pc.list_flatten(lines))
    keep = np.asarray(pc.fill_null(pc.greater(pc.utf8_length(flat), 0), False)) & (
        _position_in_run(parent) < MAX_HTTP_HEADERS
    )
    flat, parent = flat.filter(pa.array(keep)), parent[keep]
    names = pc.utf8_lower(pc.struct_field(pc.extract_regex(flat, r"^(?P<n>[^:]*)"), "n"))
    volatile = pc.is_in(names, value_set=pa.array(sorted(VOLATILE_HEADERS), pa.large_string()))
    flat = _as_large(pc.if_else(volatile, names, _cut(flat)))
    count = np.bincount(parent, minlength=len(given.values))
    first = np.concatenate(([0], np.cumsum(count)[:-1]))
    n_lines = count[given.idx]
    row_of_line = np.repeat(given.rows, n_lines)
    starts = np.repeat(first[given.idx] - (np.cumsum(n_lines) - n_lines), n_lines)
    structured = _Field(row_of_line, starts + np.arange(row_of_line.size), flat)
    # Precedence is per row: a row with structured headers takes none of its banner's.
    has = np.zeros(n, dtype=bool)
    has[given.rows] = True
    parsed = parsed.where(~has[parsed.rows])
    return _Field(
        np.concatenate([structured.rows, parsed.rows]),
        np.concatenate([structured.idx, parsed.idx + len(flat)]),
        _as_large(pa.chunked_array([flat, parsed.values], type=pa.large_string())),
    )


def _position_in_run(parent: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal consecutive values of ``parent``."""
    if parent.size == 0:
        return parent
    start = np.concatenate(([True], parent[1:] != parent[:-1]))
    at = np.arange(parent.size)
    return at - np.maximum.accumulate(np.where(start, at, 0))


# --- the preset ----------------------------------------------------------------------------------


def _extra_kinds(
    table: pa.Table, ip: np.ndarray, asn: np.ndarray, *, use_asn: bool, rows: np.ndarray | None = None
) -> tuple[list[Any], list[np.ndarray], list[np.ndarray]]:
    """The kinds of features ``extended`` adds to ``gps2022`` for one chunk (or its ``rows``; ``ip``
    and ``asn`` are theirs): their dictionaries, rows and codes (see
    :func:`gpsgpu.features.gps2022.assemble_features`)."""
    d_row, d_code, d_strings = app_features(table, rows)
    # Two header lines of a response may be equal (two cookies, by name): keep (row, feature) once.
    d_row, d_code = gps2022.unique_row_features(d_row, d_code)
    kinds: list[Any] = [d_strings]
    rows: list[np.ndarray] = [d_row]
    codes: list[np.ndarray] = [d_code]
    gps2022.cross_features(kinds, rows, codes, d_row, d_code, d_strings, ip, asn, use_asn=use_asn)
    gps2022.prefix_features(kinds, rows, codes, ip, EXTRA_PREFIX_LENGTHS)
    return kinds, rows, codes


def _chunk_features(table: pa.Table, *, use_asn: bool, rows: np.ndarray | None = None) -> FeatureArrays:
    ip = np.asarray(table[schema.IP]).astype(np.uint32, copy=False)
    asn = np.asarray(table[schema.ASN]).astype(np.uint32, copy=False)
    # The added kinds first: their parsers' temporaries come and go while no other feature is held;
    # gps2022 then assembles them after its own (one dictionary: its prefixes are not theirs).
    at = slice(None) if rows is None else rows
    more = _extra_kinds(table, ip[at], asn[at], use_asn=use_asn, rows=rows)
    cpu.release_memory()
    return gps2022._chunk_features(
        ip,
        cpu.text(table[schema.PROTOCOL]),
        np.asarray(table[schema.WINDOW]).astype(np.int32, copy=False),
        cpu.text(table[schema.BANNER]),
        asn,
        cpu.text(table["tls_cert"]) if "tls_cert" in table.column_names else None,
        use_asn=use_asn,
        rows=rows,
        more=more,
    )


def feature_arrays(
    table: pa.Table,
    *,
    use_asn: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
    rows: np.ndarray | None = None,
) -> FeatureArrays:
    """The ``extended`` features of every row (or of the ``rows`` given) of a services table.

    Parameters
    ----------
    table : pyarrow.Table
        ``ip uint32, asn uint32, protocol str, window int32, banner str``, optionally ``port uint16``
        (CWMP ports) and any of :data:`INPUT_COLUMNS` (structured fields, null where unknown).
    use_asn : bool
        Whether to emit ``asn: <asn>`` and the ASN crosses.
    chunk_rows : int
        Rows per chunk; chunks run on up to ``workers`` threads (default: every core) and are
        merged by key (the result's strings do not depend on either).
    rows : int64 array, optional
        Featurize only these rows (``FeatureArrays.row`` then counts among them); in one chunk, the
        string columns are not copied.
    """
    n = table.num_rows if rows is None else int(rows.size)
    if n <= chunk_rows:
        return _chunk_features(table, use_asn=use_asn, rows=rows)
    starts = list(range(0, n, chunk_rows))

    def one(start: int) -> FeatureArrays:
        if rows is not None:  # each chunk's rows taken apart
            return _chunk_features(table.take(pa.array(rows[start : start + chunk_rows])), use_asn=use_asn)
        return _chunk_features(table.slice(start, chunk_rows), use_asn=use_asn)

    return gps2022.map_chunks(one, starts, workers)

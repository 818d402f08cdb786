"""Turning one parsed scan record into service rows: one extractor per format, shared validators.

An extractor takes a record (a dict from JSON, or a list/dict from CSV) and returns a list of
items, each either a :class:`Row` (a service), a :class:`Filtered` marker (a well-formed record
that is not a real service: counted, not rejected) or a :class:`RejectedRecord` (bad input).
Validators are plain functions on Python values, written for speed: ingest calls them millions
of times.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import re
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from gpsgpu.io.rejects import (
    INVALID_ASN,
    INVALID_IP,
    INVALID_PORT,
    INVALID_TYPE,
    INVALID_WINDOW,
    MALFORMED,
    MISSING_FIELD,
    RejectedRecord,
    Rejects,
)

_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_unpack_u32 = struct.Struct("!I").unpack

UINT32_MAX = 0xFFFFFFFF
INT32_MAX = 0x7FFFFFFF

#: ZGrab2 HTTP responses become a banner of the response head plus at most this much body, which is
#: what LZR's ``data`` holds too (the first bytes the server sent).
HTTP_BODY_BANNER_BYTES = 4096


class Row(NamedTuple):
    ip: int
    port: int
    asn: int
    protocol: str
    window: int
    banner: str
    optional: dict[str, Any] | None = None


class Filtered(NamedTuple):
    """A record that is well-formed but not a real service; ``reason`` names why (for the counts)."""

    reason: str


Item = Row | Filtered | RejectedRecord
Extractor = Callable[[Any], list[Item]]


# --- validators ---------------------------------------------------------------------------------


def parse_ip(value: Any, field: str = "ip") -> int:
    """A dotted-quad string or an integer -> host-order uint32."""
    if type(value) is str:
        try:
            return _unpack_u32(_inet_pton(_AF_INET, value))[0]
        except (OSError, ValueError):  # ValueError: a NUL or an unpaired surrogate in the text
            why = "IPv6 is not supported" if ":" in value else "not an IPv4 address"
            raise RejectedRecord(INVALID_IP, f"{field}: {why}: {value[:64]!r}") from None
    if type(value) is int:
        if 0 <= value <= UINT32_MAX:
            return value
        raise RejectedRecord(INVALID_IP, f"{field}: integer address out of range: {value}")
    if value is None:
        raise RejectedRecord(MISSING_FIELD, f"{field} is missing")
    raise RejectedRecord(INVALID_IP, f"{field}: not an IPv4 address: {value!r:.64}")


def parse_port(value: Any, field: str = "port") -> int:
    if type(value) is int:
        if 0 <= value <= 65535:
            return value
        raise RejectedRecord(INVALID_PORT, f"{field}: {value} is outside 0..65535")
    if type(value) is str:
        text = value.strip()
        if text.isdigit() and text.isascii() and len(text) <= 5:
            number = int(text)
            if number <= 65535:
                return number
        raise RejectedRecord(INVALID_PORT, f"{field}: {value[:32]!r} is not a port in 0..65535")
    if value is None:
        raise RejectedRecord(MISSING_FIELD, f"{field} is missing")
    raise RejectedRecord(INVALID_PORT, f"{field}: {value!r:.32} is not a port in 0..65535")


def parse_asn(value: Any, field: str = "asn") -> int:
    """An AS number: int, decimal string or ``"AS123"``; null means unknown (0)."""
    if value is None or value == "":
        return 0
    if type(value) is int:
        if 0 <= value <= UINT32_MAX:
            return value
    elif type(value) is str:
        text = value.strip()
        if text[:2].upper() == "AS":
            text = text[2:]
        if text.isdigit() and text.isascii() and len(text) <= 10 and int(text) <= UINT32_MAX:
            return int(text)
    raise RejectedRecord(INVALID_ASN, f"{field}: {value!r:.32} is not an AS number")


def parse_window(value: Any, field: str = "window") -> int:
    if type(value) is int:
        if 0 <= value <= INT32_MAX:
            return value
    elif type(value) is str:
        text = value.strip()
        if text.isdigit() and text.isascii() and len(text) <= 10 and int(text) <= INT32_MAX:
            return int(text)
    elif value is None:
        raise RejectedRecord(MISSING_FIELD, f"{field} is missing")
    raise RejectedRecord(INVALID_WINDOW, f"{field}: {value!r:.32} is not a TCP window size")


def parse_text(value: Any, field: str) -> str:
    if type(value) is str:
        return value
    if value is None:
        raise RejectedRecord(MISSING_FIELD, f"{field} is missing")
    raise RejectedRecord(INVALID_TYPE, f"{field}: expected a string, got {type(value).__name__}")


def _dig(record: Any, *path: str) -> Any:
    """``record[a][b]...`` or None when any step is missing or not a mapping."""
    for key in path:
        if not isinstance(record, Mapping):
            return None
        record = record.get(key)
    return record


def _first(value: Any) -> Any:
    """First element of a list value (ZGrab2/Censys keep many fields as lists), else the value."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _str_or_none(value: Any) -> str | None:
    """Text of a scalar field: a string, or a number written where text was expected; the first
    element of a list; None for anything else (null, true/false, objects, nested lists)."""
    return _scalar_text(_first(value))


def _text(value: Any) -> str | None:
    """A string field (or the first element of a list of strings); None for anything else."""
    value = _first(value)
    return value if type(value) is str else None


def _http_status(value: Any) -> int | None:
    """An HTTP status code (three digits), else None: the column is int16 and 99999 is no status."""
    return value if type(value) is int and 100 <= value <= 999 else None


#: Filter reasons that come from a record's own text (ZGrab2 ``status``, ZMap ``classification``)
#: must stay short identifiers: they are keys of the counts in metadata.json.
_REASON_TEXT = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def _reason(prefix: str, value: Any, field: str) -> Filtered:
    if value is None or value == "":
        return Filtered(f"{prefix}_no_{field}")
    if type(value) is str and _REASON_TEXT.fullmatch(value):
        return Filtered(f"{prefix}_{value}")
    return Filtered(f"{prefix}_invalid_{field}")


def zannotate_asn(record: Mapping[str, Any]) -> int:
    """ASN from ZAnnotate's ``zannotate.routing.asn`` (ZAnnotate can annotate any JSON record)."""
    return parse_asn(_dig(record, "zannotate", "routing", "asn"), "zannotate.routing.asn")


# --- GPS schema ---------------------------------------------------------------------------------

GPS_FIELDS = ("ip", "p", "asn", "data", "fingerprint", "w")


def extract_gps(record: Any) -> list[Item]:
    """The reference's pre-formatted seed schema: ``ip, p, asn, data, fingerprint, w``.

    BigQuery exports INT64 columns as JSON strings, so numeric strings are accepted.
    """
    if type(record) is not dict:
        return [RejectedRecord(MALFORMED, "not a JSON object")]
    try:
        get = record.get
        for name in ("ip", "p", "data", "fingerprint", "w"):
            if get(name) is None:
                raise RejectedRecord(MISSING_FIELD, f"{name} is missing")
        return [
            Row(
                parse_ip(record["ip"]),
                parse_port(record["p"], "p"),
                parse_asn(get("asn")),
                parse_text(record["fingerprint"], "fingerprint"),
                parse_window(record["w"], "w"),
                parse_text(record["data"], "data"),
            )
        ]
    except RejectedRecord as rejected:
        return [rejected]


# --- LZR ----------------------------------------------------------------------------------------

LZR_RST = Filtered("lzr_rst")
LZR_ZERO_WINDOW = Filtered("lzr_zero_window")
LZR_NO_DATA = Filtered("lzr_no_data")


def _lzr_field(record: dict[str, Any], tagged: str, go_name: str) -> tuple[Any, str]:
    """``record[tagged]``, or the Go field name LZR wrote before its JSON tags (see ``extract_lzr``)."""
    value = record.get(tagged)
    if value is None:
        value = record.get(go_name)
        if value is not None:
            return value, go_name
    return value, tagged


def extract_lzr(record: Any) -> list[Item]:
    """Raw LZR output; only real services are kept (data non-empty, no RST, window != 0).

    LZR tagged ``data``, ``fingerprint`` and ``expectedRToLZR`` in April 2020 (stanford-esrg/lzr
    53cb4af); its output from before then names them as Go does (``Data``, ``Fingerprint``), so those
    names are read too. ``saddr``/``sport``/``window`` were tagged from the start.
    """
    if type(record) is not dict:
        return [RejectedRecord(MALFORMED, "not a JSON object")]
    try:
        ip = parse_ip(record.get("saddr"), "saddr")
        port = parse_port(record.get("sport"), "sport")
        asn = zannotate_asn(record)
        window = record.get("window")
        window = 0 if window is None else parse_window(window)
        data, data_field = _lzr_field(record, "data", "Data")
        data = "" if data is None else parse_text(data, data_field)
        fingerprint, fingerprint_field = _lzr_field(record, "fingerprint", "Fingerprint")
        if isinstance(fingerprint, list):  # some LZR builds list every matching handshake
            fingerprint = ",".join(f for f in fingerprint if type(f) is str)
        fingerprint = "" if fingerprint is None else parse_text(fingerprint, fingerprint_field)
    except RejectedRecord as rejected:
        return [rejected]
    if record.get("RST"):
        return [LZR_RST]
    if window == 0:
        return [LZR_ZERO_WINDOW]
    if not data:
        return [LZR_NO_DATA]
    return [Row(ip, port, asn, fingerprint, window, data)]


# --- records without a port ---------------------------------------------------------------------

#: Ends the reject detail of a record that has no port: ZGrab2 run with ``-p`` before it wrote
#: ``data.<module>.port`` (zgrab2 issue 703) and ZMap's default output (addresses only) carry none.
NO_PORT_HINT = "give --default-port PORT (the port you scanned)"


def _no_port(rejected: RejectedRecord, field: str) -> RejectedRecord:
    if rejected.reason != MISSING_FIELD:
        return rejected
    return RejectedRecord(MISSING_FIELD, f"{field} is missing; {NO_PORT_HINT}")


def no_port_note(rejects: Rejects) -> str | None:
    """The one line to say on stderr when records were rejected for having no port, else None.

    Counted from the kept reject entries (all of them unless there are more than
    :data:`gpsgpu.io.rejects.MAX_KEPT`, when the count is a lower bound).
    """
    n = sum(1 for entry in rejects.entries if str(entry["detail"]).endswith(NO_PORT_HINT))
    if not n:
        return None
    some = "at least " if len(rejects.entries) < rejects.total else ""
    noun = "record has" if n == 1 and not some else "records have"
    return f"gpsgpu: note: {some}{n:,} {noun} no port; {NO_PORT_HINT}"


# --- ZMap ---------------------------------------------------------------------------------------

ZMAP_FIELDS_DEFAULT = ("saddr", "sport")


def make_extract_zmap(default_port: int | None) -> Extractor:
    def extract_zmap(record: Any) -> list[Item]:
        """ZMap JSON or CSV rows (``saddr``, ``sport``, ...); L4 only, so no banner."""
        if type(record) is not dict:
            return [RejectedRecord(MALFORMED, "not a JSON object")]
        try:
            ip = parse_ip(record.get("saddr"), "saddr")
        except RejectedRecord as rejected:
            return [rejected]
        sport = record.get("sport")
        if sport is None or sport == "":  # an empty CSV field is no port either
            sport = default_port
        try:
            port = parse_port(sport, "sport")
        except RejectedRecord as rejected:
            return [_no_port(rejected, "sport")]
        try:
            window = record.get("window")
            window = 0 if window in (None, "") else parse_window(window)
            asn = zannotate_asn(record)
        except RejectedRecord as rejected:
            return [rejected]
        classification = record.get("classification")
        if classification not in (None, "", "synack"):
            return [_reason("zmap", classification, "classification")]
        success = record.get("success")
        if success is not None and str(success).lower() not in ("1", "true"):
            return [Filtered("zmap_unsuccessful")]
        repeat = record.get("repeat")
        if repeat is not None and str(repeat).lower() in ("1", "true"):
            return [Filtered("zmap_repeat")]
        return [Row(ip, port, asn, "", window, "")]

    return extract_zmap


# --- ZGrab2 -------------------------------------------------------------------------------------

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")


def _header_name(snake: str) -> str:
    return "-".join(part.capitalize() for part in snake.split("_"))


def _zgrab2_headers(headers: Any) -> list[tuple[str, str]]:
    """ZGrab2 keeps headers as ``lower_snake: [values]`` plus ``unknown: [{key, value: []}]``."""
    pairs: list[tuple[str, str]] = []
    if not isinstance(headers, Mapping):
        return pairs
    for name, values in headers.items():
        if name == "unknown" and isinstance(values, list):
            for entry in values:
                key = _str_or_none(entry.get("key")) if isinstance(entry, Mapping) else None
                if key:
                    pairs.extend((key, value) for value in _header_values(entry.get("value") or [""]))
            continue
        name = _header_name(str(name))
        pairs.extend((name, value) for value in _header_values(values))
    return pairs


def _header_values(values: Any) -> list[str]:
    """A header's values as text (numbers too); values of other types are left out."""
    values = values if isinstance(values, list) else [values]
    return [text for text in map(_scalar_text, values) if text is not None]


def _scalar_text(value: Any) -> str | None:
    if type(value) is str:
        return value
    if type(value) is int or type(value) is float:
        return str(value)
    return None


def html_title(body: str) -> str | None:
    match = _TITLE.search(body[:65536].encode("utf-8", "surrogatepass"))
    if not match:
        return None
    title = html.unescape(match.group(1).decode("utf-8", "replace"))
    return _SPACES.sub(" ", title).strip() or None


def _tls_fields(handshake_log: Any) -> dict[str, Any]:
    cert = _dig(handshake_log, "server_certificates", "certificate")
    if not isinstance(cert, Mapping):
        return {}
    fields: dict[str, Any] = {}
    raw = cert.get("raw")
    if isinstance(raw, str) and raw:
        try:
            der = base64.b64decode(raw, validate=True)
            fields["tls_cert"] = der.hex()
            fields["tls_cert_sha256"] = hashlib.sha256(der).hexdigest()
        except (binascii.Error, ValueError):
            pass
    parsed = cert.get("parsed")
    if isinstance(parsed, Mapping):
        if isinstance(parsed.get("fingerprint_sha256"), str):
            fields["tls_cert_sha256"] = parsed["fingerprint_sha256"].lower()
        fields["tls_subject"] = _str_or_none(parsed.get("subject_dn"))
        fields["tls_issuer"] = _str_or_none(parsed.get("issuer_dn"))
        fields["tls_org"] = _str_or_none(_dig(parsed, "subject", "organization"))
    return fields


def _zgrab2_http(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    response = result.get("response")
    if not isinstance(response, Mapping):
        return "", {}
    protocol = _text(_dig(response, "protocol", "name")) or "HTTP/1.1"
    code = response.get("status_code")
    status_line = _text(response.get("status_line")) or (str(code) if type(code) is int and code else "")
    headers = _zgrab2_headers(response.get("headers"))
    body = response.get("body") if isinstance(response.get("body"), str) else ""
    head = f"{protocol} {status_line}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    body_bytes = body.encode("utf-8", "surrogatepass")
    fields: dict[str, Any] = {
        "http_status": _http_status(code),
        "http_server": next((v for k, v in headers if k.lower() == "server"), None),
        "http_title": html_title(body),
        "http_body_sha256": (
            response["body_sha256"].lower()
            if isinstance(response.get("body_sha256"), str)
            else hashlib.sha256(body_bytes).hexdigest()
            if body
            else None
        ),
        "http_headers": "\n".join(sorted(f"{k.lower()}: {v}" for k, v in headers)) or None,
    }
    fields.update(_tls_fields(_dig(response, "request", "tls_log", "handshake_log")))
    banner = head + body_bytes[:HTTP_BODY_BANNER_BYTES].decode("utf-8", "ignore")
    return banner, fields


def _zgrab2_ssh(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    server_id = result.get("server_id")
    banner = ""
    if isinstance(server_id, Mapping):
        banner = _text(server_id.get("raw")) or ""
        version = _str_or_none(server_id.get("version"))
        if not banner and version:
            banner = f"SSH-{version}-{_text(server_id.get('software')) or ''}"
            comment = _text(server_id.get("comment"))
            if comment:
                banner += f" {comment}"
    if not banner and isinstance(result.get("banner"), str):
        banner = result["banner"]
    hostkey = _dig(result, "key_exchange", "server_host_key", "fingerprint_sha256") or _dig(
        result, "server_key_exchange", "server_host_key", "fingerprint_sha256"
    )
    return banner, {"ssh_banner": banner or None, "ssh_hostkey_sha256": _str_or_none(hostkey)}


#: Structured fields of other modules/services, as ``(feature name, path in the result)``:
#: ZGrab2 ``data.<module>.result`` and Censys ``services[].<service>`` (see ``app_fields``).
_ZGRAB2_APP_FIELDS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "mysql": (("mysql version", ("server_version",)),),
    "mssql": (("mssql version", ("version",)),),
    "memcached": (("memcached version", ("version",)),),
}
_CENSYS_APP_FIELDS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "mysql": (("mysql version", ("server_version",)),),
    "mssql": (("mssql version", ("version",)),),
    "memcached": (("memcached version", ("version",)),),
    "vnc": (("vnc desktop", ("desktop_name",)),),
    "pptp": (("pptp vendor", ("vendor",)),),
    "ipmi": (("ipmi banner", ("raw",)),),
}


def app_fields_text(found: dict[str, Any], paths: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
    """The ``app_fields`` value of a module result: ``"<feature name>: <value>"`` lines, or None."""
    lines = []
    for name, path in paths:
        value = _str_or_none(_dig(found, *path))
        if value:
            # One line per field: a value's own line breaks would start a new field.
            lines.append(f"{name}: {_SPACES.sub(' ', value).strip()}")
    return "\n".join(lines) or None


def _zgrab2_app_fields(protocol: str, result: Mapping[str, Any]) -> dict[str, Any]:
    paths = _ZGRAB2_APP_FIELDS.get(protocol)
    text = app_fields_text(dict(result), paths) if paths else None
    return {"app_fields": text} if text else {}


#: ZGrab2 modules that scan over UDP (``TransportAgnosticDialerProtocol: zgrab2.TransportUDP`` in
#: zmap/zgrab2 ``modules/*/scanner.go``): their results are not TCP services, whatever port they name.
#: ``omronfins`` is UDP unless run with ``--tcp``, and its output does not say which; it is counted as UDP.
ZGRAB2_UDP_MODULES = frozenset({"ntp", "bacnet", "omronfins"})
ZGRAB2_UDP = Filtered("zgrab2_udp")


def make_extract_zgrab2(default_port: int | None) -> Extractor:
    def extract_zgrab2(record: Any) -> list[Item]:
        """ZGrab2 JSON Lines: one service per TCP module whose status is ``success``."""
        if type(record) is not dict:
            return [RejectedRecord(MALFORMED, "not a JSON object")]
        try:
            ip = parse_ip(record.get("ip"), "ip")
            asn = zannotate_asn(record)
        except RejectedRecord as rejected:
            return [rejected]
        modules = record.get("data")
        if not isinstance(modules, Mapping) or not modules:
            return [RejectedRecord(MISSING_FIELD, "data (the ZGrab2 module results) is missing")]
        items: list[Item] = []
        for name, module in modules.items():
            if not isinstance(module, Mapping):
                items.append(RejectedRecord(MALFORMED, f"data.{name} is not an object"))
                continue
            protocol = (_str_or_none(module.get("protocol")) or name).lower()
            if protocol in ZGRAB2_UDP_MODULES:
                items.append(ZGRAB2_UDP)
                continue
            status = module.get("status")
            if status != "success":
                items.append(_reason("zgrab2", status, "status"))
                continue
            raw_port = module.get("port", record.get("port"))
            if raw_port is None:
                raw_port = default_port
            try:
                port = parse_port(raw_port, f"data.{name}.port")
            except RejectedRecord as rejected:
                items.append(_no_port(rejected, f"data.{name}.port"))
                continue
            result = module.get("result")
            result = result if isinstance(result, Mapping) else {}
            if protocol in ("http", "https") or "response" in result:
                banner, optional = _zgrab2_http(result)
            elif protocol == "ssh":
                banner, optional = _zgrab2_ssh(result)
            elif protocol == "tls" or "handshake_log" in result:
                banner, optional = "", _tls_fields(result.get("handshake_log"))
            else:
                banner = result.get("banner") if isinstance(result.get("banner"), str) else ""
                optional = _zgrab2_app_fields(protocol, result)
            items.append(Row(ip, port, asn, protocol, 0, banner, optional))
        return items

    return extract_zgrab2


# --- Censys -------------------------------------------------------------------------------------


def _censys_headers(headers: Any) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    if not isinstance(headers, Mapping):
        return pairs
    for name, values in headers.items():
        if isinstance(values, Mapping):  # {"Server": {"headers": ["nginx"]}}
            values = values.get("headers", [])
        name = str(name).replace("_", "-")
        pairs.extend((name, value) for value in _header_values(values))
    return pairs


def _censys_optional(service: Mapping[str, Any], protocol: str, banner: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    response = _dig(service, "http", "response")
    if not isinstance(response, Mapping):  # Censys keeps a CWMP endpoint's HTTP under cwmp.http_info
        response = _dig(service, "cwmp", "http_info")
    platform = False
    if not isinstance(response, Mapping):  # the Platform API: service.endpoints[].http
        response = _censys_platform_http(service.get("endpoints"))
        platform = True
    if isinstance(response, Mapping):
        headers = _censys_headers(response.get("headers"))
        fields["http_status"] = _http_status(response.get("status_code"))
        fields["http_title"] = _str_or_none(response.get("html_title"))
        if platform and fields["http_title"] is None and isinstance(response.get("body"), str):
            fields["http_title"] = html_title(response["body"])
        fields["http_server"] = next((v for k, v in headers if k.lower() == "server"), None)
        fields["http_headers"] = "\n".join(sorted(f"{k.lower()}: {v}" for k, v in headers)) or None
        hashes = response.get("body_hashes")
        if not (isinstance(hashes, list) and hashes):
            hashes = [response.get("body_hash")]
        sha = next((h for h in hashes if isinstance(h, str) and h.startswith("sha256:")), None)
        fields["http_body_sha256"] = sha.split(":", 1)[1] if sha else None
        if platform and sha is None:
            fields["http_body_sha256"] = _str_or_none(response.get("body_hash_sha256"))
    certificates = _dig(service, "tls", "certificates")
    if isinstance(certificates, Mapping):
        fields["tls_cert_sha256"] = _str_or_none(certificates.get("leaf_fp_sha_256"))
        fields["tls_subject"] = _str_or_none(_dig(certificates, "leaf_data", "subject_dn"))
        fields["tls_issuer"] = _str_or_none(_dig(certificates, "leaf_data", "issuer_dn"))
        fields["tls_org"] = _str_or_none(_dig(certificates, "leaf_data", "subject", "organization"))
    cert = service.get("cert")  # the Platform API's shape
    if isinstance(cert, Mapping):
        fields["tls_cert_sha256"] = _str_or_none(cert.get("fingerprint_sha256"))
        fields["tls_subject"] = _str_or_none(_dig(cert, "parsed", "subject_dn"))
        fields["tls_issuer"] = _str_or_none(_dig(cert, "parsed", "issuer_dn"))
    for key, paths in _CENSYS_APP_FIELDS.items():
        if isinstance(service.get(key), Mapping):
            fields["app_fields"] = app_fields_text(service[key], paths)
    hostkey = _dig(service, "ssh", "server_host_key", "fingerprint_sha256")
    if hostkey is not None:
        fields["ssh_hostkey_sha256"] = _str_or_none(hostkey)
    if protocol == "ssh" and banner:
        fields["ssh_banner"] = banner.splitlines()[0] if banner else None
    return {k: v for k, v in fields.items() if v is not None}


def _censys_platform_http(endpoints: Any) -> Mapping[str, Any] | None:
    """The HTTP answer of a Platform service: its ``endpoints[].http``, the ``/`` endpoint first."""
    if not isinstance(endpoints, list):
        return None
    found = [e for e in endpoints if isinstance(e, Mapping) and isinstance(e.get("http"), Mapping)]
    if not found:
        return None
    root = next((e for e in found if e.get("path") == "/"), found[0])
    return root["http"]


CENSYS_NON_TCP = Filtered("censys_non_tcp")
#: A Platform search hit that is a certificate or a web property, not a host.
CENSYS_NOT_HOST = Filtered("censys_not_host")
_CENSYS_OTHER_ASSETS = ("certificate_v1", "webproperty_v1")
#: How deep host records may be wrapped (``result.hits[].host_v1.resource`` is the deepest shape).
_CENSYS_MAX_WRAPS = 6


def is_censys_record(record: Mapping[str, Any]) -> bool:
    """Whether a JSON object is a Censys host or an API answer that wraps hosts (for format detection)."""
    if "services" in record or isinstance(record.get("result"), list):  # a list: get many hosts
        return True
    return any(isinstance(record.get(key), Mapping) for key in ("host", "host_v1", "resource", "result"))


def censys_hosts(record: Any, _depth: int = 0) -> list[Any]:
    """The host objects in one Censys JSON value, whatever API answer wraps them.

    - Search v2 / legacy: a bare host (``ip``, ``services[]``); the view answer
      ``{"code": 200, "status": "OK", "result": host}``; the search answer ``{..., "result": {"hits":
      [host, ...]}}``.
    - Platform API: a bare host; ``{"result": {"resource": host}}`` (get a host);
      ``{"result": {"hits": [{"host_v1": {"resource": host}}, ...]}}`` (search);
      ``{"result": [{"resource": host}, ...]}`` (get many hosts); ``{"resource": host}`` and
      ``{"host_v1": {"resource": host}}`` (one asset or one hit, e.g. after ``jq '.result.hits[]'``);
      ``{"host": host}``.

    Items that are not hosts come back as :class:`Filtered` (other assets) or :class:`RejectedRecord`
    (API errors, values that are not objects); anything else unrecognised is returned as it is, for the
    extractor to say what it lacks.
    """
    if not isinstance(record, Mapping):
        return [RejectedRecord(MALFORMED, "not a JSON object")]
    if "ip" in record or "services" in record or _depth >= _CENSYS_MAX_WRAPS:
        return [record]
    for key in ("host", "host_v1", "resource"):
        inner = record.get(key)
        if isinstance(inner, Mapping):
            return censys_hosts(inner, _depth + 1)
    result = record.get("result")
    if isinstance(result, Mapping):
        hits = result.get("hits")
        if isinstance(hits, list):
            return [host for hit in hits for host in censys_hosts(hit, _depth + 1)]
        return censys_hosts(result, _depth + 1)
    if isinstance(result, list):
        return [host for item in result for host in censys_hosts(item, _depth + 1)]
    if any(isinstance(record.get(key), Mapping) for key in _CENSYS_OTHER_ASSETS):
        return [CENSYS_NOT_HOST]
    error = record.get("error")
    if error is not None:
        text = _SPACES.sub(" ", error if isinstance(error, str) else repr(error)[:200])
        code = record.get("code", record.get("status"))
        return [RejectedRecord(MALFORMED, f"a Censys API error answer ({code!r:.16}): {text[:200]}")]
    return [record]


def extract_censys(record: Any) -> list[Item]:
    """Censys host records: Search v2 ``services[]`` or the Platform API's, bare or in any API answer
    (see :func:`censys_hosts`)."""
    if type(record) is not dict:
        return [RejectedRecord(MALFORMED, "not a JSON object")]
    if "ip" in record:  # the common case: one bare host per line
        return _extract_censys_host(record)
    items: list[Item] = []
    for host in censys_hosts(record):
        if isinstance(host, Filtered | RejectedRecord):
            items.append(host)
        else:
            items.extend(_extract_censys_host(host))
    return items


def _extract_censys_host(record: Mapping[str, Any]) -> list[Item]:
    try:
        ip = parse_ip(record.get("ip"), "ip")
        asn = parse_asn(_dig(record, "autonomous_system", "asn"), "autonomous_system.asn")
    except RejectedRecord as rejected:
        return [rejected]
    services = record.get("services")
    if services is None:
        return [RejectedRecord(MISSING_FIELD, "services is missing")]
    if not isinstance(services, list):
        return [RejectedRecord(INVALID_TYPE, "services: expected a list")]
    items: list[Item] = []
    for index, service in enumerate(services):
        if not isinstance(service, Mapping):
            items.append(RejectedRecord(MALFORMED, f"services[{index}] is not an object"))
            continue
        transport = service.get("transport_protocol")
        if transport is None or transport == "":
            transport = "tcp"
        elif _text(transport) is None:
            detail = (
                f"services[{index}].transport_protocol: expected a string, got {type(transport).__name__}"
            )
            items.append(RejectedRecord(INVALID_TYPE, detail))
            continue
        if _text(transport).lower() != "tcp":
            items.append(CENSYS_NON_TCP)
            continue
        try:
            port = parse_port(service.get("port"), f"services[{index}].port")
            banner = service.get("banner")
            banner = "" if banner is None else parse_text(banner, f"services[{index}].banner")
        except RejectedRecord as rejected:
            items.append(rejected)
            continue
        protocol = (
            _str_or_none(service.get("service_name")) or _str_or_none(service.get("protocol")) or ""
        ).lower()
        items.append(Row(ip, port, asn, protocol, 0, banner, _censys_optional(service, protocol, banner)))
    return items

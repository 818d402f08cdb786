"""Application-layer bytes of simulated services, in the GPS/LZR ``data`` style.

A banner is a pure function of ``(family, slot, model, token)``: ``token`` is 0 for banners that all
devices of a model share (a vendor's default certificate, a CWMP server string) and a per-host number
for banners that carry something of their own (a host's certificate, its mail host name). Rendering
works on the *distinct* keys of a batch only, so a million services of a few thousand models cost a
few thousand string builds.

Banners look like what LZR records: HTTP responses with ``\\r\\n`` line ends (GPS splits them into
``http line`` features), SSH identification strings, SMTP/FTP/IMAP greetings, and TLS server flights
(ServerHello + Certificate records) written as lower-case hex, with a DER-shaped certificate whose
subject and issuer carry the vendor and model, so the ``tls cert`` and ``tls oid`` features see
shared structure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gpsgpu.sim.catalog import FAMILIES, Family
from gpsgpu.sim.hashing import mix64_int

_SYLLABLES = (
    "ar",
    "bel",
    "cor",
    "dex",
    "el",
    "fin",
    "gar",
    "hal",
    "ion",
    "jet",
    "kor",
    "lum",
    "max",
    "nov",
    "or",
    "pix",
    "quan",
    "ra",
    "sol",
    "tek",
    "ul",
    "vox",
    "wer",
    "xen",
    "yal",
    "zen",
    "tron",
    "net",
)
_MODEL_PREFIXES = ("NV", "GW", "XR", "DS", "IP", "SC", "HG", "RT", "AP", "MX", "UC", "TS", "EX")
_OPENSSH = (
    "8.2p1 Ubuntu-4ubuntu0.5",
    "7.4",
    "8.9p1 Ubuntu-3ubuntu0.1",
    "7.6p1 Ubuntu-4ubuntu0.3",
    "9.2p1 Debian-2+deb12u1",
    "7.9p1 Debian-10+deb10u2",
    "8.0",
    "8.4p1 Debian-5+deb11u1",
    "6.6.1p1 Ubuntu-2ubuntu2.13",
    "9.6p1 Ubuntu-3ubuntu13",
)
_WEB_STACKS = (
    ("nginx/1.18.0 (Ubuntu)", "Welcome to nginx!"),
    ("Apache/2.4.41 (Ubuntu)", "Apache2 Ubuntu Default Page: It works"),
    ("nginx", "404 Not Found"),
    ("Apache", "Index of /"),
    ("LiteSpeed", "Web Server's Default Page"),
    ("Microsoft-IIS/10.0", "IIS Windows Server"),
    ("openresty", "Welcome to OpenResty!"),
    ("Apache/2.4.6 (CentOS) OpenSSL/1.0.2k-fips", "Apache HTTP Server Test Page powered by CentOS"),
    ("nginx/1.20.1", "Test Page for the Nginx HTTP Server"),
    ("Caddy", "Caddy works!"),
    ("Microsoft-IIS/8.5", "IIS Windows Server"),
    ("Apache/2.4.57 (Debian)", "Apache2 Debian Default Page: It works"),
    ("cloudflare", "Direct IP access not allowed"),
    ("nginx/1.24.0", "Welcome to nginx!"),
)


def _h(*parts: int) -> int:
    value = 0x51ED270B27A1F5D3
    for part in parts:
        value = mix64_int(value ^ (part & 0xFFFFFFFFFFFFFFFF))
    return value


@dataclass(frozen=True)
class Identity:
    """Who made a device: vendor, model string and firmware version (from family and model index)."""

    vendor: str
    model: str
    version: str


def identity(family_index: int, model: int) -> Identity:
    """The vendor, model and version of model ``model`` of family ``family_index`` (deterministic)."""
    family = FAMILIES[family_index]
    h = _h(family_index, model, 0x1D)
    if family.vendors:
        vendor = family.vendors[model % len(family.vendors)]
    else:  # the long tail of appliance makers: names made of syllables
        vendor = "".join(_SYLLABLES[(h >> (5 * k)) % len(_SYLLABLES)] for k in range(2 + (h >> 60) % 2))
        vendor = vendor.capitalize()
    prefix = _MODEL_PREFIXES[(h >> 20) % len(_MODEL_PREFIXES)]
    name = f"{prefix}-{100 + (h >> 24) % 9900}"
    version = f"{1 + (h >> 40) % 5}.{(h >> 44) % 10}.{(h >> 48) % 30}"
    return Identity(vendor, name, version)


# --- DER and TLS ---------------------------------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = b"\x81" + bytes([n])
    else:
        length = b"\x82" + n.to_bytes(2, "big")
    return bytes([tag]) + length + body


_OID = {"C": b"\x55\x04\x06", "ST": b"\x55\x04\x08", "L": b"\x55\x04\x07", "O": b"\x55\x04\x0a",
        "OU": b"\x55\x04\x0b", "CN": b"\x55\x04\x03"}  # fmt: skip


def _name(fields: list[tuple[str, str]]) -> bytes:
    rdns = b"".join(
        _tlv(0x31, _tlv(0x30, _tlv(0x06, _OID[k]) + _tlv(0x0C, v.encode("utf-8")))) for k, v in fields
    )
    return _tlv(0x30, rdns)


def _pseudo_bytes(seed: int, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += _h(seed, counter).to_bytes(8, "big")
        counter += 1
    return bytes(out[:n])


def certificate(subject: list[tuple[str, str]], issuer: list[tuple[str, str]], seed: int) -> bytes:
    """A DER-shaped X.509 certificate (valid TLV structure, fake key and signature bytes)."""
    sha256_rsa = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a864886f70d01010b")) + b"\x05\x00")
    rsa = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
    validity = _tlv(0x30, _tlv(0x17, b"200101000000Z") + _tlv(0x17, b"300101000000Z"))
    key = _tlv(
        0x03, b"\x00" + _tlv(0x30, _tlv(0x02, b"\x00" + _pseudo_bytes(seed, 64)) + b"\x02\x03\x01\x00\x01")
    )
    tbs = _tlv(
        0x30,
        _tlv(0xA0, _tlv(0x02, b"\x02"))
        + _tlv(0x02, b"\x01" + _pseudo_bytes(seed ^ 0x5E, 8))
        + sha256_rsa
        + _name(issuer)
        + validity
        + _name(subject)
        + _tlv(0x30, rsa + key),
    )
    return _tlv(0x30, tbs + sha256_rsa + _tlv(0x03, b"\x00" + _pseudo_bytes(seed ^ 0x516, 64)))


def tls_flight(der: bytes) -> str:
    """A server's first TLS flight (ServerHello + Certificate) carrying ``der``, as lower-case hex.

    The ServerHello random is zeroed: a real one differs per connection, which would only add one
    unique ``http line`` feature per service.
    """
    server_hello = b"\x02\x00\x00\x26\x03\x03" + b"\x00" * 32 + b"\x00\xc0\x2f\x00"
    chain = len(der).to_bytes(3, "big") + der
    cert_msg = b"\x0b" + (len(chain) + 3).to_bytes(3, "big") + len(chain).to_bytes(3, "big") + chain
    handshake = server_hello + cert_msg
    return (b"\x16\x03\x03" + len(handshake).to_bytes(2, "big") + handshake).hex()


# --- styles --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    family_index: int
    slot: int
    model: int
    token: int

    @property
    def family(self) -> Family:
        return FAMILIES[self.family_index]

    @property
    def who(self) -> Identity:
        return identity(self.family_index, self.model)


def _http(status: str, headers: list[str], body: str = "") -> str:
    return "HTTP/1.1 " + status + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n" + body


def _host_name(token: int) -> str:
    h = _h(token, 0xD0)
    tld = ("com", "net", "org", "de", "fr", "io", "co.uk", "com.br", "ru", "jp")[h % 10]
    return f"{_SYLLABLES[(h >> 8) % 28]}{_SYLLABLES[(h >> 16) % 28]}{(h >> 24) % 1000}.{tld}"


def _cwmp(c: Context) -> str:
    w = c.who
    return _http(
        "401 Unauthorized",
        [
            f"Server: {w.vendor} CWMP/{w.version}",
            f'WWW-Authenticate: Digest realm="{w.vendor} {w.model}"',
            "Content-Length: 0",
        ],
    )


def _router_login(c: Context) -> str:
    w = c.who
    return _http(
        "200 OK",
        [
            f"Server: {w.vendor.lower()}-httpd/{w.version}",
            "Content-Type: text/html",
            "Cache-Control: no-cache",
        ],
        f"<html><head><title>{w.vendor} {w.model} Login</title></head>",
    )


def _web_page(c: Context) -> str:
    server, title = _WEB_STACKS[c.model % len(_WEB_STACKS)]
    return _http(
        "200 OK", [f"Server: {server}", "Content-Type: text/html; charset=UTF-8"], f"<title>{title}</title>"
    )


def _tls(subject: list[tuple[str, str]], issuer: list[tuple[str, str]], seed: int) -> str:
    return tls_flight(certificate(subject, issuer, seed))


def _tls_model(c: Context) -> str:
    w = c.who
    subject = [("C", "US"), ("O", w.vendor), ("OU", w.model), ("CN", f"{w.vendor.lower()}.local")]
    return _tls(subject, subject, _h(c.family_index, c.model, 0x7151))


def _tls_host(c: Context) -> str:
    issuer = [("C", "US"), ("O", "Let's Encrypt"), ("CN", ("R3", "R10", "E5")[c.model % 3])]
    return _tls([("CN", _host_name(c.token))], issuer, _h(c.token, 0x7152))


def _tls_myfritz(c: Context) -> str:
    name = f"{_h(c.token, 0xF7) & 0xFFFFFFFFFFFF:012x}.myfritz.net"
    return _tls([("CN", name)], [("CN", name)], _h(c.token, 0x7153))


def _tls_cisco_rv(c: Context) -> str:
    mac = ":".join(f"{(_h(c.token, 0xC1) >> (8 * k)) & 0xFF:02x}" for k in range(6))
    subject = [("ST", "California"), ("CN", mac), ("OU", "RV042"), ("O", "Cisco Systems, Inc."),
               ("L", "Irvine"), ("C", "US")]  # fmt: skip
    return _tls(subject, subject, _h(c.token, 0x7154))


def _ssh_openssh(c: Context) -> str:
    return f"SSH-2.0-OpenSSH_{_OPENSSH[c.model % len(_OPENSSH)]}"


def _ssh_dropbear(c: Context) -> str:
    return f"SSH-2.0-dropbear_20{16 + c.model % 8}.{70 + c.model % 16}"


def _ssh_vendor(c: Context) -> str:
    return f"SSH-2.0-{c.who.vendor.replace(' ', '')}_{c.who.version}"


def _smtp(c: Context) -> str:
    mta = ("Postfix (Ubuntu)", "Exim 4.96", "Microsoft ESMTP MAIL Service ready", "Zimbra ESMTP", "Sendmail")
    return f"220 mail.{_host_name(c.token)} ESMTP {mta[c.model % len(mta)]}\r\n"


def _imap(c: Context) -> str:
    return "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE STARTTLS] Dovecot ready.\r\n"


def _pop3(c: Context) -> str:
    return "+OK Dovecot ready.\r\n"


def _ftp_server(c: Context) -> str:
    daemons = (
        "(vsFTPd 3.0.3)",
        "ProFTPD Server (ProFTPD)",
        "Pure-FTPd",
        "FileZilla Server 1.7.0",
        "Microsoft FTP Service",
    )
    return f"220 {daemons[c.model % len(daemons)]}\r\n"


def _ftp_fritz(c: Context) -> str:
    return "220 FRITZ!Box7590 FTP server ready.\r\n"


def _telnet_login(c: Context) -> str:
    return f"\xff\xfb\x01\xff\xfb\x03\r\n{c.who.model} login: "


def _mysql(c: Context) -> str:
    versions = ("5.7.33-0ubuntu0.18.04.1", "8.0.36", "5.5.68-MariaDB", "10.6.12-MariaDB-0ubuntu0.22.04.1")
    return f"J\x00\x00\x00\n{versions[c.model % len(versions)]}\x00"


def _simple(text: str) -> Callable[[Context], str]:
    return lambda c: text


def _vendor_http(server: str, title: str) -> Callable[[Context], str]:
    def render(c: Context) -> str:
        w = c.who
        return _http(
            "200 OK",
            [f"Server: {server.format(v=w.vendor, m=w.model, ver=w.version)}", "Content-Type: text/html"],
            f"<title>{title.format(v=w.vendor, m=w.model, ver=w.version)}</title>",
        )

    return render


def _appliance(c: Context) -> str:
    w = c.who
    if c.family.slots[c.slot].protocol == "http":
        return _http(
            "200 OK",
            [f"Server: {w.vendor}-{w.model}/{w.version}", "Content-Type: text/html", "Connection: close"],
            f"<html><title>{w.vendor} {w.model}</title>",
        )
    return f"{w.vendor.upper()} {w.model} v{w.version} ready\r\n"


def _camera_proto(c: Context) -> str:
    w = c.who
    return f"\x00\x01{w.vendor.upper()}-{w.model}\x00\x00{w.version}"


def _pseudo(c: Context) -> str:
    kinds = (
        _http("200 OK", ["Server: tarpit", "Content-Length: 0"]),
        _http("400 Bad Request", ["Server: middlebox", "Connection: close"]),
        "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        _http("403 Forbidden", ["Content-Type: text/html"], "<title>Access denied</title>"),
    )
    return kinds[c.model % len(kinds)]


STYLES: dict[str, Callable[[Context], str]] = {
    "cwmp": _cwmp,
    "router_login": _router_login,
    "web_page": _web_page,
    "tls_model": _tls_model,
    "tls_host": _tls_host,
    "tls_myfritz": _tls_myfritz,
    "tls_cisco_rv": _tls_cisco_rv,
    "ssh_openssh": _ssh_openssh,
    "ssh_dropbear": _ssh_dropbear,
    "ssh_vendor": _ssh_vendor,
    "smtp": _smtp,
    "imap": _imap,
    "pop3": _pop3,
    "ftp_server": _ftp_server,
    "ftp_fritz": _ftp_fritz,
    "telnet_login": _telnet_login,
    "mysql": _mysql,
    "postgres": _simple("EFATAL\x00C0A000\x00Munsupported frontend protocol 21536.20527\x00"),
    "redis": _simple("-ERR wrong number of arguments for 'get' command\r\n"),
    "mongodb": _simple("\x00\x00\x00\x00\xd4\x07\x00\x00ismaster"),
    "elasticsearch": _simple(
        _http(
            "200 OK", ["content-type: application/json; charset=UTF-8"], '{"cluster_name" : "elasticsearch"}'
        )
    ),
    "dev_http": _vendor_http("Werkzeug/2.0.{ver}", "Dashboard"),
    "rdp": _simple("\x03\x00\x00\x13\x0e\xd0\x00\x00\x124\x00\x02\x1f\x08\x00\x02\x00\x00\x00"),
    "smb": _simple("\x00\x00\x00\x85\xffSMBr\x00\x00\x00\x00\x98\x53\xc8"),
    "msrpc": _simple("\x05\x00\x0d\x03\x10\x00\x00\x00\x18\x00\x00\x00"),
    "winrm": _simple(
        _http("404 Not Found", ["Content-Type: text/html; charset=us-ascii", "Server: Microsoft-HTTPAPI/2.0"])
    ),
    "mssql": _simple("\x04\x01\x00\x25\x00\x00\x01\x00\x00\x00\x15\x00\x06\x01"),
    "vnc": _simple("RFB 003.008\n"),
    "rtsp": lambda c: (
        f"RTSP/1.0 200 OK\r\nCSeq: 1\r\nServer: {c.who.vendor} Rtsp Server/{c.who.version}\r\n\r\n"
    ),
    "camera_web": _vendor_http("{v}-Webs", "{v} {m}"),
    "camera_proto": _camera_proto,
    "nas_web": _vendor_http("nginx", "{v} {m} - DiskStation"),
    "vpn_web": _vendor_http("xxxxxxxx-xxxxx", "{v} SSL VPN"),
    "pptp": lambda c: f"PPTP {c.who.vendor} {c.who.version}",
    "tr064": _simple(
        _http("404 Not Found", ["Server: AVM FRITZ!Box 7590 154.07.57 UPnP/1.0", "Content-Length: 0"])
    ),
    "cpanel": _vendor_http("cpsrvd", "cPanel Login"),
    "media_http": _vendor_http("{v} Media/{ver}", "{v} {m}"),
    "printer_web": _vendor_http("{v} HTTP Server {ver}", "{v} {m} Printer"),
    "ipp": _vendor_http("CUPS/2.{ver} IPP/2.1", "Home - CUPS"),
    "pjl": lambda c: f'@PJL INFO ID\r\n"{c.who.vendor} {c.who.model}"\r\n\x0c',
    "lpd": _simple("\x01"),
    "appliance": _appliance,
    "modbus": _simple("\x00\x00\x00\x00\x00\x05\x00\x2b\x0e\x01\x01"),
    "s7": _simple("\x03\x00\x00\x16\x11\xd0\x00\x01\x00\x02\x00\xc0\x01\x0a"),
    "dnp3": _simple("\x05\x64\x0a\x44\x00\x00\x01\x00"),
    "enip": lambda c: f"\x63\x00\x2e\x00{c.who.vendor} {c.who.model}",
    "bacnet": _simple("\x81\x0a\x00\x0c"),
    "mqtt": _simple("\x20\x02\x00\x05"),
    "minecraft": lambda c: f'{{"version":{{"name":"1.20.{c.model % 5}"}},"players":{{"max":20}}}}',
    "plex": _simple(_http("401 Unauthorized", ["X-Plex-Protocol: 1.0", "Content-Type: text/html"])),
    "p2p": _simple("\x13BitTorrent protocol\x00\x00\x00\x00\x00\x10\x00\x05"),
    "pseudo": _pseudo,
}


# --- keys and rendering --------------------------------------------------------------------------

_FAMILY_SHIFT = 56
_SLOT_SHIFT = 48
_MODEL_SHIFT = 32


def banner_keys(xp: object, family: object, slot: object, model: object, token: object) -> object:
    """Pack ``(family, slot, model, token)`` arrays into one uint64 banner key per service.

    ``token`` must already be 0 where the banner is shared by the model (see ``Slot.per_host``).
    """
    u64 = xp.uint64  # type: ignore[attr-defined]
    return (
        (family.astype(u64) << u64(_FAMILY_SHIFT))  # type: ignore[attr-defined]
        | (slot.astype(u64) << u64(_SLOT_SHIFT))  # type: ignore[attr-defined]
        | (model.astype(u64) << u64(_MODEL_SHIFT))  # type: ignore[attr-defined]
        | token.astype(u64)  # type: ignore[attr-defined]
    )


def render_key(key: int) -> str:
    family = (key >> _FAMILY_SHIFT) & 0xFF
    slot = (key >> _SLOT_SHIFT) & 0xFF
    model = (key >> _MODEL_SHIFT) & 0xFFFF
    token = key & 0xFFFFFFFF
    style = FAMILIES[family].slots[slot].banner
    return STYLES[style](Context(family, slot, model, token))


def render_banners(keys: np.ndarray) -> pa.Array:
    """Banner strings (a pyarrow string array) for host uint64 banner keys; renders each key once."""
    if keys.size == 0:
        return pa.array([], type=pa.string())
    uniques, inverse = np.unique(keys, return_inverse=True)
    strings = pa.array([render_key(int(k)) for k in uniques.tolist()], type=pa.string())
    return strings.take(pa.array(inverse.astype(np.int64).ravel()))

"""Real-shaped scan records of every supported format, generated deterministically.

These are small synthetic populations written with the exact field names and nesting of each tool's
output (LZR, ZGrab2, ZMap, Censys, the GPS seed schema). They exist so that tests can exercise
every reader on records shaped like the real ones, and so that a fresh install has something to
ingest; the simulated Internet (:mod:`gpsgpu.sim`) is the data for learning and evaluation.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: (protocol, port, banner template) by device family; {n} is replaced by a per-host number.
_FAMILIES: tuple[tuple[str, tuple[tuple[str, int, str], ...]], ...] = (
    (
        "web",
        (
            ("http", 80, "HTTP/1.1 200 OK\r\nServer: nginx/1.18.0\r\nContent-Type: text/html\r\n\r\n<html>"),
            ("tls", 443, ""),
            ("http", 8080, "HTTP/1.1 302 Found\r\nServer: nginx/1.18.0\r\nLocation: /login\r\n\r\n"),
        ),
    ),
    (
        "router",
        (
            ("http", 80, 'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="RT-N{n}"\r\n\r\n'),
            ("http", 7547, "HTTP/1.1 404 Not Found\r\nServer: gSOAP/2.8\r\nContent-Length: 0\r\n\r\n"),
            ("telnet", 23, "\xff\xfd\x18\xff\xfd\x20login: "),
        ),
    ),
    (
        "server",
        (
            ("ssh", 22, "SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.{n}"),
            ("smtp", 25, "220 mail{n}.example.net ESMTP Postfix"),
            ("imap", 143, "* OK [CAPABILITY IMAP4rev1] Dovecot ready."),
            ("smtp", 465, ""),
        ),
    ),
    (
        "camera",
        (("http", 554, "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"), ("http", 8000, "HTTP/1.0 200 OK\r\n\r\n")),
    ),
    ("single", (("http", 8081, "HTTP/1.1 200 OK\r\nServer: lighttpd\r\n\r\n"),)),
)


@dataclass(frozen=True)
class SampleService:
    ip: str
    port: int
    asn: int
    protocol: str
    window: int
    banner: str
    tls_der: bytes | None = None


def _fake_certificate(host: int) -> bytes:
    """DER-shaped bytes (SEQUENCE-tagged) standing in for a leaf certificate; not a valid X.509."""
    body = b"\x30\x82\x01\x0a" + hashlib.sha256(f"cert-{host % 7}".encode()).digest() * 8
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def tls_records(der: bytes) -> bytes:
    """A TLS ServerHello + Certificate handshake flight carrying ``der`` (as a server sends it)."""
    server_hello = b"\x02\x00\x00\x26\x03\x03" + b"\x00" * 32 + b"\x00\x13\x01\x00"
    chain = len(der).to_bytes(3, "big") + der
    certificate = b"\x0b" + (len(chain) + 3).to_bytes(3, "big") + len(chain).to_bytes(3, "big") + chain
    handshake = server_hello + certificate
    return b"\x16\x03\x03" + len(handshake).to_bytes(2, "big") + handshake


def sample_services(n_hosts: int = 200, seed: int = 0) -> list[SampleService]:
    """Services of ``n_hosts`` hosts drawn from a few device families in a few /16s and ASes."""
    rng = random.Random(seed)
    services: list[SampleService] = []
    networks = [(93, 184, 13335), (185, 12, 16276), (203, 45, 4134), (45, 33, 63949)]
    for host in range(n_hosts):
        first, second, asn = networks[rng.randrange(len(networks))]
        ip = f"{first}.{second}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        _, ports = _FAMILIES[rng.randrange(len(_FAMILIES))]
        window = rng.choice((29200, 64240, 65535, 5840))
        for protocol, port, template in ports:
            if len(ports) > 1 and rng.random() < 0.15:
                continue  # not every device of a family runs every service
            der = _fake_certificate(host) if protocol == "tls" or port == 465 else None
            banner = template.replace("{n}", str(host % 10))
            if der is not None:
                banner = tls_records(der).hex()
            services.append(SampleService(ip, port, asn, protocol, window, banner, der))
    return services


# --- the formats --------------------------------------------------------------------------------


def gps_records(services: list[SampleService]) -> Iterator[dict[str, Any]]:
    """The GPS seed schema (``ip, p, asn, data, fingerprint, w``)."""
    for s in services:
        yield {
            "ip": s.ip,
            "p": s.port,
            "asn": s.asn,
            "data": s.banner,
            "fingerprint": s.protocol,
            "w": s.window,
        }


def lzr_records(services: list[SampleService], seed: int = 0) -> Iterator[dict[str, Any]]:
    """LZR JSON Lines, with the non-services LZR also prints (RST, zero window, no data) mixed in."""
    rng = random.Random(seed)
    for index, s in enumerate(services):
        record = {
            "saddr": s.ip,
            "daddr": "198.51.100.7",
            "sport": s.port,
            "dport": 40000 + index % 20000,
            "seqnum": rng.getrandbits(32),
            "acknum": rng.getrandbits(32),
            "window": s.window,
            "ttl": 52,
            "Counter": 0,
            "ACK": True,
            "ACKed": True,
            "SYN": False,
            "RST": False,
            "FIN": False,
            "PUSH": True,
            "HandshakeNum": 0,
            "fingerprint": s.protocol,
            "expectedRToLZR": "data",
            "data": s.banner,
            "ackingFirewall": False,
            "Timestamp": "2026-11-01T00:00:00.000000000Z",
            "zannotate": {"routing": {"prefix": s.ip.rsplit(".", 2)[0] + ".0.0/16", "asn": s.asn}},
        }
        yield record
        if index % 10 == 3:
            yield {**record, "RST": True, "data": "", "fingerprint": ""}
        if index % 10 == 7:
            yield {**record, "sport": s.port + 1, "window": 0, "data": ""}


def zmap_csv_lines(services: list[SampleService], header: bool = True) -> Iterator[str]:
    """ZMap ``-f saddr,sport,window,classification,success`` CSV (a header unless ``header`` is false,
    in which case only ``saddr,sport`` as ZMap prints by default for multi-port scans)."""
    if header:
        yield "saddr,sport,window,classification,success"
        for s in services:
            yield f"{s.ip},{s.port},{s.window},synack,1"
        yield f"{services[0].ip},9,0,rst,0"
    else:
        for s in services:
            yield f"{s.ip},{s.port}"


def zmap_json_records(services: list[SampleService]) -> Iterator[dict[str, Any]]:
    for s in services:
        yield {
            "saddr": s.ip,
            "daddr": "198.51.100.7",
            "sport": s.port,
            "dport": 54321,
            "window": s.window,
            "classification": "synack",
            "success": True,
            "repeat": False,
            "timestamp_str": "2026-11-01T00:00:00.000Z",
        }


def _zgrab2_http(s: SampleService) -> dict[str, Any]:
    head, _, body = s.banner.partition("\r\n\r\n")
    status_line = head.split("\r\n", 1)[0]
    headers: dict[str, list[str]] = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(": ")
        headers.setdefault(name.lower().replace("-", "_"), []).append(value)
    return {
        "response": {
            "status_line": status_line.split(" ", 1)[1] if " " in status_line else status_line,
            "status_code": int(status_line.split(" ")[1]) if status_line.count(" ") else 200,
            "protocol": {"name": status_line.split(" ")[0], "major": 1, "minor": 1},
            "headers": headers,
            "body": body + "<title>Welcome</title>" if body else body,
            "content_length": len(body),
        }
    }


def zgrab2_records(services: list[SampleService]) -> Iterator[dict[str, Any]]:
    """ZGrab2 JSON Lines: ``{ip, data: {<module>: {status, protocol, port, result, timestamp}}}``."""
    for s in services:
        if s.protocol == "http":
            module, result = "http", _zgrab2_http(s)
        elif s.tls_der is not None:
            module = "tls"
            result = {
                "handshake_log": {
                    "server_hello": {"version": {"name": "TLSv1.2"}, "cipher_suite": {"name": "TLS_AES_128"}},
                    "server_certificates": {
                        "certificate": {
                            "raw": base64.b64encode(s.tls_der).decode(),
                            "parsed": {
                                "subject_dn": "CN=device.example.net, O=Example Devices",
                                "issuer_dn": "CN=Example CA",
                                "subject": {
                                    "common_name": ["device.example.net"],
                                    "organization": ["Example Devices"],
                                },
                                "fingerprint_sha256": hashlib.sha256(s.tls_der).hexdigest(),
                            },
                        }
                    },
                }
            }
        elif s.protocol == "ssh":
            software = s.banner.split("-", 2)[2]
            module = "ssh"
            result = {
                "server_id": {"raw": s.banner, "version": "2.0", "software": software},
                "key_exchange": {
                    "server_host_key": {"fingerprint_sha256": hashlib.sha256(s.ip.encode()).hexdigest()}
                },
            }
        else:
            module, result = "banner", {"banner": s.banner, "length": len(s.banner)}
        yield {
            "ip": s.ip,
            "data": {
                module: {
                    "status": "success",
                    "protocol": module,
                    "port": s.port,
                    "result": result,
                    "timestamp": "2026-11-01T00:00:00Z",
                }
            },
        }
    yield {
        "ip": services[0].ip,
        "data": {"http": {"status": "connection-timeout", "protocol": "http", "port": 81}},
    }


def censys_records(services: list[SampleService]) -> Iterator[dict[str, Any]]:
    """Censys Search v2 host records: one per host with ``services[]`` and ``autonomous_system``."""
    hosts: dict[str, list[SampleService]] = {}
    for s in services:
        hosts.setdefault(s.ip, []).append(s)
    for ip, host_services in hosts.items():
        entries: list[dict[str, Any]] = []
        for s in host_services:
            entry: dict[str, Any] = {
                "port": s.port,
                "service_name": s.protocol.upper(),
                "extended_service_name": s.protocol.upper(),
                "transport_protocol": "TCP",
                "banner": "" if s.tls_der else s.banner,
            }
            if s.protocol == "http":
                entry["http"] = {
                    "response": {
                        "status_code": 200,
                        "html_title": "Welcome",
                        "headers": {"Server": ["nginx"]},
                    }
                }
            if s.tls_der is not None:
                entry["tls"] = {
                    "certificates": {
                        "leaf_fp_sha_256": hashlib.sha256(s.tls_der).hexdigest(),
                        "leaf_data": {"subject_dn": "CN=device.example.net", "issuer_dn": "CN=Example CA"},
                    }
                }
            entries.append(entry)
        entries.append({"port": 53, "service_name": "DNS", "transport_protocol": "UDP"})
        yield {
            "ip": ip,
            "services": entries,
            "autonomous_system": {
                "asn": host_services[0].asn,
                "name": "EXAMPLE-AS",
                "bgp_prefix": f"{ip}/32",
            },
            "location": {"country_code": "US"},
            "last_updated_at": "2026-11-01T00:00:00Z",
        }

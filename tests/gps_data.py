"""Generated seeds and priors scans for the GPS engine's tests and benchmark.

Hosts belong to device families; a family has a set of ports, banners per port (shared lines plus
one host-specific line), a TCP window, TLS certificates, a few /16 networks and ASNs. That gives
GPS's structure (features that predict other ports) and the cases the contract singles out:
ties (many features of one port with the same hitrate), single-port hosts, hosts with more than
10 ports, repeated ``(ip, port)`` rows (exact copies and ones with another banner), TLS rows (cert
in the ``tls_cert`` column, or only in the banner as hex or as raw bytes), ASN 0 (unknown), and the
ports 0 and 65535.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PORTS = np.array(
    [0, 21, 22, 23, 25, 80, 443, 554, 7547, 8080, 8443, 2222, 3389, 5060, 65535], dtype=np.uint16
)
PROTOCOLS = {22: "ssh", 2222: "ssh", 443: "tls", 8443: "tls"}


def _cert(rng: np.random.Generator, n_bytes: int) -> str:
    # DER-ish bytes with many 0x30 (SEQUENCE) tags, so the "tls oid" pieces vary in length.
    body = rng.integers(0, 256, n_bytes, dtype=np.uint8)
    body[rng.random(n_bytes) < 0.08] = 0x30
    return "3082" + body.tobytes().hex()


def tls_flight(cert_hex: str, *, split: bool = False) -> bytes:
    """TLS records of a ServerHello + Certificate flight carrying ``cert_hex`` as the leaf."""
    cert = bytes.fromhex(cert_hex)
    hello_body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x13\x01" + b"\x00"
    hello = b"\x02" + len(hello_body).to_bytes(3, "big") + hello_body
    chain = len(cert).to_bytes(3, "big") + cert + (3).to_bytes(3, "big") + b"\x30\x01\x00"
    body = len(chain).to_bytes(3, "big") + chain
    certificate = b"\x0b" + len(body).to_bytes(3, "big") + body
    handshake = hello + certificate
    if not split:
        return b"\x16\x03\x03" + len(handshake).to_bytes(2, "big") + handshake
    cut = len(hello) + 7  # the Certificate message spans two records
    first, second = handshake[:cut], handshake[cut:]
    return (
        b"\x16\x03\x03"
        + len(first).to_bytes(2, "big")
        + first
        + b"\x16\x03\x03"
        + len(second).to_bytes(2, "big")
        + second
    )


def make_services(
    n_hosts: int,
    *,
    seed: int = 0,
    family_seed: int = 0,
    n_families: int = 12,
    n_networks: int = 6,
    single_share: float = 0.3,
    pseudo_share: float = 0.02,
    duplicate_share: float = 0.02,
    with_tls_column: bool = True,
    host_lines: bool = True,
) -> pd.DataFrame:
    """A services frame of ``n_hosts`` hosts (ports per host: 1, 2..10, or 11..14 for pseudo hosts)."""
    rng = np.random.default_rng(family_seed)  # families are shared by seeds and priors scans
    fam_ports = [rng.choice(PORTS, size=rng.integers(2, 7), replace=False) for _ in range(n_families)]
    fam_net = (
        rng.integers(1, 223, size=(n_families, n_networks), dtype=np.uint32) << 24
        | rng.integers(0, 4, size=(n_families, n_networks), dtype=np.uint32) << 16
    )
    fam_asn = rng.choice(np.array([0, 3320, 7922, 13335, 4134, 65000], dtype=np.uint32), size=(n_families, 2))
    fam_window = rng.choice(np.array([0, 1024, 5840, 14600, 29200, 65535], dtype=np.int32), size=n_families)
    fam_cert = [_cert(rng, int(rng.integers(20, 90))) for _ in range(n_families)]
    fam_server = [f"Server: family{f}/{rng.integers(1, 4)}.0" for f in range(n_families)]
    rng = np.random.default_rng([family_seed, seed])

    family = rng.integers(0, n_families, n_hosts)
    net = fam_net[family, rng.integers(0, n_networks, n_hosts)]
    ip = net | rng.integers(0, 1 << 16, n_hosts, dtype=np.uint32)
    kind = rng.random(n_hosts)
    ips, ports, asns, protos, windows, banners, certs = [], [], [], [], [], [], []
    for h in range(n_hosts):
        f = int(family[h])
        if kind[h] < pseudo_share:
            host_ports = rng.choice(
                np.arange(1000, 1100, dtype=np.uint16), size=rng.integers(11, 15), replace=False
            )
        elif kind[h] < pseudo_share + single_share:
            host_ports = rng.choice(fam_ports[f], size=1)
        else:
            keep = rng.random(fam_ports[f].size) < 0.85
            host_ports = fam_ports[f][keep] if keep.sum() >= 2 else fam_ports[f][:2]
            if rng.random() < 0.1:  # a random extra port (e.g. a router's random HTTPS port)
                host_ports = np.unique(np.append(host_ports, rng.integers(0, 65536, dtype=np.uint16)))[:10]
        host_asn = fam_asn[f, rng.integers(0, 2)]
        for port in host_ports.tolist():
            proto = PROTOCOLS.get(port, "http" if port in (80, 8080, 7547) else "unknown")
            cert = None
            if proto == "ssh":
                banner = f"SSH-2.0-Family{f}_{port % 3}"
            elif proto == "tls":
                cert = fam_cert[f] if rng.random() < 0.9 else _cert(rng, 30)
                style = rng.random()
                if style < 0.5:
                    banner = tls_flight(cert, split=style < 0.1).hex()
                elif style < 0.7:
                    banner = tls_flight(cert).decode("latin-1")
                else:
                    banner = "\x15\x03\x03\x00\x02\x02\x28"  # an alert: no certificate in the banner
                if not with_tls_column or rng.random() < 0.5:
                    cert = None
            else:
                lines = [f"HTTP/1.1 {200 + (port % 2) * 100} OK\r", fam_server[f] + "\r"]
                if host_lines:
                    lines.append(f"X-Host: {rng.integers(0, 4 if rng.random() < 0.5 else 1_000_000)}\r")
                lines += ["\r", ""]
                banner = "\n".join(lines) if proto == "http" else f"220 family{f} ready"
            ips.append(int(ip[h]))
            ports.append(port)
            asns.append(int(host_asn))
            protos.append(proto)
            windows.append(int(fam_window[f]))
            banners.append(banner)
            certs.append(cert)
    frame = pd.DataFrame(
        {
            "ip": np.array(ips, dtype=np.uint32),
            "port": np.array(ports, dtype=np.uint16),
            "asn": np.array(asns, dtype=np.uint32),
            "protocol": pd.array(protos, dtype="string"),
            "window": np.array(windows, dtype=np.int32),
            "banner": pd.array(banners, dtype="string"),
        }
    )
    if with_tls_column:
        frame["tls_cert"] = pd.array(certs, dtype="string")
    n_dup = int(len(frame) * duplicate_share)
    if n_dup:
        dup = frame.iloc[rng.integers(0, len(frame), n_dup)].copy()
        changed = rng.random(n_dup) < 0.5
        dup.loc[changed, "banner"] = dup.loc[changed, "banner"] + "\nX-Extra: dup"
        frame = pd.concat([frame, dup], ignore_index=True)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def make_priors(seed_services: pd.DataFrame, n_hosts: int, *, seed: int = 1) -> pd.DataFrame:
    """A priors scan: new hosts of the same families (fresh ``seed``), plus some seed services again."""
    fresh = make_services(n_hosts, seed=seed + 1000, single_share=0.5, duplicate_share=0.0)
    again = seed_services.sample(n=min(len(seed_services), max(1, n_hosts // 4)), random_state=seed)
    columns = [c for c in fresh.columns if c in again.columns]
    return pd.concat([fresh[columns], again[columns]], ignore_index=True)

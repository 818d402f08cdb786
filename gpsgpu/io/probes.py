"""Darknet probes in: pcap/pcapng captures and CSV/Parquet flow records -> the probes table.

A probe is a TCP SYN without ACK to an IPv4 address (``ts, src, dst, dport``, see
:mod:`gpsgpu.portdist.columns`). Everything else in a capture is *filtered* (counted by reason,
not an error): SYN-ACKs, RSTs and other TCP segments (``not_syn``), UDP/ICMP (``not_tcp``), IPv6
(``ipv6``), ARP and other non-IP frames (``not_ip``), non-first IP fragments (``fragment``).
Packets that claim to be IPv4/TCP but do not parse are *rejected* with their packet number
(1-based) in ``PROBES.rejects.jsonl``: ``malformed`` (bad header), ``truncated_packet`` (captured
too short to hold the TCP ports and flags). Flow records are rejected by field
(``missing_field``, ``invalid_ip``, ``invalid_port``, ``invalid_timestamp``, ``malformed`` for a
wrong number of fields) with their line number (CSV, counting the header) or row number (Parquet).

Captures are framed here (classic pcap in both byte orders and both time resolutions; pcapng
section, interface and packet blocks, with ``if_tsresol``/``if_tsoffset``) so that a capture cut
short is noticed: :class:`TruncatedCapture` says after how many packets. The link and network
layers are decoded here too, by byte offsets: Ethernet (with any depth of 802.1Q, 802.1ad and legacy
QinQ tags, and LLC/SNAP), Linux cooked capture v1/v2, raw IP (LINKTYPE_RAW, DLT 12/14, IPv4/IPv6),
BSD loopback (NULL and LOOP, the family in either byte order), PPP and Cisco HDLC; a pcapng file may
mix them across interfaces. Any other link type is an error naming it, not a capture of ``not_ip``.
"""

from __future__ import annotations

import io
import os
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gpsgpu.errors import InputError
from gpsgpu.io.parquet import read_table
from gpsgpu.io.rejects import (
    INVALID_IP,
    INVALID_PORT,
    MALFORMED,
    MISSING_FIELD,
    NON_UTF8,
    RECORD_EXCERPT_BYTES,
    RECORD_TOO_LONG,
    UNBALANCED_QUOTE,
    RejectedRecord,
    Rejects,
)
from gpsgpu.io.sources import (
    MAX_RECORD_BYTES,
    PARQUET_MAGIC,
    InputSource,
    TruncatedInput,
    long_line_spans,
    open_input,
    printable,
    read_all,
)
from gpsgpu.portdist import columns as C

#: Reject reasons of this module beyond :mod:`gpsgpu.io.rejects`'s.
TRUNCATED_PACKET = "truncated_packet"
INVALID_TIMESTAMP = "invalid_timestamp"
TRUNCATED_FILE = "truncated_file"

#: Filter reasons (well-formed records that are not probes).
NOT_SYN, NOT_TCP, IPV6, NOT_IP, FRAGMENT = "not_syn", "not_tcp", "ipv6", "not_ip", "fragment"

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # little-endian, microseconds (scale to us: x 1)
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

#: Link types (LINKTYPE_* of tcpdump.org) this reader decodes.
LINKTYPE_NULL = 0  # BSD loopback: a 4-byte address family in the capturing host's byte order
LINKTYPE_ETHERNET = 1  # with any number of 802.1Q / 802.1ad / legacy QinQ tags
LINKTYPE_PPP = 9
LINKTYPE_PPP_HDLC = 50
LINKTYPE_RAW = 101
LINKTYPE_C_HDLC = 104  # Cisco HDLC
LINKTYPE_LOOP = 108  # OpenBSD loopback: the family in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
RAW_LINKTYPES = (LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6)  # 12 and 14: DLT_RAW of BSDs
LINKTYPES = (
    LINKTYPE_NULL,
    LINKTYPE_ETHERNET,
    LINKTYPE_PPP,
    LINKTYPE_PPP_HDLC,
    LINKTYPE_C_HDLC,
    LINKTYPE_LOOP,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    *RAW_LINKTYPES,
)
#: Names of link types met in captures that this reader does not decode (for the error message).
_OTHER_LINKTYPES = {
    6: "IEEE802_5",
    8: "SLIP",
    10: "FDDI",
    51: "PPP_ETHER",
    105: "IEEE802_11",
    107: "FRELAY",
    119: "PRISM_HEADER",
    122: "IP_OVER_FC",
    127: "IEEE802_11_RADIOTAP",
    143: "DOCSIS",
    163: "IEEE802_11_AVS",
    187: "BLUETOOTH_HCI_H4",
    189: "USB_LINUX",
    192: "PPI",
    195: "IEEE802_15_4_WITHFCS",
    201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    220: "USB_LINUX_MMAPPED",
    227: "CAN_SOCKETCAN",
    239: "NFLOG",
    249: "USBPCAP",
    253: "NETLINK",
    274: "NORDIC_BLE",
}
_READ_LINKS = (
    "Ethernet (802.1Q/QinQ tags), Linux cooked v1/v2, raw IP, BSD loopback, PPP and Cisco HDLC are read"
)

#: A record longer than this is a corrupt record header, not a packet (the pcap spec's own cap).
MAX_CAPLEN = 256 * 1024

_TCP_SYN, _TCP_ACK = 0x02, 0x10
_ETH_IP4, _ETH_IP6 = 0x0800, 0x86DD
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))  # 802.1Q, 802.1ad, legacy QinQ
_AF_INET6 = frozenset((10, 24, 28, 30))  # Linux, NetBSD/OpenBSD, FreeBSD, Darwin
_LINK_HEADER = {
    LINKTYPE_NULL: 4,
    LINKTYPE_LOOP: 4,
    LINKTYPE_C_HDLC: 4,
    LINKTYPE_LINUX_SLL: 16,
    LINKTYPE_LINUX_SLL2: 20,
}


class TruncatedCapture(Exception):
    """The capture ends inside a packet; ``packets`` were read before it."""

    def __init__(self, packets: int, offset: int, detail: str) -> None:
        super().__init__(detail)
        self.packets = packets
        self.offset = offset
        self.detail = detail


@dataclass
class ProbeColumns:
    """Probe columns accumulated while reading (host lists, turned into arrays at the end)."""

    ts: list[int] = field(default_factory=list)
    src: list[int] = field(default_factory=list)
    dst: list[int] = field(default_factory=list)
    dport: list[int] = field(default_factory=list)

    def table(self) -> pa.Table:
        return pa.Table.from_arrays(
            [
                pa.array(np.asarray(self.ts, dtype=np.int64)),
                pa.array(np.asarray(self.src, dtype=np.uint32)),
                pa.array(np.asarray(self.dst, dtype=np.uint32)),
                pa.array(np.asarray(self.dport, dtype=np.uint16)),
            ],
            schema=C.PROBES_SCHEMA,
        )


@dataclass
class ProbesRead:
    """What reading the inputs gave: the probes, rejects, filter counts and input descriptions."""

    table: pa.Table
    rejects: Rejects
    records: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, Any]:
        rejected = self.rejects.total
        return {
            "records": self.records,
            "probes": self.table.num_rows,
            "filtered": sum(self.filtered.values()),
            "filtered_by_reason": dict(sorted(self.filtered.items())),
            "rejected": rejected,
            "rejected_by_reason": dict(sorted(self.rejects.counts.items())),
            "reject_rate": rejected / self.records if self.records else 0.0,
        }


# --- packet decoding ------------------------------------------------------------------------------


def linktype_name(linktype: int) -> str:
    """``LINKTYPE_<NAME> (<number>)`` where the number is a known one, else the number."""
    name = _OTHER_LINKTYPES.get(linktype)
    return f"{linktype} (LINKTYPE_{name})" if name else str(linktype)


def unsupported_linktype(linktype: int, where: str) -> InputError:
    return InputError(f"unsupported {where} link type {linktype_name(linktype)}; {_READ_LINKS}")


def _cut(what: str, have: int, need: int) -> RejectedRecord:
    return RejectedRecord(TRUNCATED_PACKET, f"{what} cut short ({have} of {need} bytes)")


def decode_packet(linktype: int, buf: bytes) -> tuple[int, int, int] | str:
    """``(src, dst, dport)`` of a TCP SYN probe, or the filter reason of any other packet.

    The headers are read with plain byte indexing (no per-packet objects): this is the hot loop of
    a capture's ingest.

    Raises
    ------
    RejectedRecord
        The link-layer header is cut short, or the packet claims IPv4 (or TCP) but its headers do
        not parse or are cut short.
    """
    n = len(buf)
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            raise _cut("Ethernet header", n, 14)
        ethertype, off = buf[12] << 8 | buf[13], 14
        if ethertype < 0x0600:  # an 802.3 length: IP only behind an LLC/SNAP header
            if n < 22 or buf[14:17] != b"\xaa\xaa\x03":
                return NOT_IP
            ethertype, off = buf[20] << 8 | buf[21], 22
    elif linktype in RAW_LINKTYPES:
        if not n:
            raise RejectedRecord(MALFORMED, "empty packet")
        version = buf[0] >> 4
        if version == 6:
            return IPV6
        if version != 4:
            raise RejectedRecord(MALFORMED, f"raw IP packet of version {version}")
        return _decode_ipv4(buf, 0)
    elif linktype in (LINKTYPE_PPP, LINKTYPE_PPP_HDLC):
        off = 2 if buf[:2] == b"\xff\x03" else 0  # address and control, when not compressed
        if n <= off:
            raise _cut("PPP header", n, off + 1)
        if buf[off] & 1:  # a compressed one-byte protocol field
            proto, off = buf[off], off + 1
        elif n < off + 2:
            raise _cut("PPP header", n, off + 2)
        else:
            proto, off = buf[off] << 8 | buf[off + 1], off + 2
        if proto == 0x0021:
            return _decode_ipv4(buf, off)
        return IPV6 if proto == 0x0057 else NOT_IP
    else:
        off = _LINK_HEADER.get(linktype, -1)
        if off < 0:
            raise unsupported_linktype(linktype, "capture")
        if n < off:
            raise _cut("link-layer header", n, off)
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            # The family is in the writer's byte order (NULL) or network order (LOOP, though some
            # writers get it wrong): a family is small, so the order that gives a small value wins.
            family = int.from_bytes(buf[:4], "little")
            if family > 0xFFFF:
                family = int.from_bytes(buf[:4], "big")
            if family == 2:
                return _decode_ipv4(buf, 4)
            return IPV6 if family in _AF_INET6 else NOT_IP
        if linktype == LINKTYPE_LINUX_SLL:
            ethertype = buf[14] << 8 | buf[15]
        elif linktype == LINKTYPE_LINUX_SLL2:
            ethertype = buf[0] << 8 | buf[1]
        else:  # Cisco HDLC: address, control, then an Ethertype
            ethertype = buf[2] << 8 | buf[3]
    while ethertype in _VLAN_TPIDS:  # any depth of 802.1Q / QinQ tags
        if n < off + 4:
            raise _cut("VLAN tag", n - off, 4)
        ethertype, off = buf[off + 2] << 8 | buf[off + 3], off + 4
    if ethertype == _ETH_IP4:
        return _decode_ipv4(buf, off)
    return IPV6 if ethertype == _ETH_IP6 else NOT_IP


def _decode_ipv4(buf: bytes, off: int) -> tuple[int, int, int] | str:
    """The IPv4 packet at ``buf[off:]``: ``(src, dst, dport)`` of a SYN probe, or a filter reason."""
    n = len(buf) - off
    if n < 20:
        raise RejectedRecord(TRUNCATED_PACKET, f"IPv4 header cut short ({n} of 20 bytes)")
    version, ihl = buf[off] >> 4, (buf[off] & 0x0F) * 4
    if ihl < 20:
        raise RejectedRecord(MALFORMED, f"IPv4 header length {ihl} < 20")
    if version != 4:
        raise RejectedRecord(MALFORMED, f"IPv4 frame holds an IP version {version} header")
    if (buf[off + 6] & 0x1F) or buf[off + 7]:  # a fragment offset: not the first fragment
        return FRAGMENT
    if buf[off + 9] != 6:
        return NOT_TCP
    # The TCP header ends where the IP total length says (0: segmentation offload, all of it),
    # not where the frame does (Ethernet padding, a trailing FCS).
    total = buf[off + 2] << 8 | buf[off + 3]
    end = min(off + total, len(buf)) if total else len(buf)
    tcp = off + ihl
    if end - tcp < 14:
        raise RejectedRecord(TRUNCATED_PACKET, f"TCP header cut short ({max(end - tcp, 0)} bytes)")
    flags = buf[tcp + 13]
    if not flags & _TCP_SYN or flags & _TCP_ACK:
        return NOT_SYN
    return (
        int.from_bytes(buf[off + 12 : off + 16], "big"),
        int.from_bytes(buf[off + 16 : off + 20], "big"),
        buf[tcp + 2] << 8 | buf[tcp + 3],
    )


# --- capture framing -----------------------------------------------------------------------------


def _read_exact(stream: Any, n: int) -> bytes:
    data = stream.read(n)
    if len(data) == n or not data:
        return data
    chunks = [data]
    got = len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            break
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def iter_pcap(stream: Any) -> Iterator[tuple[int, int, int, bytes]]:
    """``(packet number, linktype, ts in microseconds, bytes)`` of a classic pcap stream."""
    header = _read_exact(stream, 24)
    if len(header) < 24 or header[:4] not in PCAP_MAGICS:
        raise InputError("not a pcap file (bad global header)")
    order, ns_per_unit = PCAP_MAGICS[header[:4]]
    # The top 6 bits say whether and how long a frame check sequence is, not which link this is.
    linktype = struct.unpack(order + "I", header[20:24])[0] & 0x03FFFFFF
    if linktype not in LINKTYPES:
        raise unsupported_linktype(linktype, "pcap")
    record = struct.Struct(order + "IIII")
    number, offset = 0, 24
    while True:
        head = _read_exact(stream, 16)
        if not head:
            return
        number += 1
        if len(head) < 16:
            raise TruncatedCapture(number - 1, offset, f"file ends inside the header of packet {number}")
        sec, frac, caplen, _ = record.unpack(head)
        if caplen > MAX_CAPLEN:
            raise TruncatedCapture(number - 1, offset, f"packet {number} claims {caplen:,} captured bytes")
        data = _read_exact(stream, caplen)
        if len(data) < caplen:
            raise TruncatedCapture(
                number - 1, offset, f"file ends inside packet {number} ({len(data)} of {caplen} bytes)"
            )
        offset += 16 + caplen
        us = sec * 1_000_000 + (frac if ns_per_unit == 1_000 else frac // 1_000)
        yield number, linktype, us, data


def _tsresol_to_us(units: int, tsresol: int, offset_s: int) -> int:
    if tsresol & 0x80:
        us = (units * 1_000_000) >> (tsresol & 0x7F)
    else:
        exp = tsresol & 0x7F
        us = units // 10 ** (exp - 6) if exp >= 6 else units * 10 ** (6 - exp)
    return us + offset_s * 1_000_000


def iter_pcapng(stream: Any) -> Iterator[tuple[int, int, int, bytes]]:
    """``(packet number, linktype, ts in microseconds, bytes)`` of a pcapng stream."""
    order = "<"
    interfaces: list[tuple[int, int, int, int]] = []  # (linktype, snaplen, tsresol, tsoffset)
    number, offset = 0, 0
    while True:
        head = _read_exact(stream, 8)
        if not head:
            return
        if len(head) < 8:
            raise TruncatedCapture(number, offset, "file ends inside a block header")
        if head[:4] == PCAPNG_MAGIC:
            bom = _read_exact(stream, 4)
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise InputError("not a pcapng file (bad section byte-order magic)")
            total = struct.unpack(order + "I", head[4:8])[0]
            if total < 28 or total % 4 or total > MAX_CAPLEN + 1024:  # 28: the smallest section header
                raise TruncatedCapture(number, offset, f"corrupt section header length {total}")
            body = bom + _read_exact(stream, total - 12)
            interfaces = []
        else:
            total = struct.unpack(order + "I", head[4:8])[0]
            if total < 12 or total % 4 or total > MAX_CAPLEN + 1024:
                raise TruncatedCapture(number, offset, f"corrupt block length {total} after packet {number}")
            body = _read_exact(stream, total - 8)
        if len(body) < total - 8:
            raise TruncatedCapture(number, offset, f"file ends inside a block after packet {number}")
        offset += total
        btype = struct.unpack(order + "I", head[:4])[0]
        content = body[:-4]
        if btype == 1:  # interface description
            linktype, _, snaplen = struct.unpack(order + "HHI", content[:8])
            tsresol, tsoffset = 6, 0
            pos = 8
            while pos + 4 <= len(content):
                code, length = struct.unpack(order + "HH", content[pos : pos + 4])
                value = content[pos + 4 : pos + 4 + length]
                if code == 0:
                    break
                if code == 9 and length >= 1:
                    tsresol = value[0]
                elif code == 14 and length >= 8:
                    tsoffset = struct.unpack(order + "q", value[:8])[0]
                pos += 4 + length + (-length % 4)
            interfaces.append((linktype, snaplen, tsresol, tsoffset))
        elif btype in (6, 2):  # enhanced packet / obsolete packet block
            number += 1
            if btype == 6:
                iface, hi, lo, caplen, _ = struct.unpack(order + "IIIII", content[:20])
            else:
                iface, _, hi, lo, caplen, _ = struct.unpack(order + "HHIIII", content[:20])
            if iface >= len(interfaces):
                raise InputError(f"packet {number} refers to undeclared interface {iface}")
            linktype, _, tsresol, tsoffset = interfaces[iface]
            if linktype not in LINKTYPES:
                raise unsupported_linktype(linktype, f"pcapng (interface {iface})")
            yield (
                number,
                linktype,
                _tsresol_to_us((hi << 32) | lo, tsresol, tsoffset),
                content[20 : 20 + caplen],
            )
        elif btype == 3:  # simple packet block: no timestamp
            number += 1
            yield number, interfaces[0][0] if interfaces else 0, -1, content[4:]


# --- readers --------------------------------------------------------------------------------------


def _read_capture(
    source: InputSource, kind: str, out: ProbeColumns, rejects: Rejects, filtered: Counter[str]
) -> tuple[int, TruncatedCapture | None]:
    frames = iter_pcap(source.stream) if kind == "pcap" else iter_pcapng(source.stream)
    packets = 0
    try:
        for number, linktype, ts, data in frames:
            packets += 1
            try:
                if ts < 0:
                    raise RejectedRecord(INVALID_TIMESTAMP, "simple packet block without a timestamp")
                got = decode_packet(linktype, data)
            except RejectedRecord as exc:
                rejects.add(source.name, number, exc.reason, exc.detail, data[:64].hex())
                continue
            if isinstance(got, str):
                filtered[got] += 1
                continue
            out.ts.append(ts)
            out.src.append(got[0])
            out.dst.append(got[1])
            out.dport.append(got[2])
    except TruncatedCapture as cut:
        return packets, cut
    except TruncatedInput:  # a compressed capture cut short is a capture cut short (--allow-truncated)
        detail = (
            f"the {source.compression} data ends before its end-of-stream marker, inside packet {packets + 1}"
        )
        return packets, TruncatedCapture(packets, getattr(source, "n_bytes", 0), detail)
    except (OSError, EOFError) as exc:
        raise InputError(f"{source.name}: corrupt {source.compression} stream ({exc})") from None
    source.drain()
    return packets, None


_ALL_FIELDS = (C.TS, C.SRC, C.DST, C.DPORT, "proto", "flags")


def _parse_ipv4(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(uint32 addresses, valid)`` from dotted quads or integers (strings or numbers)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if pa.types.is_integer(arr.type):
        vals = np.asarray(arr.fill_null(-1).cast(pa.int64()))
        ok = (vals >= 0) & (vals <= 0xFFFFFFFF)
        return np.where(ok, vals, 0).astype(np.uint32), ok
    text = pc.utf8_trim_whitespace(arr.cast(pa.string()))
    parts = pc.split_pattern(text, ".")
    lengths = np.asarray(pc.list_value_length(parts).fill_null(0))
    quad = lengths == 4
    out = np.zeros(n, dtype=np.uint32)
    ok = np.zeros(n, dtype=bool)
    if quad.any():
        flat = pc.list_flatten(parts.filter(pa.array(quad)))
        digits = np.asarray(pc.match_substring_regex(flat, r"^[0-9]{1,3}$").fill_null(False))
        octets = np.where(
            digits, np.asarray(pc.cast(pc.if_else(pa.array(digits), flat, "0"), pa.int64())), 999
        )
        octets = octets.reshape(-1, 4)
        good = (octets <= 255).all(axis=1)
        value = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
        where = np.flatnonzero(quad)
        out[where] = np.where(good, value, 0).astype(np.uint32)
        ok[where] = good
    # A bare integer is also an address (host order), as ZMap's saddr_raw columns are.
    plain = ~quad & np.asarray(pc.match_substring_regex(text, r"^[0-9]{1,10}$").fill_null(False))
    if plain.any():
        vals = np.asarray(pc.cast(text.filter(pa.array(plain)), pa.int64()))
        good = vals <= 0xFFFFFFFF
        out[np.flatnonzero(plain)] = np.where(good, vals, 0).astype(np.uint32)
        ok[np.flatnonzero(plain)] = good
    return out, ok & np.asarray(pc.is_valid(arr))


def _parse_int(column: Any, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_integer(arr.type):
        vals = np.asarray(arr.cast(pa.int64()).fill_null(lo - 1))
    else:
        text = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        digits = np.asarray(pc.match_substring_regex(text, r"^[0-9]{1,6}$").fill_null(False))
        vals = np.full(len(arr), lo - 1, dtype=np.int64)
        if digits.any():
            vals[digits] = np.asarray(pc.cast(text.filter(pa.array(digits)), pa.int64()))
    ok = (vals >= lo) & (vals <= hi)
    return vals, ok


def _parse_ts(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the epoch from epoch seconds (numbers or numeric strings), Arrow
    timestamps or ISO-8601 strings (naive ones are UTC)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if pa.types.is_timestamp(arr.type):
        vals = np.asarray(arr.cast(pa.timestamp("us", tz=arr.type.tz)).cast(pa.int64()).fill_null(-1))
        return vals, np.asarray(pc.is_valid(arr))
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        secs = np.array(arr.cast(pa.float64()).fill_null(np.nan))
    else:
        import pandas as pd

        text = pd.Series(arr.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
        secs = pd.to_numeric(text, errors="coerce").to_numpy(np.float64, copy=True)
        iso = np.isnan(secs) & text.notna().to_numpy()
        if iso.any():
            parsed = pd.to_datetime(text[iso], errors="coerce", utc=True, format="ISO8601")
            us = parsed.astype("datetime64[us, UTC]").astype("int64").to_numpy()
            good = parsed.notna().to_numpy()
            secs[np.flatnonzero(iso)[good]] = us[good] / 1e6
    ok = np.isfinite(secs) & (secs >= 0) & (secs < 2**33)
    vals = np.zeros(n, dtype=np.int64)
    vals[ok] = np.rint(secs[ok] * 1e6).astype(np.int64)
    return vals, ok


def _syn_only(flags: Any) -> np.ndarray:
    """True where the optional ``flags`` column says SYN without ACK (null: a probe)."""
    arr = flags.combine_chunks() if isinstance(flags, pa.ChunkedArray) else flags
    if pa.types.is_integer(arr.type):
        bits = np.asarray(arr.cast(pa.int64()).fill_null(_TCP_SYN))
        return ((bits & _TCP_SYN) != 0) & ((bits & _TCP_ACK) == 0)
    text = pc.utf8_upper(pc.utf8_trim_whitespace(arr.cast(pa.string()))).fill_null("S")
    values = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
    out = np.zeros(len(values), dtype=bool)
    for flag in np.unique(values):
        if flag.startswith("0X") or flag.isdigit():
            try:
                bits = int(flag, 0)
            except ValueError:
                continue
            syn = bool(bits & _TCP_SYN) and not bits & _TCP_ACK
        else:
            syn = "S" in flag and "A" not in flag and "." not in flag
        out[values == flag] = syn
    return out


def _tcp_only(proto: Any) -> np.ndarray:
    arr = proto.combine_chunks() if isinstance(proto, pa.ChunkedArray) else proto
    if pa.types.is_integer(arr.type):
        return np.asarray(arr.cast(pa.int64()).fill_null(6)) == 6
    text = pc.utf8_lower(pc.utf8_trim_whitespace(arr.cast(pa.string()))).fill_null("tcp")
    return np.asarray(pc.is_in(text, pa.array(["tcp", "6"])))


def _records_table(
    source: InputSource,
    table: pa.Table,
    line_of: np.ndarray,
    out: list[pa.Table],
    rejects: Rejects,
    filtered: Counter[str],
) -> None:
    """Validate flow records column by column, keeping SYN-only TCP probes."""
    missing = [c for c in (C.TS, C.SRC, C.DST, C.DPORT) if c not in table.column_names]
    if missing:
        raise InputError(
            f"{source.name}: flow records need columns ts, src, dst, dport (optional proto, flags); "
            f"missing {', '.join(missing)}"
        )
    n = table.num_rows
    ts, ts_ok = _parse_ts(table[C.TS])
    src, src_ok = _parse_ipv4(table[C.SRC])
    dst, dst_ok = _parse_ipv4(table[C.DST])
    dport, port_ok = _parse_int(table[C.DPORT], 0, 65_535)
    present = np.ones(n, dtype=bool)
    for name in (C.TS, C.SRC, C.DST, C.DPORT):
        present &= np.asarray(pc.is_valid(table[name]))
        if not pa.types.is_integer(table[name].type) and pa.types.is_string(table[name].type):
            present &= np.asarray(pc.not_equal(pc.utf8_trim_whitespace(table[name]), "").fill_null(False))
    reason = np.full(n, "", dtype=object)
    # Later assignments win: a missing field is reported as missing, not as invalid.
    checks = (
        (~ts_ok, INVALID_TIMESTAMP),
        (~port_ok, INVALID_PORT),
        (~dst_ok, INVALID_IP),
        (~src_ok, INVALID_IP),
        (~present, MISSING_FIELD),
    )
    for mask, why in checks:
        reason[mask] = why
    bad = np.flatnonzero(reason != "")
    if bad.size:
        excerpt = table.take(pa.array(bad)).to_pylist()
        for i, row in zip(bad.tolist(), excerpt, strict=True):
            rejects.add(
                source.name, int(line_of[i]), str(reason[i]), f"{reason[i].replace('_', ' ')}", str(row)
            )
    keep = reason == ""
    if "proto" in table.column_names:
        tcp = _tcp_only(table["proto"])
        filtered[NOT_TCP] += int((keep & ~tcp).sum())
        keep &= tcp
    if "flags" in table.column_names:
        syn = _syn_only(table["flags"])
        filtered[NOT_SYN] += int((keep & ~syn).sum())
        keep &= syn
    out.append(
        pa.Table.from_arrays(
            [
                pa.array(ts[keep]),
                pa.array(src[keep]),
                pa.array(dst[keep]),
                pa.array(dport[keep].astype(np.uint16)),
            ],
            schema=C.PROBES_SCHEMA,
        )
    )


#: What a screened-out line of a flow CSV is replaced by: one field where the header has at least
#: four, so the reader hands it to its invalid-row handler, which skips it without a second reject.
_SCREENED = b"gpsgpu:screened-out"


def _screen_lines(name: str, data: bytes, rejects: Rejects) -> tuple[bytes, int]:
    """Screen out, each as one reject, the lines of a flow CSV that the CSV reader must not see: one
    over :data:`MAX_RECORD_BYTES`, one that is not UTF-8, one with an odd number of ``"`` (its quote
    would never close and swallow the lines after it). They keep their place (as ``_SCREENED``), so
    the line numbers of the others stay right. Returns the data and how many lines were screened."""
    plain = data.isascii() and b'"' not in data
    if plain and not long_line_spans(data, MAX_RECORD_BYTES):
        return data, 0
    lines = data.split(b"\n")
    header = lines[0]
    try:
        header.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name}: the header line is not UTF-8: {printable(header)}") from None
    if len(header) > MAX_RECORD_BYTES:
        raise InputError(f"{name}: the header line is {len(header):,} bytes long: {printable(header)}")
    n_blanked = 0
    for index in range(1, len(lines)):
        line = lines[index]
        if len(line) > MAX_RECORD_BYTES:
            reason, detail = (
                RECORD_TOO_LONG,
                f"line of {len(line):,} bytes > the limit of {MAX_RECORD_BYTES:,}",
            )
        elif line.count(b'"') % 2:
            reason, detail = UNBALANCED_QUOTE, "a quoted field opened on this line never closes"
        elif line.isascii():
            continue
        else:
            try:
                line.decode("utf-8")
                continue
            except UnicodeDecodeError as exc:
                reason, detail = NON_UTF8, f"not UTF-8 at byte {exc.start}"
        rejects.add(name, index + 1, reason, detail, line[:RECORD_EXCERPT_BYTES])
        lines[index] = _SCREENED
        n_blanked += 1
    return (b"\n".join(lines) if n_blanked else data), n_blanked


def _read_csv(source: InputSource, out: list[pa.Table], rejects: Rejects, filtered: Counter[str]) -> int:
    import pyarrow.csv as pa_csv

    data, n_blanked = _screen_lines(source.name, read_all(source), rejects)
    bad_lines: list[int] = []
    blank_lines: list[int] = []

    def on_invalid(row: Any) -> str:
        if row.text == _SCREENED.decode() or not (row.text or "").strip():
            blank_lines.append(int(row.number or 0))
        else:
            bad_lines.append(int(row.number or 0))
            rejects.add(
                source.name,
                int(row.number or 0),
                MALFORMED,
                f"{row.actual_columns} fields where the header has {row.expected_columns}",
                row.text,
            )
        return "skip"

    try:
        table = pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=1 << 26),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in _ALL_FIELDS}, strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        # the reader's message quotes the input: escaped and cut, never raw bytes on a terminal
        raise InputError(
            f"{source.name}: not readable as CSV flow records ({printable(str(exc), 160)})"
        ) from None
    skipped = np.asarray(sorted(bad_lines + blank_lines), dtype=np.int64)
    lines = np.arange(2, 2 + table.num_rows + skipped.size, dtype=np.int64)
    line_of = lines[~np.isin(lines, skipped)]
    _records_table(source, table, line_of, out, rejects, filtered)
    return table.num_rows + len(bad_lines) + n_blanked


def _read_parquet(source: InputSource, out: list[pa.Table], rejects: Rejects, filtered: Counter[str]) -> int:
    data = read_all(source)
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(
            f"{source.name}: not a readable Parquet table ({printable(str(exc), 160)})"
        ) from None
    _records_table(source, table, np.arange(1, table.num_rows + 1), out, rejects, filtered)
    return table.num_rows


def detect_kind(head: bytes) -> str:
    """``pcap``, ``pcapng``, ``parquet`` or ``csv`` from a (decompressed) file's first bytes."""
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng"
    if head[:4] == PARQUET_MAGIC:
        return "parquet"
    return "csv"


def read_probes(paths: list[str], *, allow_truncated: bool = False) -> ProbesRead:
    """Read captures and flow records (any mix; ``-`` is stdin) into one probes table.

    Raises
    ------
    InputError
        A capture ends inside a packet (unless ``allow_truncated``: then the packets before it are
        kept and the cut is a ``truncated_file`` reject), a file is unreadable or of an unknown link
        type, or flow records lack a required column.
    """
    rejects, filtered = Rejects(), Counter()
    tables: list[pa.Table] = []
    described: list[dict[str, Any]] = []
    truncated: list[str] = []
    records = 0
    for path in paths:
        with open_input(path) as source:
            head = source.stream.peek(4)[:4] if hasattr(source.stream, "peek") else b""
            if not head:
                head = source.stream.read(4)
                source = _Prepended(source, head)  # type: ignore[assignment]
            kind = detect_kind(head)
            if kind in ("pcap", "pcapng"):
                cols = ProbeColumns()
                try:
                    packets, cut = _read_capture(source, kind, cols, rejects, filtered)
                except InputError as exc:  # named here unless the reader named the file already
                    said = str(exc)
                    raise InputError(
                        said if said.startswith(f"{source.name}: ") else f"{source.name}: {said}"
                    ) from None
                records += packets
                if cut is not None:
                    if not allow_truncated:
                        raise InputError(
                            f"{source.name}: truncated {kind}: {cut.detail} (byte {cut.offset:,}); "
                            f"{cut.packets:,} packets read before it; pass --allow-truncated to keep them"
                        )
                    records += 1
                    rejects.add(source.name, cut.packets + 1, TRUNCATED_FILE, cut.detail, None)
                    truncated.append(source.name)
                tables.append(cols.table())
            elif kind == "parquet":
                records += _read_parquet(source, tables, rejects, filtered)
            else:
                records += _read_csv(source, tables, rejects, filtered)
            info = source.describe()
            info["format"] = kind
            described.append(info)
    table = pa.concat_tables(tables) if tables else C.PROBES_SCHEMA.empty_table()
    return ProbesRead(table, rejects, records, filtered, described, truncated)


class _Prepended:
    """An input source whose stream cannot peek: its first bytes, read already, are put back."""

    def __init__(self, source: InputSource, head: bytes) -> None:
        self._source = source
        self.stream = io.BufferedReader(_Concat(head, source.stream))  # type: ignore[arg-type]
        self.name = source.name
        self.compression = source.compression

    def drain(self) -> None:
        self._source.drain()

    def describe(self) -> dict[str, Any]:
        return self._source.describe()

    def __enter__(self) -> _Prepended:
        return self

    def __exit__(self, *exc: object) -> None:
        self._source.close()


class _Concat(io.RawIOBase):
    def __init__(self, head: bytes, rest: Any) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# --- probes Parquet (one file, or a folder of them) ---------------------------------------------


def probe_files(path: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files of a probes input: a file, a folder of ``*.parquet`` files, or a
    ``gpsgpu portdist simulate`` folder (its ``probes/``)."""
    path = Path(path)
    if path.is_dir():
        folder = path / "probes" if (path / "probes").is_dir() else path
        files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: no probes Parquet files in this folder")
        return files
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return [path]


def probe_days(files: list[Path]) -> list[int]:
    """UTC days (since the epoch) present in the probes files (reads the ``ts`` column only)."""
    days: set[int] = set()
    for f in files:
        ts = read_table(f, columns=[C.TS])[C.TS]
        if len(ts):
            days.update(np.unique(np.asarray(ts.combine_chunks()) // C.DAY_US).tolist())
    return sorted(days)


def read_probes_days(
    files: list[Path], first_day: int, last_day: int, *, columns: list[str] | None = None
) -> pa.Table:
    """The probes with ``first_day <= ts // DAY_US <= last_day`` from all ``files`` (filtered on
    read, so one day of a year-long capture set is all that is held)."""
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset([str(f) for f in files], format="parquet")
        expr = (ds.field(C.TS) >= first_day * C.DAY_US) & (ds.field(C.TS) < (last_day + 1) * C.DAY_US)
        table = dataset.to_table(filter=expr, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"probes: not readable Parquet ({printable(str(exc), 160)})") from None
    missing = [
        c
        for c in (C.TS, C.SRC, C.DST, C.DPORT)
        if c not in table.column_names and (columns is None or c in columns)
    ]
    if missing:
        raise InputError(
            f"probes: missing columns {', '.join(missing)} (write them with 'gpsgpu portdist ingest')"
        )
    want = [f for f in C.LABELLED_PROBES_SCHEMA if f.name in table.column_names]
    return table.select([f.name for f in want]).cast(pa.schema(want))


def write_probes(
    table: pa.Table, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write a probes table (sorted by time) as Parquet, atomically, ``metadata`` in its footer."""
    from gpsgpu.io.parquet import write_table

    if table.num_rows:
        table = table.take(pc.sort_indices(table, sort_keys=[(C.TS, "ascending")]))
    return write_table(table, path, metadata=metadata)

"""Address space that must never be scanned: the IANA special-purpose ranges plus the user's own.

A :class:`Blocklist` is a sorted set of disjoint, inclusive ``[start, end]`` uint32 intervals.
Membership is a vectorized binary search (``searchsorted``), so the same code answers for a NumPy
or a CuPy array of addresses. Every command that emits targets (plans, allowlists, predictions)
removes blocklisted space with it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpsgpu.backend import to_numpy, xp_of

#: The IANA IPv4 special-purpose registry (RFC 6890 and successors) plus multicast and the limited
#: broadcast address: the same space ZMap's shipped ``conf/blocklist.conf`` excludes.
IANA_SPECIAL_PURPOSE: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "RFC 791: this network"),
    ("10.0.0.0/8", "RFC 1918: private use"),
    ("100.64.0.0/10", "RFC 6598: shared address space"),
    ("127.0.0.0/8", "RFC 1122: loopback"),
    ("169.254.0.0/16", "RFC 3927: link local"),
    ("172.16.0.0/12", "RFC 1918: private use"),
    ("192.0.0.0/24", "RFC 6890: IETF protocol assignments"),
    ("192.0.2.0/24", "RFC 5737: documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "RFC 3068: 6to4 relay anycast"),
    ("192.168.0.0/16", "RFC 1918: private use"),
    ("198.18.0.0/15", "RFC 2544: benchmarking"),
    ("198.51.100.0/24", "RFC 5737: documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "RFC 5737: documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "RFC 5771: multicast"),
    ("240.0.0.0/4", "RFC 1112: reserved"),
    ("255.255.255.255/32", "RFC 919: limited broadcast"),
)


class BlocklistSyntaxError(ValueError):
    """A line of a blocklist file that is neither a comment, an IPv4 address nor an IPv4 CIDR."""

    def __init__(self, line_number: int, text: str, why: str) -> None:
        super().__init__(f"line {line_number}: {text!r}: {why}")
        self.line_number = line_number


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort intervals and merge overlapping or adjacent ones."""
    if starts.size == 0:
        return starts.astype(np.uint32), ends.astype(np.uint32)
    order = np.lexsort((ends, starts))
    starts, ends = starts[order].astype(np.int64), ends[order].astype(np.int64)
    # An interval starts a new run when it begins after every earlier interval has ended (+1: adjacent).
    running_end = np.maximum.accumulate(ends)
    new_run = np.ones(starts.size, dtype=bool)
    new_run[1:] = starts[1:] > running_end[:-1] + 1
    run_id = np.cumsum(new_run) - 1
    merged_starts = starts[new_run]
    merged_ends = np.zeros(merged_starts.size, dtype=np.int64)
    np.maximum.at(merged_ends, run_id, ends)
    return merged_starts.astype(np.uint32), merged_ends.astype(np.uint32)


@dataclass(frozen=True)
class Blocklist:
    """Disjoint inclusive uint32 intervals, sorted by start."""

    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))
    ends: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))
    #: IPv6 entries seen (and ignored: the engine is IPv4) while parsing, for the user to be told.
    n_ipv6_skipped: int = 0

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> Blocklist:
        return cls()

    @classmethod
    def default(cls) -> Blocklist:
        """The built-in IANA special-purpose blocklist."""
        return cls.from_cidrs(cidr for cidr, _ in IANA_SPECIAL_PURPOSE)

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> Blocklist:
        """From strings like ``10.0.0.0/8`` or ``192.0.2.1``; host bits set are an error."""
        starts: list[int] = []
        ends: list[int] = []
        for text in cidrs:
            net = ipaddress.IPv4Network(text.strip(), strict=True)
            starts.append(int(net.network_address))
            ends.append(int(net.broadcast_address))
        return cls._from_intervals(np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64))

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Blocklist:
        """Parse ZMap's blocklist format: one IPv4 address or CIDR per line, ``#`` starts a comment.

        IPv6 entries are skipped and counted (ZMap itself errors on them); anything else that is not
        an address raises :class:`BlocklistSyntaxError` with the line number.
        """
        starts: list[int] = []
        ends: list[int] = []
        n_ipv6 = 0
        for number, raw in enumerate(lines, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError as exc:
                raise BlocklistSyntaxError(number, text, str(exc)) from None
            if net.version == 6:
                n_ipv6 += 1
                continue
            starts.append(int(net.network_address))
            ends.append(int(net.broadcast_address))
        merged = cls._from_intervals(np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64))
        return cls(merged.starts, merged.ends, n_ipv6)

    @classmethod
    def from_addresses(cls, ips: Any) -> Blocklist:
        """Single addresses (uint32, any order, repeats allowed), merged into ranges."""
        ips = np.asarray(to_numpy(ips), dtype=np.int64)
        return cls._from_intervals(ips, ips)

    @classmethod
    def _from_intervals(cls, starts: np.ndarray, ends: np.ndarray) -> Blocklist:
        merged_starts, merged_ends = _merge(starts, ends)
        return cls(merged_starts, merged_ends)

    def union(self, other: Blocklist) -> Blocklist:
        merged_starts, merged_ends = _merge(
            np.concatenate([self.starts, other.starts]), np.concatenate([self.ends, other.ends])
        )
        return Blocklist(merged_starts, merged_ends, self.n_ipv6_skipped + other.n_ipv6_skipped)

    # --- queries --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.starts.size)

    @property
    def n_addresses(self) -> int:
        return int((self.ends.astype(np.int64) - self.starts.astype(np.int64) + 1).sum())

    def contains(self, ips: Any) -> Any:
        """Boolean mask: which of ``ips`` (uint32, NumPy or CuPy) fall in a blocklisted interval."""
        xp = xp_of(ips)
        ips = xp.asarray(ips, dtype=xp.uint32)
        if self.starts.size == 0:
            return xp.zeros(ips.shape, dtype=bool)
        starts, ends = xp.asarray(self.starts), xp.asarray(self.ends)
        slot = xp.searchsorted(starts, ips, side="right").astype(xp.int64) - 1
        return (slot >= 0) & (ips <= ends[xp.maximum(slot, 0)])

    def overlaps(self, network: int, length: int) -> bool:
        """Whether any address of ``network/length`` is blocklisted."""
        first, last = _bounds(network, length)
        slot = int(np.searchsorted(self.starts, np.uint32(last), side="right")) - 1
        return slot >= 0 and int(self.ends[slot]) >= first

    def covers(self, network: int, length: int) -> bool:
        """Whether every address of ``network/length`` is blocklisted."""
        first, last = _bounds(network, length)
        slot = int(np.searchsorted(self.starts, np.uint32(first), side="right")) - 1
        return slot >= 0 and int(self.ends[slot]) >= last

    def allowed_cidrs(self, network: int, length: int) -> list[str]:
        """The CIDRs that make up ``network/length`` minus blocklisted space (smallest exact cover)."""
        first, last = _bounds(network, length)
        if not self.overlaps(network, length):
            return [f"{ipaddress.IPv4Address(first)}/{length}"]
        lo = int(np.searchsorted(self.ends, np.uint32(first), side="left"))
        hi = int(np.searchsorted(self.starts, np.uint32(last), side="right"))
        cursor = first
        allowed: list[str] = []
        for start, end in zip(self.starts[lo:hi].tolist(), self.ends[lo:hi].tolist(), strict=True):
            if start > cursor:
                allowed += _range_to_cidrs(cursor, min(start - 1, last))
            cursor = max(cursor, end + 1)
            if cursor > last:
                break
        if cursor <= last:
            allowed += _range_to_cidrs(cursor, last)
        return allowed

    def cut_ranges(self, first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ranges ``[first[i], last[i]]`` minus blocklisted space, as CIDR blocks (vectorized).

        Returns ``(range, network, length)``: for every block, the index of the range it comes from
        (ascending, blocks of one range in address order), its first address (uint32) and its prefix
        length (uint8); the smallest exact cover, as :meth:`allowed_cidrs` gives one network.
        """
        first = np.asarray(first, np.int64)
        last = np.asarray(last, np.int64)
        starts, ends = self.starts.astype(np.int64), self.ends.astype(np.int64)
        if starts.size == 0:  # one sentinel interval past every address keeps the indexing simple
            starts, ends = np.array([1 << 33], np.int64), np.array([1 << 33], np.int64)
        # The blocklisted intervals inside each range: from the first ending at or after its first
        # address to the last starting at or before its last one; the gaps between them are allowed.
        lo = np.searchsorted(ends, first, side="left")
        hi = np.searchsorted(starts, last, side="right")
        n_gaps = np.maximum(hi - lo, 0) + 1
        source = np.repeat(np.arange(first.size), n_gaps)
        j = np.arange(source.size) - np.repeat(np.cumsum(n_gaps) - n_gaps, n_gaps)  # gap within range
        at = lo[source] + j  # the interval after the gap
        gap_first = np.where(j == 0, first[source], ends[np.maximum(at - 1, 0)] + 1)
        last_gap = j == n_gaps[source] - 1
        gap_last = np.where(last_gap, last[source], starts[np.minimum(at, starts.size - 1)] - 1)
        gap_first = np.maximum(gap_first, first[source])
        gap_last = np.minimum(gap_last, last[source])
        keep = gap_first <= gap_last
        source, lo_addr, hi_addr = source[keep], gap_first[keep], gap_last[keep]
        # Each gap as CIDR blocks: repeatedly take the largest aligned block that fits.
        out_source, out_first, out_length = [], [], []
        while source.size:
            size = hi_addr - lo_addr + 1
            align = np.where(lo_addr == 0, np.int64(1) << 32, lo_addr & -lo_addr)
            fit = np.int64(1) << np.floor(np.log2(size.astype(np.float64))).astype(np.int64)
            fit = np.where(fit > size, fit >> 1, fit)  # guard the float log
            block = np.minimum(align, fit)
            out_source.append(source)
            out_first.append(lo_addr)
            out_length.append(32 - np.log2(block.astype(np.float64)).round().astype(np.int64))
            lo_addr = lo_addr + block
            more = lo_addr <= hi_addr
            source, lo_addr, hi_addr = source[more], lo_addr[more], hi_addr[more]
        if not out_source:
            return np.zeros(0, np.int64), np.zeros(0, np.uint32), np.zeros(0, np.uint8)
        src = np.concatenate(out_source)
        net = np.concatenate(out_first)
        order = np.lexsort((net, src))
        length = np.concatenate(out_length)
        return src[order], net[order].astype(np.uint32), length[order].astype(np.uint8)

    def to_lines(self) -> list[str]:
        """The blocklist in ZMap's format (one CIDR per line), for ``zmap -b``."""
        lines: list[str] = []
        for start, end in zip(self.starts.tolist(), self.ends.tolist(), strict=True):
            lines += _range_to_cidrs(start, end)
        return lines


def _bounds(network: int, length: int) -> tuple[int, int]:
    if not 0 <= length <= 32:
        raise ValueError(f"prefix length must be 0..32, not {length}")
    size = 1 << (32 - length)
    first = int(network) & ~(size - 1) & 0xFFFFFFFF
    return first, first + size - 1


def _range_to_cidrs(first: int, last: int) -> list[str]:
    return [
        str(net)
        for net in ipaddress.summarize_address_range(
            ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
        )
    ]

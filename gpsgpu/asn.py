"""IP -> ASN by longest-prefix match over a routing table (pyasn's ``prefix<TAB>asn`` data).

The table is kept as one sorted array of network addresses per prefix length; a lookup walks the
lengths from longest to shortest with a vectorized binary search, so it runs on NumPy or CuPy
arrays alike and costs O(n log m) per length present (at most 25 in real tables).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpsgpu.backend import xp_of


class AsnSyntaxError(ValueError):
    def __init__(self, line_number: int, text: str, why: str) -> None:
        super().__init__(f"line {line_number}: {text[:80]!r}: {why}")


@dataclass(frozen=True)
class AsnTable:
    """Per prefix length (descending): sorted network addresses and their AS numbers."""

    lengths: tuple[int, ...]
    networks: tuple[np.ndarray, ...]
    asns: tuple[np.ndarray, ...]

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> AsnTable:
        """Parse pyasn's IPASN format: ``a.b.c.d/len<TAB>asn`` lines, ``;`` or ``#`` comments.

        A multi-origin entry (``123_456`` or ``{123,456}``) keeps its first AS number; IPv6 lines are
        skipped. For a prefix listed twice, the later line wins.
        """
        by_length: dict[int, dict[int, int]] = {}
        for number, raw in enumerate(lines, start=1):
            text = raw.strip()
            if not text or text[0] in ";#":
                continue
            parts = text.split()
            if len(parts) < 2:
                raise AsnSyntaxError(number, text, "expected 'prefix<TAB>asn'")
            prefix, origin = parts[0], parts[1]
            if ":" in prefix:
                continue
            address, _, length_text = prefix.partition("/")
            try:
                octets = [int(o) for o in address.split(".")]
                length = int(length_text) if length_text else 32
                if len(octets) != 4 or not all(0 <= o <= 255 for o in octets) or not 0 <= length <= 32:
                    raise ValueError
            except ValueError:
                raise AsnSyntaxError(number, text, "not an IPv4 prefix") from None
            digits = origin.strip("{}").replace("_", ",").split(",")[0]
            if not digits.isdigit() or int(digits) > 0xFFFFFFFF:
                raise AsnSyntaxError(number, text, "not an AS number")
            network = (octets[0] << 24 | octets[1] << 16 | octets[2] << 8 | octets[3]) & _mask(length)
            by_length.setdefault(length, {})[network] = int(digits)
        lengths = tuple(sorted(by_length, reverse=True))
        networks, asns = [], []
        for length in lengths:
            entries = sorted(by_length[length].items())
            networks.append(np.array([n for n, _ in entries], dtype=np.uint32))
            asns.append(np.array([a for _, a in entries], dtype=np.uint32))
        return cls(lengths, tuple(networks), tuple(asns))

    def __len__(self) -> int:
        return sum(int(n.size) for n in self.networks)

    def lookup(self, ips: Any) -> Any:
        """AS numbers of ``ips`` (uint32, NumPy or CuPy); 0 where no prefix matches."""
        xp = xp_of(ips)
        ips = xp.asarray(ips, dtype=xp.uint32)
        result = xp.zeros(ips.shape, dtype=xp.uint32)
        unresolved = xp.ones(ips.shape, dtype=bool)
        for length, networks, asns in zip(self.lengths, self.networks, self.asns, strict=True):
            nets, origin = xp.asarray(networks), xp.asarray(asns)
            masked = ips & xp.uint32(_mask(length))
            slot = xp.minimum(xp.searchsorted(nets, masked), nets.size - 1)
            hit = unresolved & (nets[slot] == masked)
            result = xp.where(hit, origin[slot], result)
            unresolved &= ~hit
        return result


def _mask(length: int) -> int:
    return (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF if length else 0

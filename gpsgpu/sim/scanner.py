"""A simulated scanner over a :class:`~gpsgpu.sim.internet.SimInternet`, counting every probe.

- :meth:`SimScanner.seed_scan`: all 65,536 ports of a random sample of addresses (the seed, as the
  LZR 1% scan GPS learned from);
- :meth:`SimScanner.scan`: an exhaustive scan of each ``(port, prefix)`` plan row (a ZMap run per
  port over the row's prefixes);
- :meth:`SimScanner.probe`: an ``ip:port`` list (LZR over predictions): which are real services.

Blocklisted addresses are never probed: they are removed before counting, and a row or target that
lies in blocklisted space costs nothing and finds nothing. ``n_probes`` is the running total.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpsgpu import schema
from gpsgpu.backend import to_numpy
from gpsgpu.blocklist import Blocklist
from gpsgpu.sim.internet import ServiceArrays, SimInternet

#: Probes of one address on every port.
ALL_PORTS = 65536


def blocked_in_ranges(blocklist: Blocklist, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Blocklisted addresses inside each inclusive range ``[first, last]`` (int64 arrays, host)."""
    first = np.asarray(first, dtype=np.int64)
    last = np.asarray(last, dtype=np.int64)
    if len(blocklist) == 0 or first.size == 0:
        return np.zeros(first.size, dtype=np.int64)
    starts = blocklist.starts.astype(np.int64)
    ends = blocklist.ends.astype(np.int64)
    sizes = ends - starts + 1
    before = np.concatenate(([0], np.cumsum(sizes)))  # blocked addresses in intervals < i

    def blocked_below(x: np.ndarray) -> np.ndarray:
        """Blocklisted addresses < x."""
        i = np.searchsorted(starts, x, side="left")  # intervals starting before x: 0..i-1
        partial = np.where(
            i > 0, np.minimum(ends[np.maximum(i - 1, 0)], x - 1) - starts[np.maximum(i - 1, 0)] + 1, 0
        )
        full = before[np.maximum(i - 1, 0)]
        return np.where(i > 0, full + partial, 0)

    return blocked_below(last + 1) - blocked_below(first)


class SimScanner:
    """Scans and probes a simulated Internet, counting probes.

    Parameters
    ----------
    internet : SimInternet
    blocklist : Blocklist, optional
        Space never probed (default: the built-in IANA blocklist).
    truth : ServiceArrays, optional
        The internet's ground truth, when already generated: answers come from it instead of being
        generated again (the answers are the same).
    """

    def __init__(
        self, internet: SimInternet, blocklist: Blocklist | None = None, truth: ServiceArrays | None = None
    ) -> None:
        self.internet = internet
        self.xp = internet.xp
        self.blocklist = Blocklist.default() if blocklist is None else blocklist
        self.truth = truth
        self._truth_keys = truth.keys(self.xp) if truth is not None else None
        self.n_probes = 0
        self.n_refused = 0

    # --- the seed -----------------------------------------------------------------------------------

    def seed_scan(self, fraction: float) -> tuple[ServiceArrays, int]:
        """Every service of a ``fraction`` sample of the universe's addresses, all ports.

        Returns the services and the number of sampled (probed) addresses; probes are counted as
        ``65,536`` per sampled address.
        """
        xp = self.xp
        parts = []
        n_sampled = 0
        for ips in self.internet.iter_universe():
            sample = ips[self.internet.seed_mask(ips, fraction)]
            sample = sample[~self.blocklist.contains(sample)]
            n_sampled += int(sample.shape[0])
            parts.append(self.internet.services_of(sample))
        self.n_probes += n_sampled * ALL_PORTS
        return ServiceArrays.concat(xp, parts), n_sampled

    # --- plan rows ------------------------------------------------------------------------------------

    def row_probes(self, networks: np.ndarray, length: int) -> np.ndarray:
        """Probes each ``network/length`` row costs: its addresses minus blocklisted ones (int64)."""
        networks = np.asarray(networks, dtype=np.int64)
        size = 1 << (32 - length)
        first = networks & ~(size - 1)
        return size - blocked_in_ranges(self.blocklist, first, first + size - 1)

    def skipping(self, ips: Any) -> SimScanner:
        """This scanner with the addresses ``ips`` blocklisted too (same truth, its own probe count)."""
        return SimScanner(self.internet, self.blocklist.union(Blocklist.from_addresses(ips)), self.truth)

    def scan(self, ports: Any, networks: Any, length: int) -> ServiceArrays:
        """What exhaustive scans of the rows ``(ports[i], networks[i]/length)`` find (and count them).

        Parameters
        ----------
        ports : uint16 array-like (host)
        networks : uint32 array-like (host); host bits are ignored
        length : int
            Prefix length of every row (GPS's ``Step_Size``).
        """
        xp = self.xp
        ports = np.asarray(ports, dtype=np.int64)
        networks = np.asarray(networks, dtype=np.int64) & np.int64(~((1 << (32 - length)) - 1) & 0xFFFFFFFF)
        self.n_probes += int(self.row_probes(networks, length).sum())
        if ports.size == 0:
            return self.internet.services_of(xp.zeros(0, dtype=xp.uint32))
        row_keys = np.unique((networks << 16) | ports)
        found = self._services_in(np.unique(networks), length)
        key = (schema.prefix_of(found.ip, length).astype(xp.int64) << xp.int64(16)) | found.port.astype(
            xp.int64
        )
        hit = _isin_sorted(xp, key, xp.asarray(row_keys))
        hit &= ~self.blocklist.contains(found.ip)
        return found.take(xp.flatnonzero(hit))

    def _services_in(self, networks: np.ndarray, length: int) -> ServiceArrays:
        """Every service in the given prefixes (host int64 networks, one length)."""
        xp = self.xp
        if self.truth is not None:
            prefix = schema.prefix_of(self.truth.ip, length).astype(xp.int64)
            return self.truth.take(xp.flatnonzero(_isin_sorted(xp, prefix, xp.asarray(networks))))
        # Generate only the universe /16s the rows touch (a /16 at a time bounds memory).
        parts = []
        if length >= 16:
            by16 = np.unique(networks >> 16)
            for p16 in by16.tolist():
                if self.internet.slot16[p16] < 0:
                    continue
                inside = networks[(networks >> 16) == p16]
                ips = self.internet.addresses(p16 << 16, 16)
                keep = _isin_sorted(xp, schema.prefix_of(ips, length).astype(xp.int64), xp.asarray(inside))
                parts.append(self.internet.services_of(ips[keep]))
        else:
            universe = np.sort(self.internet.prefix16) << 16
            wanted = _isin_sorted(np, (universe & ~((1 << (32 - length)) - 1)), np.sort(networks))
            parts += [
                self.internet.services_of(self.internet.addresses(net, 16))
                for net in universe[wanted].tolist()
            ]
        if not parts:
            return self.internet.services_of(xp.zeros(0, dtype=xp.uint32))
        return ServiceArrays.concat(xp, parts)

    # --- ip:port lists ----------------------------------------------------------------------------------

    def probe(self, ips: Any, ports: Any) -> Any:
        """Which targets ``(ips[i], ports[i])`` are real services (bool array on the backend).

        Blocklisted targets are not probed (not counted, answer ``False``); every other target costs
        one probe, duplicates included (deduplicate first if they should not).
        """
        xp = self.xp
        ips = xp.asarray(ips, dtype=xp.uint32)
        ports = xp.asarray(ports, dtype=xp.uint16)
        refused = self.blocklist.contains(ips)
        n_refused = int(refused.sum())
        self.n_refused += n_refused
        self.n_probes += int(ips.shape[0]) - n_refused
        key = schema.pack_service(ips, ports)
        if self._truth_keys is not None:
            real = _isin_sorted(xp, key, self._truth_keys)
        else:
            hosts = xp.unique(ips[~refused])
            services = self.internet.services_of(hosts)
            real = _isin_sorted(xp, key, services.keys(xp))
        return real & ~refused

    def scan_frame(self, arrays: ServiceArrays) -> Any:
        """Found services as a services frame (reference input schema, banners rendered)."""
        return self.internet.to_frame(arrays)


def _isin_sorted(xp: Any, values: Any, sorted_set: Any) -> Any:
    """Membership of ``values`` in the ascending array ``sorted_set`` (same dtype family)."""
    if sorted_set.shape[0] == 0 or values.shape[0] == 0:
        return xp.zeros(values.shape[0], dtype=bool)
    sorted_set = sorted_set.astype(values.dtype)
    at = xp.minimum(xp.searchsorted(sorted_set, values), sorted_set.shape[0] - 1)
    return sorted_set[at] == values


def host_array(values: Any) -> np.ndarray:
    return np.asarray(to_numpy(values))


def services_at(internet: SimInternet, keys: np.ndarray) -> Any:
    """The services frame of the given real service keys (``ip << 16 | port``), banners rendered:
    what probing those targets finds, as a scanner would record it."""
    from gpsgpu.ops import cpu

    keys = cpu.unique_sorted(np.asarray(keys, np.uint64))
    if keys.size == 0:
        return internet.to_frame(internet.services_of(internet.xp.zeros(0, dtype=internet.xp.uint32)))
    ips = np.unique((keys >> np.uint64(schema.SERVICE_IP_SHIFT)).astype(np.uint32))
    found = internet.services_of(internet.xp.asarray(ips))
    found_keys = schema.pack_service(
        np.asarray(to_numpy(found.ip), np.uint32), np.asarray(to_numpy(found.port), np.uint16)
    )
    hit = cpu.sorted_isin(found_keys, keys)
    return internet.to_frame(found.take(internet.xp.flatnonzero(internet.xp.asarray(hit))))

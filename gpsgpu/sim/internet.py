"""The simulated Internet: every service of every address as a pure function of (params, seed, address).

Layout, from coarse to fine:

- **/16s**: every /16 that does not touch the default blocklist is a candidate; candidates are ranked
  by a hash of the seed and the first ones form the *universe*, as many as the requested number of
  hosts needs (at least ``min_prefixes``). No host ever lives outside it, so none lives in
  blocklisted space.
- **ASes**: consecutive universe /16s (in rank order) are grouped into ASes of a type (residential
  ISP, hosting, enterprise, education, mobile) with type-dependent sizes. An AS has an ASN, a
  management port for its CPE, its own mix of device families (some families exist only in some
  ASes) and its own local picks of models (the ISP-issued router, the hoster's image).
- **/24s**: active or not, and a density level, by the AS type.
- **addresses**: occupied with the /24's density; an occupied address has a device family drawn from
  its AS's mix, a model, a per-host token, and opens some of its family's slots (ports), each with a
  banner from :mod:`gpsgpu.sim.banners`.
- **churn**: each address keeps its host for an exponential number of days (``host_lifetime_days``)
  and random-port devices keep their port for ``port_lifetime_days``; ``day`` picks the snapshot.

Only tables indexed by /16, AS, family and model (a few MB at full IPv4 scale) are materialized;
addresses are generated on demand, in any batch, with :mod:`gpsgpu.sim.hashing` on NumPy or CuPy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gpsgpu import schema
from gpsgpu.backend import Backend, to_numpy
from gpsgpu.blocklist import Blocklist
from gpsgpu.sim import catalog as cat
from gpsgpu.sim.banners import banner_keys, render_banners
from gpsgpu.sim.hashing import (
    cdf_table,
    hash_keys,
    mix64_int,
    modulo,
    pick,
    pick_rows,
    stream,
    threshold,
)
from gpsgpu.sim.params import SimParams

# Stream salts: one per random quantity, so that no two quantities are correlated by construction.
_S_RANK, _S_AS_TYPE, _S_AS_SIZE, _S_AS_PRESENCE, _S_AS_FLAVOR, _S_AS_LOCAL = 1, 2, 3, 4, 5, 6
_S_AS_PORT, _S_ASN = 7, 8
_S_24_ACTIVE, _S_24_LEVEL, _S_PERIOD, _S_OFFSET, _S_OCC = 10, 11, 12, 13, 14
_S_FAMILY, _S_CONF, _S_LOCAL_J, _S_MODEL, _S_TOKEN = 20, 21, 22, 23, 24
_S_SLOT, _S_EXCL, _S_RANDOM, _S_FWD, _S_FWD_ALT, _S_PPERIOD, _S_POFFSET = 30, 31, 32, 33, 34, 35, 36
_S_PSEUDO_N, _S_PSEUDO_MODE, _S_PSEUDO_START, _S_PSEUDO_PORT = 40, 41, 42, 43
_S_MODEL_PORT, _S_TAIL_RANK, _S_SPAN, _S_SEED_SAMPLE = 50, 51, 52, 60
_S_MOVE, _S_MOVE_PORT = 53, 54

#: One port of the random/tail port space per this many hosts (see ``SimInternet._build_port_span``).
HOSTS_PER_SPAN_PORT = 150

#: ``port_spread`` moves a service to one tail port per /16 (``ip >> MOVE_NET_SHIFT``): finer networks
#: (/24s) leave too few hosts per moved port for ports to keep co-occurring (the talk's partner fact).
MOVE_NET_SHIFT = 16

#: How often a port-forwarded service keeps its standard port, uses a common alternative, or a random one.
FORWARD_MODES = (0.40, 0.35, 0.25)
#: Quantiles of the exponential lifetime distribution (days are drawn from this many bins).
_LIFETIME_BINS = 256
#: Most alternative ports of a forwarded slot.
_MAX_ALT = 8

NMAP_SERVICES = Path("/usr/share/nmap/nmap-services")


@dataclass(frozen=True)
class ServiceArrays:
    """Generated services as device arrays (NumPy or CuPy), sorted by ``(ip, port)``, one per pair.

    Attributes
    ----------
    ip : uint32, port : uint16, asn : uint32, protocol : uint8 (index into ``catalog.PROTOCOLS``),
    window : int32, banner_key : uint64 (see :func:`gpsgpu.sim.banners.banner_keys`),
    family : uint8 (index into ``catalog.FAMILIES``).
    """

    ip: Any
    port: Any
    asn: Any
    protocol: Any
    window: Any
    banner_key: Any
    family: Any

    def __len__(self) -> int:
        return int(self.ip.shape[0])

    def take(self, index: Any) -> ServiceArrays:
        return ServiceArrays(*(getattr(self, f)[index] for f in _FIELDS))

    @staticmethod
    def concat(xp: Any, parts: list[ServiceArrays]) -> ServiceArrays:
        return ServiceArrays(*(xp.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def keys(self, xp: Any) -> Any:
        """``ip << 16 | port`` (uint64), the sort and join key of a service."""
        return schema.pack_service(self.ip, self.port)


_FIELDS = ("ip", "port", "asn", "protocol", "window", "banner_key", "family")


def _empty_arrays(xp: Any) -> ServiceArrays:
    return ServiceArrays(
        xp.zeros(0, xp.uint32), xp.zeros(0, xp.uint16), xp.zeros(0, xp.uint32), xp.zeros(0, xp.uint8),
        xp.zeros(0, xp.int32), xp.zeros(0, xp.uint64), xp.zeros(0, xp.uint8),
    )  # fmt: skip


def _read_nmap_ranking() -> list[int]:
    """TCP ports of nmap-services by descending open frequency (empty if the file is absent)."""
    if not NMAP_SERVICES.exists():
        return []
    rows: list[tuple[float, int]] = []
    for line in NMAP_SERVICES.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 3 and parts[1].endswith("/tcp"):
            try:
                rows.append((float(parts[2]), int(parts[1].split("/")[0])))
            except ValueError:
                continue
    rows.sort(key=lambda r: (-r[0], r[1]))
    return [port for _, port in rows]


class SimInternet:
    """A simulated Internet on one backend.

    Parameters
    ----------
    params : SimParams
    backend : Backend
        Where addresses are generated (NumPy or CuPy); results are identical on both.
    """

    def __init__(self, params: SimParams, backend: Backend = Backend.CPU) -> None:
        self.params = params
        self.backend = backend
        self.xp = backend.xp
        self._base = {salt: stream(params.seed, salt) for salt in range(64)}
        self._build_universe()
        self._build_port_span()
        self._build_ases()
        self._build_families()
        self._build_churn()
        self._to_device()

    # --- construction (host tables) ---------------------------------------------------------------

    def _h(self, salt: int, *keys: Any) -> np.ndarray:
        return hash_keys(np, self._base[salt], *keys)

    def _build_universe(self) -> None:
        p = self.params
        blocklist = Blocklist.default()
        nets = np.arange(65536, dtype=np.int64) << 16
        # A /16 touching blocklisted space is not part of the Internet at all: the simplest guarantee
        # that no host lives in, and no plan row of a simulated scan needs, blocklisted space. The last
        # interval starting at or before a /16's end overlaps it iff any interval does (disjoint, sorted).
        last = np.searchsorted(blocklist.starts.astype(np.int64), nets + 0xFFFF, side="right") - 1
        touched = (last >= 0) & (blocklist.ends.astype(np.int64)[np.maximum(last, 0)] >= nets)
        candidates = np.flatnonzero(~touched).astype(np.int64)
        ranked = candidates[np.argsort(self._h(_S_RANK, candidates), kind="stable")]

        # Group ranked /16s into ASes (at most one AS per /16) until the expected host count and
        # min_prefixes are both reached.
        types = cat.AS_TYPE_TABLE
        expected = np.array(
            [
                65536 * t.active_24 * float(np.dot(t.levels, t.level_weights) / sum(t.level_weights))
                for t in types
            ]
        )
        a = np.arange(ranked.size, dtype=np.int64)
        as_type = pick(np, cdf_table([t.weight for t in types]), self._h(_S_AS_TYPE, a))
        size = np.ones(ranked.size, dtype=np.int64)
        for i, t in enumerate(types):
            sel = np.flatnonzero(as_type == i)
            size[sel] = np.asarray(t.sizes)[pick(np, cdf_table(t.size_weights), self._h(_S_AS_SIZE, a[sel]))]
        end = np.cumsum(size)
        n_as = int(np.searchsorted(end, ranked.size, side="left")) + 1  # ASes needed to use every /16
        size[n_as - 1] -= end[n_as - 1] - ranked.size
        as_type, size, end = as_type[:n_as], size[:n_as], np.cumsum(size[:n_as])
        total = np.cumsum(size * expected[as_type])
        enough = np.flatnonzero((total >= float(p.hosts)) & (end >= p.min_prefixes))
        n_as = int(enough[0]) + 1 if enough.size else n_as
        as_type, size = as_type[:n_as], size[:n_as]
        pos = int(size.sum())
        self.density_scale = float(p.hosts) / float(total[n_as - 1])
        max_level = max(max(t.levels) for t in types)
        # Every /16 in use and still too few hosts: pack them denser, up to every address.
        self.density_scale = min(self.density_scale, 1.0 / max_level)
        self.n_prefixes = pos
        self.prefix16 = ranked[:pos].astype(np.int64)  # /16 index (address >> 16), in rank order
        self.as_type = as_type.astype(np.int64)
        self.n_as = n_as
        self.prefix_as = np.repeat(np.arange(n_as, dtype=np.int64), size)
        slot16 = np.full(65536, -1, dtype=np.int64)
        slot16[self.prefix16] = np.arange(pos, dtype=np.int64)
        self.slot16 = slot16
        self.n_addresses = pos * 65536

    def _build_ases(self) -> None:
        n_as, n_fam = self.n_as, len(cat.FAMILIES)
        a = np.arange(n_as, dtype=np.int64)
        # ASNs: distinct, increasing with the AS index, with hashed gaps so they look like real numbers.
        gaps = 1 + (self._h(_S_ASN, a) >> np.uint64(54)).astype(np.int64)
        self.asn = (1000 + np.cumsum(gaps)).astype(np.uint32)
        self.as_port = np.asarray(cat.AS_PORT_CHOICES, dtype=np.int64)[
            pick(np, cdf_table(cat.AS_PORT_WEIGHTS), self._h(_S_AS_PORT, a))
        ]
        type_names = [t.name for t in cat.AS_TYPE_TABLE]
        base = np.array([[f.mix.get(name, 0.0) for f in cat.FAMILIES] for name in type_names])  # type x fam
        weights = base[self.as_type].copy()  # as x fam
        fam = np.arange(n_fam, dtype=np.int64)
        presence = np.array([f.presence for f in cat.FAMILIES])
        present = (self._h(_S_AS_PRESENCE, a[:, None], fam[None, :]) >> np.uint64(11)).astype(
            np.float64
        ) / 2.0**53
        weights *= present < presence[None, :]
        # Each AS has its own flavour: family weights scaled by a factor in [0.25, 4] (log-uniform).
        u = (self._h(_S_AS_FLAVOR, a[:, None], fam[None, :]) >> np.uint64(11)).astype(np.float64) / 2.0**53
        weights *= np.exp2(4.0 * u - 2.0)
        empty = weights.sum(axis=1) <= 0
        weights[empty] = base[self.as_type[empty]] + 1e-12
        self.as_family_cdf = np.stack([cdf_table(row) for row in weights])
        # Local model picks: drawn from the family's global popularity, so popular models are local
        # to many ASes and rare ones to few.
        self.max_local = max(f.local_models for f in cat.FAMILIES)
        j = np.arange(self.max_local, dtype=np.int64)
        self._model_cdf = self._model_cdf_table()
        h = self._h(_S_AS_LOCAL, a[:, None, None], fam[None, :, None], j[None, None, :])
        rows = np.broadcast_to(fam[None, :, None], h.shape)
        self.as_local_models = pick_rows(np, self._model_cdf, rows.ravel(), h.ravel()).reshape(h.shape)

    def n_models(self, family: cat.Family) -> int:
        """Models of a family in this Internet: fixed, or growing with the population (the long tail)."""
        if family.hosts_per_model:
            return int(np.clip(self.params.hosts // family.hosts_per_model, 60, family.n_models))
        return family.n_models

    def _model_cdf_table(self) -> np.ndarray:
        counts = [self.n_models(f) for f in cat.FAMILIES]
        width = max(counts)
        table = np.zeros((len(cat.FAMILIES), width), dtype=np.int64)
        for i, (f, n) in enumerate(zip(cat.FAMILIES, counts, strict=True)):
            w = np.zeros(width)
            w[:n] = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** f.model_skew
            table[i] = cdf_table(w)
        return table

    def _build_port_span(self) -> None:
        """The unprivileged ports that random and tail choices use: all 64,512 at scale, fewer below.

        The simulation is a scale model: ``hosts // HOSTS_PER_SPAN_PORT`` ports (at least 1,024), a
        hashed subset spread over 1024..65535, so that services per port -- what normalized coverage
        is sensitive to -- stay those of a large Internet. From about 9.7 million hosts on, every
        port is used.
        """
        unprivileged = np.arange(1024, 65536, dtype=np.int64)
        span = int(np.clip(self.params.hosts // HOSTS_PER_SPAN_PORT, 1024, unprivileged.size))
        order = np.argsort(self._h(_S_SPAN, unprivileged), kind="stable")
        self.span_ports = np.sort(unprivileged[order[:span]])
        self.port_span = span

    def _tail_ports(self) -> np.ndarray:
        """Weights over ports 0..65535 of the high-port tail that model ports are drawn from."""
        ports = np.arange(65536, dtype=np.int64)
        order = np.argsort(self._h(_S_TAIL_RANK, ports), kind="stable")
        head = [*cat.POPULAR_ALT_PORTS]
        if self.params.port_ranking == "nmap":
            head = [q for q in _read_nmap_ranking() if q >= 1024][:2000] + head
        seen = set()
        ranking = [q for q in head if not (q in seen or seen.add(q))]
        in_head = np.zeros(65536, dtype=bool)
        in_head[ranking] = True
        ranking += [int(q) for q in order if not in_head[q]]
        rank = np.empty(65536, dtype=np.float64)
        rank[np.asarray(ranking, dtype=np.int64)] = np.arange(65536, dtype=np.float64)
        # A Zipf head over the ranking plus a flat floor: rare appliances use all of the port space.
        # port_spread flattens both (at 1.0 the products are exact: today's weights to the bit).
        spread = self.params.port_spread
        weights = 1.0 / (rank + 300.0 * spread) + 1.0e-5 * spread
        weights[:1024] *= 0.05  # vendors rarely put their own services on well-known ports
        usable = np.zeros(65536, dtype=bool)
        usable[:1024] = True
        usable[self.span_ports] = True
        usable[list(cat.POPULAR_ALT_PORTS)] = True
        weights[~usable] = 0.0
        weights[0] = 0.0
        return weights

    def _build_families(self) -> None:
        fams = cat.FAMILIES
        n_fam, width = len(fams), cat.MAX_SLOTS
        code = np.full((n_fam, width), -1, dtype=np.int64)
        thr = np.zeros((n_fam, width), dtype=np.int64)
        proto = np.zeros((n_fam, width), dtype=np.int64)
        per_host = np.zeros((n_fam, width), dtype=bool)
        std = np.zeros((n_fam, width), dtype=np.int64)
        alt = np.zeros((n_fam, width, _MAX_ALT), dtype=np.int64)
        n_alt = np.ones((n_fam, width), dtype=np.int64)
        excl = np.zeros((n_fam, width), dtype=np.int64)
        for i, f in enumerate(fams):
            for s, slot in enumerate(f.slots):
                code[i, s] = slot.port
                thr[i, s] = threshold(slot.p)
                proto[i, s] = cat.PROTOCOLS.index(slot.protocol)
                per_host[i, s] = slot.per_host
                std[i, s] = slot.std
                alts = slot.alt or (slot.std,)
                alt[i, s, : len(alts)] = alts
                n_alt[i, s] = len(alts)
            weights = np.zeros(width)
            if f.exclusive:
                weights[: len(f.slots)] = [slot.p for slot in f.slots]
            else:
                weights[0] = 1.0
            excl[i] = cdf_table(weights)
        self.slot_code, self.slot_thr, self.slot_proto, self.slot_per_host = code, thr, proto, per_host
        self.slot_std, self.slot_alt, self.slot_n_alt, self.slot_excl_cdf = std, alt, n_alt, excl
        # The slot forced open when a host draws none: its family's most likely one.
        self.slot_anchor = np.argmax(np.where(code != -1, thr, -1), axis=1).astype(np.int64)
        self.fam_exclusive = np.array([f.exclusive for f in fams])
        self.fam_conf_thr = threshold([f.confinement for f in fams])
        self.fam_local_models = np.array([f.local_models for f in fams], dtype=np.int64)

        # Model ports: fixed for the well-known first models, else drawn from the high-port tail.
        max_models = self._model_cdf.shape[1]
        n_mp = max(1, max(f.n_model_ports for f in fams))
        tail_cdf = cdf_table(self._tail_ports())
        self.tail_cdf = tail_cdf
        # The share of hosts whose services port_spread moves to the tail (none at 1.0).
        self.move_thr = int(threshold(1.0 - 1.0 / self.params.port_spread))
        mp = np.zeros((n_fam, max_models, n_mp), dtype=np.int64)
        m = np.arange(max_models, dtype=np.int64)
        for i, f in enumerate(fams):
            for k in range(n_mp):
                mp[i, :, k] = pick(np, tail_cdf, self._h(_S_MODEL_PORT, np.int64(i), m, np.int64(k)))
            for model, ports in enumerate(f.known_model_ports):
                mp[i, model, : len(ports)] = ports
            # A model's ports must differ from each other: bump collisions to the next free port.
            for k in range(1, n_mp):
                clash = (mp[i, :, :k] == mp[i, :, k : k + 1]).any(axis=1)
                mp[i, clash, k] = (mp[i, clash, k] % 65535) + 1
        self.model_ports = mp
        win = np.zeros((n_fam, max_models), dtype=np.int64)
        for i, f in enumerate(fams):
            choices = np.asarray(f.windows, dtype=np.int64)
            win[i] = choices[(m * 2654435761 + mix64_int(i * 7919 + 1) % 1009) % len(choices)]
        self.model_window = win
        self.pseudo_count_cdf = cdf_table(cat.PSEUDO_PORT_WEIGHTS)
        self.pseudo_counts = np.asarray(cat.PSEUDO_PORT_COUNTS, dtype=np.int64)

        # /24 density tables per AS type: activity threshold, level cdf, level thresholds.
        types = cat.AS_TYPE_TABLE
        n_levels = max(len(t.levels) for t in types)
        self.active_thr = threshold([t.active_24 for t in types])
        self.level_cdf = np.stack(
            [cdf_table(list(t.level_weights) + [0.0] * (n_levels - len(t.levels))) for t in types]
        )
        level = np.zeros((len(types), n_levels))
        for i, t in enumerate(types):
            level[i, : len(t.levels)] = np.asarray(t.levels) * self.density_scale
        self.level_thr = threshold(level)

    def _build_churn(self) -> None:
        q = (np.arange(_LIFETIME_BINS) + 0.5) / _LIFETIME_BINS
        for name, mean in (("host_period", self.params.host_lifetime_days),
                           ("port_period", self.params.port_lifetime_days)):  # fmt: skip
            setattr(self, name, np.maximum(1, np.round(-mean * np.log1p(-q))).astype(np.int64))

    def _to_device(self) -> None:
        xp = self.xp
        self.d = {
            name: xp.asarray(getattr(self, name))
            for name in (
                "slot16", "prefix_as", "as_type", "asn", "as_port", "as_family_cdf", "as_local_models",
                "slot_code", "slot_thr", "slot_proto", "slot_per_host", "slot_std", "slot_alt",
                "slot_n_alt", "slot_excl_cdf", "slot_anchor", "fam_exclusive", "fam_conf_thr",
                "fam_local_models", "model_ports", "model_window", "pseudo_count_cdf", "pseudo_counts",
                "active_thr", "level_cdf", "level_thr", "host_period", "port_period", "span_ports",
                "tail_cdf",
            )
        }  # fmt: skip
        self.d["model_cdf"] = xp.asarray(self._model_cdf)

    # --- addresses ----------------------------------------------------------------------------------

    @property
    def prefixes(self) -> np.ndarray:
        """The universe's /16 network addresses (uint32), ascending."""
        return np.sort(self.prefix16).astype(np.uint32) << np.uint32(16)

    def _hx(self, salt: int, *keys: Any) -> Any:
        return hash_keys(self.xp, self._base[salt], *keys)

    def _generation(self, key: Any, period_table: Any, s_period: int, s_offset: int) -> Any:
        """Which incarnation of ``key`` lives on ``params.day`` (renewal with tabulated lifetimes)."""
        xp = self.xp
        period = period_table[modulo(xp, self._hx(s_period, key), _LIFETIME_BINS)]
        offset = modulo(xp, self._hx(s_offset, key), period)
        return (xp.int64(self.params.day) + offset) // period

    def occupied(self, ips: Any) -> tuple[Any, Any]:
        """Which of ``ips`` (uint32 array on the backend) hold a responsive host, and its generation."""
        xp, d = self.xp, self.d
        ips = xp.asarray(ips, dtype=xp.uint32)
        univ = d["slot16"][(ips >> xp.uint32(16)).astype(xp.int64)]
        inside = univ >= 0
        as_idx = d["prefix_as"][xp.maximum(univ, 0)]
        t = d["as_type"][as_idx]
        net24 = (ips >> xp.uint32(8)).astype(xp.int64)
        h_active = self._hx(_S_24_ACTIVE, net24)
        active = (h_active >> xp.uint64(32)).astype(xp.int64) < d["active_thr"][t]
        level = pick_rows(xp, d["level_cdf"], t, self._hx(_S_24_LEVEL, net24))
        density = d["level_thr"][t, level]
        gen = self._generation(ips, d["host_period"], _S_PERIOD, _S_OFFSET)
        h_occ = self._hx(_S_OCC, ips, gen)
        occ = inside & active & ((h_occ >> xp.uint64(32)).astype(xp.int64) < density)
        return occ, gen

    def services_of(self, ips: Any) -> ServiceArrays:
        """Every service of the addresses ``ips`` (uint32, any order, duplicates allowed once)."""
        xp = self.xp
        ips = xp.asarray(ips, dtype=xp.uint32)
        occ, gen = self.occupied(ips)
        return self._services_of_hosts(ips[occ], gen[occ])

    def _services_of_hosts(self, ip: Any, gen: Any) -> ServiceArrays:
        xp, d = self.xp, self.d
        n = int(ip.shape[0])
        if n == 0:
            return _empty_arrays(xp)
        as_idx = d["prefix_as"][d["slot16"][(ip >> xp.uint32(16)).astype(xp.int64)]]
        fam = pick_rows(xp, d["as_family_cdf"], as_idx, self._hx(_S_FAMILY, ip, gen))
        local = (self._hx(_S_CONF, ip, gen) >> xp.uint64(32)).astype(xp.int64) < d["fam_conf_thr"][fam]
        j = modulo(xp, self._hx(_S_LOCAL_J, ip, gen), d["fam_local_models"][fam])
        model = xp.where(
            local,
            d["as_local_models"][as_idx, fam, j],
            pick_rows(xp, d["model_cdf"], fam, self._hx(_S_MODEL, ip, gen)),
        )
        token = ((self._hx(_S_TOKEN, ip, gen) >> xp.uint64(32)) | xp.uint64(1)).astype(xp.int64)
        window = d["model_window"][fam, model]
        asn = d["asn"][as_idx]

        pseudo = fam == cat.PSEUDO_FAMILY
        parts = []
        for rows, make in ((xp.flatnonzero(~pseudo), self._slot_services), (xp.flatnonzero(pseudo), None)):
            if rows.size == 0:
                continue
            if make is not None:
                got = make(ip[rows], gen[rows], as_idx[rows], fam[rows], model[rows])
            else:
                got = self._pseudo_services(ip[rows], gen[rows])
            parts.append((got[0], got[1], got[2], rows[got[3]]))
        flat_ip, port, slot_i, host_rows = (xp.concatenate([p[k] for p in parts]) for k in range(4))
        f = fam[host_rows]
        # One service per (ip, port): the lowest slot wins (a random port may hit a fixed one).
        key = (
            (flat_ip.astype(xp.uint64) << xp.uint64(21))
            | (port.astype(xp.uint64) << xp.uint64(5))
            | slot_i.astype(xp.uint64)
        )
        order = xp.argsort(key)
        key = key[order]
        pair = key >> xp.uint64(5)
        keep = xp.ones(key.shape[0], dtype=bool)
        keep[1:] = pair[1:] != pair[:-1]
        sel = order[keep]
        flat_ip, port, slot_i, host_rows, f = flat_ip[sel], port[sel], slot_i[sel], host_rows[sel], f[sel]
        per_host = d["slot_per_host"][f, slot_i]
        tok = xp.where(per_host, token[host_rows], 0)
        is_pseudo = f == cat.PSEUDO_FAMILY
        proto = xp.where(is_pseudo, cat.PROTOCOLS.index("http"), d["slot_proto"][f, slot_i])
        bslot = xp.where(is_pseudo, 0, slot_i)
        return ServiceArrays(
            ip=flat_ip.astype(xp.uint32),
            port=port.astype(xp.uint16),
            asn=asn[host_rows].astype(xp.uint32),
            protocol=proto.astype(xp.uint8),
            window=window[host_rows].astype(xp.int32),
            banner_key=banner_keys(xp, f, bslot, model[host_rows], tok),
            family=f.astype(xp.uint8),
        )

    def _slot_services(self, ip: Any, gen: Any, as_idx: Any, fam: Any, model: Any) -> tuple:
        xp, d = self.xp, self.d
        width = cat.MAX_SLOTS
        s = xp.arange(width, dtype=xp.int64)[None, :]
        code = d["slot_code"][fam]  # n x width
        h = self._hx(_S_SLOT, ip[:, None], gen[:, None], s)
        opened = ((h >> xp.uint64(32)).astype(xp.int64) < d["slot_thr"][fam]) & (code != -1)
        chosen = pick_rows(xp, d["slot_excl_cdf"], fam, self._hx(_S_EXCL, ip, gen))
        opened = xp.where(d["fam_exclusive"][fam][:, None], s == chosen[:, None], opened)
        none = ~opened.any(axis=1)
        opened = opened | (none[:, None] & (s == d["slot_anchor"][fam][:, None]))

        rows, cols = xp.nonzero(opened)
        rows = rows.astype(xp.int64)
        cols = cols.astype(xp.int64)
        c = code[rows, cols]
        f, m, hip, hgen = fam[rows], model[rows], ip[rows], gen[rows]
        port = xp.where(c >= 0, c, 0)
        # Model ports.
        k = xp.clip(cat.MODEL_PORT - c, 0, d["model_ports"].shape[2] - 1)
        port = xp.where(c <= cat.MODEL_PORT, d["model_ports"][f, m, k], port)
        # Random ports, re-drawn when the device's port generation changes.
        pgen = self._generation(hip, d["port_period"], _S_PPERIOD, _S_POFFSET)
        rnd = d["span_ports"][modulo(xp, self._hx(_S_RANDOM, hip, pgen, cols), self.port_span)]
        port = xp.where(c == cat.RANDOM_PORT, rnd, port)
        port = xp.where(c == cat.AS_PORT, d["as_port"][as_idx[rows]], port)
        # Port forwarding: the standard port, a common alternative, or a random external port.
        u = (self._hx(_S_FWD, hip, hgen, cols) >> xp.uint64(32)).astype(xp.int64)
        std_thr, alt_thr = threshold(FORWARD_MODES[0]), threshold(FORWARD_MODES[0] + FORWARD_MODES[1])
        ai = modulo(xp, self._hx(_S_FWD_ALT, hip, hgen, cols), d["slot_n_alt"][f, cols])
        fwd = xp.where(
            u < int(std_thr),
            d["slot_std"][f, cols],
            xp.where(u < int(alt_thr), d["slot_alt"][f, cols, ai], rnd),
        )
        port = xp.where(c == cat.FORWARD_PORT, fwd, port)
        if self.move_thr > 0:
            port = self._spread_ports(port, c, f, m, hip, hgen, cols)
        return hip, port.astype(xp.int64), cols, rows

    def _spread_ports(self, port: Any, code: Any, fam: Any, model: Any, ip: Any, gen: Any, slot: Any) -> Any:
        """``port_spread``: move a share ``1 - 1/s`` of hosts' services to ports of the high-port tail.

        A host moves as a whole (its services keep co-occurring); each of its services, except
        random-port ones (uniform already), moves to one port per (/16, family, model, slot)
        drawn from the tail: the hoster's image or the ISP's firmware puts it there, so the port
        stays predictable from the network and the banner, as GPS assumes.
        """
        xp = self.xp
        u = (self._hx(_S_MOVE, ip, gen) >> xp.uint64(32)).astype(xp.int64)
        moved = (u < self.move_thr) & (code != cat.RANDOM_PORT)
        net = (ip >> xp.uint32(MOVE_NET_SHIFT)).astype(xp.int64)
        target = pick(xp, self.d["tail_cdf"], self._hx(_S_MOVE_PORT, net, fam, model, slot))
        return xp.where(moved, target, port)

    def _pseudo_services(self, ip: Any, gen: Any) -> tuple:
        xp, d = self.xp, self.d
        count = d["pseudo_counts"][pick(xp, d["pseudo_count_cdf"], self._hx(_S_PSEUDO_N, ip, gen))]
        ranged = (self._hx(_S_PSEUDO_MODE, ip, gen) >> xp.uint64(63)) == 1
        start = 1 + modulo(xp, self._hx(_S_PSEUDO_START, ip, gen), 65535 - count)
        # xp.repeat with per-element counts, written with searchsorted (cupy.repeat takes no array).
        ends = xp.cumsum(count)
        total = int(ends[-1])
        rows = xp.searchsorted(ends, xp.arange(total, dtype=xp.int64), side="right").astype(xp.int64)
        j = xp.arange(total, dtype=xp.int64) - (ends - count)[rows]
        hashed = 1 + modulo(xp, self._hx(_S_PSEUDO_PORT, ip[rows], gen[rows], j), 65535)
        port = xp.where(ranged[rows], start[rows] + j, hashed)
        return ip[rows], port.astype(xp.int64), xp.zeros(rows.shape[0], dtype=xp.int64), rows

    # --- whole prefixes and the universe -----------------------------------------------------------

    def addresses(self, network: int, length: int) -> Any:
        """Every address of ``network/length`` (uint32 on the backend)."""
        size = 1 << (32 - length)
        first = int(network) & ~(size - 1) & 0xFFFFFFFF
        return self.xp.arange(first, first + size, dtype=self.xp.int64).astype(self.xp.uint32)

    def iter_universe(self, batch_prefixes: int = 16) -> Iterator[Any]:
        """The universe's addresses in ascending batches of ``batch_prefixes`` /16s (uint32 arrays)."""
        xp = self.xp
        nets = self.prefixes
        offsets = xp.arange(65536, dtype=xp.uint32)
        for i in range(0, nets.size, batch_prefixes):
            chunk = xp.asarray(nets[i : i + batch_prefixes])
            yield (chunk[:, None] + offsets[None, :]).ravel()

    def ground_truth(self, batch_prefixes: int = 16) -> ServiceArrays:
        """Every service of the universe, sorted by ``(ip, port)``."""
        parts = [self.services_of(ips) for ips in self.iter_universe(batch_prefixes)]
        return ServiceArrays.concat(self.xp, parts) if parts else _empty_arrays(self.xp)

    def seed_mask(self, ips: Any, fraction: float) -> Any:
        """Which of ``ips`` belong to the seed sample of ``fraction`` of all addresses."""
        h = self._hx(_S_SEED_SAMPLE, self.xp.asarray(ips, dtype=self.xp.uint32))
        return (h >> self.xp.uint64(32)).astype(self.xp.int64) < int(threshold(fraction))

    # --- frames ---------------------------------------------------------------------------------------

    def to_arrow(self, arrays: ServiceArrays) -> pa.Table:
        """Generated services as an Arrow table in the services schema (banners rendered)."""
        host = {f: to_numpy(getattr(arrays, f)) for f in _FIELDS}
        protocols = pa.array(cat.PROTOCOLS, type=pa.string()).take(
            pa.array(host["protocol"].astype(np.int64))
        )
        table = pa.table(
            {
                schema.IP: pa.array(host["ip"], type=pa.uint32()),
                schema.PORT: pa.array(host["port"], type=pa.uint16()),
                schema.ASN: pa.array(host["asn"], type=pa.uint32()),
                schema.PROTOCOL: protocols,
                schema.WINDOW: pa.array(host["window"], type=pa.int32()),
                schema.BANNER: render_banners(host["banner_key"]),
            }
        )
        return schema.services_arrow_table(table)

    def to_frame(self, arrays: ServiceArrays) -> Any:
        """Generated services as a services frame on this backend (pandas or cuDF)."""
        return schema.services_from_arrow(self.to_arrow(arrays), self.backend.xdf)

    def describe(self) -> dict[str, Any]:
        """Sizes of the universe, for metadata and reports."""
        counts = np.bincount(self.as_type, minlength=len(cat.AS_TYPES))
        return {
            "prefixes_16": int(self.n_prefixes),
            "addresses": int(self.n_addresses),
            "ases": int(self.n_as),
            "ases_by_type": {name: int(c) for name, c in zip(cat.AS_TYPES, counts.tolist(), strict=True)},
            "density_scale": round(float(self.density_scale), 6),
        }

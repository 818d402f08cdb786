"""A simulated /20 darknet: scanner campaigns with known port families, plus the scans port2dist
sets aside (full vertical and horizontal scans) and noise.

Every day is a pure function of ``(DarknetParams, day)``: a NumPy ``Generator`` seeded with
``[seed, day]`` draws that day's sources, sizes, port subsets, targets and timings, vectorized over
probes. It runs on the host whatever the backend, so the same seed gives the same darknet on a CPU
laptop and on a GPU node (and CPU/GPU distance comparisons start from identical probes); the
pipeline moves the table to the device afterwards.

What the traffic is made of (shares of a day's probes, :data:`KIND_SHARES`):

- **tailored** campaigns probe a subset of one port family (:data:`FAMILIES`: Telnet botnets, web,
  databases, remote access, IoT exploits, cameras, mail, Windows, ICS, proxies) in one of four
  realistic orderings: ``host`` (every chosen port on a host, then the next host, as LZR/Nmap do),
  ``port`` (one port across all targets, then the next, as successive ZMap runs do), ``random``
  (a random (host, port) permutation, as masscan does) and ``weighted`` (each probe draws its port
  by weight, as Mirai does with 23/2323 at 9:1);
- **context** campaigns mix families that live on the same hosts (web + database, ...);
- **generic** campaigns probe a "top ports" list across families in random order;
- **vertical** scans sweep a range of 1,000 to 65,535 ports on one host, mostly in port order;
- **horizontal** scans probe one port across most of the /20;
- **noise**: sources sending one to three probes to random ports.

Sources recur across days (each campaign has a pool of addresses; a day draws its active sources
from it), so multi-day windows see the same scanners again, as a real telescope does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu.errors import UsageError
from gpsgpu.portdist import columns as C

#: Bumped whenever a change here changes what the same parameters generate.
DARKNET_SIM_VERSION = 1

#: Probes per day of the paper's /20 telescope ("about 48 million a day"): the full size.
FULL_PROBES_PER_DAY = 50_000_000

#: Port families: the ground truth of the neighbour-quality score. No port is in two families.
FAMILIES: dict[str, tuple[int, ...]] = {
    "telnet": (23, 2323, 2223, 223, 23231, 6023, 8023, 992),
    "web": (80, 443, 8080, 8443, 8000, 8888, 8008, 9443, 8081, 8880),
    "database": (3306, 5432, 1433, 1521, 27017, 6379, 9200, 5984, 11211, 9042),
    "remote_access": (22, 3389, 5900, 2222, 5901, 5800, 3390, 22222, 5938, 4899),
    "iot_exploit": (7547, 37215, 52869, 5555, 8291, 60001, 81, 49152, 5358, 9530),
    "camera": (554, 8554, 37777, 34567, 34599, 10554, 5544, 1935),
    "mail": (25, 587, 465, 110, 995, 143, 993, 2525),
    "windows": (445, 139, 135, 5985, 5986, 593, 389, 636),
    "ics": (502, 102, 20000, 44818, 1911, 2404, 789, 9600, 1962, 4911),
    "proxy": (1080, 3128, 8118, 9050, 9051, 1081, 8090, 6588, 808),
}

#: Share of a day's probes per kind of traffic.
KIND_SHARES: dict[str, float] = {
    "tailored": 0.30,
    "context": 0.03,
    "generic": 0.04,
    "vertical": 0.25,
    "horizontal": 0.33,
    "noise": 0.05,
}

ORDERS = ("host", "port", "random", "weighted")


@dataclass(frozen=True)
class Campaign:
    """One scanner campaign: who probes which ports in which order.

    ``share`` is the campaign's weight within its kind's probes; ``weights`` (``weighted`` order
    only) is the probability of each port per probe.
    """

    name: str
    kind: str
    family: str
    ports: tuple[int, ...]
    order: str
    share: float
    weights: tuple[float, ...] | None = None


def _fam(name: str, *ports: int) -> tuple[int, ...]:
    missing = set(ports) - set(FAMILIES[name])
    if missing:  # pragma: no cover - a catalogue typo
        raise ValueError(f"ports {missing} are not in family {name}")
    return ports


F = FAMILIES
#: The labelled campaigns (ground truth); vertical/horizontal/noise follow as the last three ids.
CAMPAIGNS: tuple[Campaign, ...] = (
    Campaign("mirai", "tailored", "telnet", (23, 2323), "weighted", 3.0, (0.9, 0.1)),
    Campaign("telnet-alt", "tailored", "telnet", _fam("telnet", 23, 2323, 2223, 223, 23231), "host", 1.0),
    Campaign("telnet-full", "tailored", "telnet", F["telnet"], "random", 0.5),
    Campaign("web-common", "tailored", "web", _fam("web", 80, 443, 8080, 8443), "host", 2.0),
    Campaign("web-alt", "tailored", "web", _fam("web", 8000, 8888, 8008, 8081, 8880, 8080), "port", 1.0),
    Campaign("web-tls", "tailored", "web", _fam("web", 443, 8443, 9443), "random", 0.7),
    Campaign("web-all", "tailored", "web", F["web"], "random", 0.5),
    Campaign("db-sql", "tailored", "database", _fam("database", 3306, 5432, 1433, 1521), "host", 1.0),
    Campaign(
        "db-nosql",
        "tailored",
        "database",
        _fam("database", 27017, 6379, 9200, 5984, 11211, 9042),
        "random",
        1.0,
    ),
    Campaign("db-all", "tailored", "database", F["database"], "port", 0.5),
    Campaign(
        "rdp-vnc",
        "tailored",
        "remote_access",
        _fam("remote_access", 3389, 5900, 5901, 3390, 5800),
        "host",
        1.0,
    ),
    Campaign(
        "ssh",
        "tailored",
        "remote_access",
        _fam("remote_access", 22, 2222, 22222),
        "weighted",
        1.5,
        (0.8, 0.15, 0.05),
    ),
    Campaign("remote-all", "tailored", "remote_access", F["remote_access"], "random", 0.5),
    Campaign(
        "iot-routers",
        "tailored",
        "iot_exploit",
        _fam("iot_exploit", 7547, 37215, 52869, 8291, 5555),
        "random",
        1.0,
    ),
    Campaign("iot-adb", "tailored", "iot_exploit", _fam("iot_exploit", 5555, 60001, 81, 49152), "host", 0.6),
    Campaign("iot-all", "tailored", "iot_exploit", F["iot_exploit"], "host", 0.5),
    Campaign("cam-rtsp", "tailored", "camera", _fam("camera", 554, 8554, 10554, 5544), "host", 0.7),
    Campaign("cam-dvr", "tailored", "camera", _fam("camera", 37777, 34567, 34599, 554, 1935), "random", 0.7),
    Campaign("mail-smtp", "tailored", "mail", _fam("mail", 25, 587, 465, 2525), "host", 0.7),
    Campaign("mail-imap-pop", "tailored", "mail", _fam("mail", 110, 995, 143, 993), "random", 0.5),
    Campaign("smb", "tailored", "windows", _fam("windows", 445, 139, 135), "host", 1.0),
    Campaign("winrm-ldap", "tailored", "windows", _fam("windows", 5985, 5986, 389, 636, 593), "random", 0.5),
    Campaign("ics-all", "tailored", "ics", F["ics"], "random", 0.4),
    Campaign("ics-plc", "tailored", "ics", _fam("ics", 502, 102, 44818, 20000), "host", 0.3),
    Campaign(
        "proxy-open", "tailored", "proxy", _fam("proxy", 1080, 3128, 8118, 9050, 8090, 808), "random", 0.6
    ),
    Campaign("web+db", "context", "web+database", (80, 443, 3306, 8080, 5432), "random", 0.5),
    Campaign("remote+windows", "context", "remote_access+windows", (22, 3389, 445, 5985), "host", 0.4),
    Campaign("mail+web", "context", "mail+web", (25, 80, 443, 110), "host", 0.2),
    Campaign(
        "top-ports-20",
        "generic",
        "",
        (
            80,
            23,
            443,
            22,
            3389,
            8080,
            445,
            21,
            3306,
            25,
            5900,
            8443,
            110,
            139,
            135,
            1433,
            6379,
            554,
            7547,
            5555,
        ),
        "random",
        1.0,
    ),
    Campaign(
        "top-ports-40",
        "generic",
        "",
        (
            80,
            443,
            22,
            23,
            21,
            25,
            53,
            110,
            111,
            135,
            139,
            143,
            445,
            993,
            995,
            1433,
            1521,
            1723,
            2323,
            3306,
            3389,
            5432,
            5900,
            6379,
            8000,
            8080,
            8443,
            8888,
            9200,
            27017,
            37215,
            52869,
            7547,
            5555,
            81,
            502,
            102,
            1080,
            3128,
            554,
        ),
        "random",
        0.5,
    ),
)
VERTICAL_ID = len(CAMPAIGNS)
HORIZONTAL_ID = VERTICAL_ID + 1
NOISE_ID = VERTICAL_ID + 2

#: Ports horizontal scanners favour (weights), the rest uniform over 1..65535.
HORIZONTAL_PORTS = (443, 80, 22, 23, 8080, 3389, 445, 6379, 5555, 2323, 21, 25, 3306, 8443, 7547, 1433)
HORIZONTAL_RANDOM_SHARE = 0.2

_SRC_MUL = np.uint64(2_654_435_761)  # odd: idx -> address is a bijection of uint32
_SRC_ADD = np.uint64(0x1F3A_5C01)


@dataclass(frozen=True)
class DarknetParams:
    """A simulated darknet: with a seed, fixes every probe of every day.

    Attributes
    ----------
    probes_per_day : expected TCP SYNs per day (50M at full size, as a /20 in the paper).
    days : number of days (1 to 366).
    start : first day (ISO date, UTC).
    seed : random seed.
    prefix : the telescope's first address (dotted quad); it spans ``2**(32 - prefix_len)`` addresses.
    prefix_len : 20 for the paper's /20.
    """

    probes_per_day: int = FULL_PROBES_PER_DAY
    days: int = 1
    start: str = "2026-01-01"
    seed: int = 0
    prefix: str = "100.64.0.0"
    prefix_len: int = 20
    version: int = DARKNET_SIM_VERSION

    def __post_init__(self) -> None:
        if not 1_000 <= int(self.probes_per_day) <= 2_000_000_000:
            raise UsageError(
                f"--probes-per-day must be within 1,000..2,000,000,000, not {self.probes_per_day}"
            )
        if not 1 <= int(self.days) <= 366:
            raise UsageError(f"--days must be within 1..366, not {self.days}")
        if not 8 <= int(self.prefix_len) <= 30:
            raise UsageError(f"--prefix-len must be within 8..30, not {self.prefix_len}")
        if not 0 <= int(self.seed) < 2**63:
            raise UsageError(f"--seed must be within 0..2**63-1, not {self.seed}")
        try:
            dt.date.fromisoformat(self.start)
        except ValueError:
            raise UsageError(f"--start must be an ISO date (YYYY-MM-DD), not {self.start!r}") from None
        base = _ip_value(self.prefix)
        if base & ((1 << (32 - self.prefix_len)) - 1):
            raise UsageError(f"--prefix {self.prefix} is not the first address of a /{self.prefix_len}")

    @property
    def n_addresses(self) -> int:
        return 1 << (32 - int(self.prefix_len))

    @property
    def base(self) -> int:
        return _ip_value(self.prefix)

    def day_start_us(self, day: int) -> int:
        start = dt.datetime.combine(dt.date.fromisoformat(self.start), dt.time(), tzinfo=dt.UTC)
        return (int(start.timestamp()) + 86_400 * int(day)) * 1_000_000

    def day_name(self, day: int) -> str:
        return (dt.date.fromisoformat(self.start) + dt.timedelta(days=int(day))).isoformat()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _ip_value(dotted: str) -> int:
    import ipaddress

    try:
        return int(ipaddress.IPv4Address(dotted))
    except ValueError:
        raise UsageError(f"--prefix must be a dotted IPv4 address, not {dotted!r}") from None


def campaigns_frame() -> pd.DataFrame:
    """The ground-truth campaign table.

    Returns
    -------
    pandas.DataFrame
        ``campaign int32, name string, kind string, family string, order string, ports list<uint16>``,
        one row per campaign id (the ``campaign`` column of simulated probes), including the
        ``vertical``, ``horizontal`` and ``noise`` pseudo-campaigns.
    """
    rows = [(c.name, c.kind, c.family, c.order, list(c.ports)) for c in CAMPAIGNS]
    rows += [("vertical", "vertical", "", "port", []), ("horizontal", "horizontal", "", "host", [])]
    rows += [("noise", "noise", "", "random", [])]
    frame = pd.DataFrame(rows, columns=["name", "kind", "family", "order", "ports"])
    frame.insert(0, C.CAMPAIGN, np.arange(len(rows), dtype=np.int32))
    return frame


def families_frame() -> pd.DataFrame:
    """``family string, port uint16``: one row per port of every family (the quality ground truth)."""
    fam = [name for name, ports in FAMILIES.items() for _ in ports]
    ports = [p for ports in FAMILIES.values() for p in ports]
    return pd.DataFrame({"family": fam, C.PORT: np.asarray(ports, dtype=np.uint16)})


# --- one day -------------------------------------------------------------------------------------

#: Hosts per tailored source: lognormal (median 8, log sd 1.2), clipped to the telescope.
_HOSTS_MEDIAN, _HOSTS_SIGMA = 8.0, 1.2
#: Seconds between a source's probes: lognormal (median 0.5 s, log sd 1.5).
_GAP_MEDIAN_S, _GAP_SIGMA = 0.5, 1.5


def _kind_budgets(params: DarknetParams) -> dict[str, float]:
    return {kind: share * params.probes_per_day for kind, share in KIND_SHARES.items()}


def _pool_size(expected_sources: float) -> int:
    # Three days' worth of sources: most of a day's sources were seen on one of the previous days.
    return max(4, int(3 * expected_sources))


def _campaign_plan(params: DarknetParams) -> list[tuple[int, float, int, int]]:
    """``(campaign id, probe budget, pool offset, pool size)`` of every labelled campaign."""
    budgets = _kind_budgets(params)
    totals: dict[str, float] = {}
    for c in CAMPAIGNS:
        totals[c.kind] = totals.get(c.kind, 0.0) + c.share
    mean_hosts = _HOSTS_MEDIAN * np.exp(_HOSTS_SIGMA**2 / 2)
    out, offset = [], 0
    for cid, c in enumerate(CAMPAIGNS):
        budget = budgets[c.kind] * c.share / totals[c.kind]
        per_source = mean_hosts * (
            1.0 if c.order == "weighted" else (min(2, len(c.ports)) + len(c.ports)) / 2
        )
        pool = _pool_size(budget / per_source)
        out.append((cid, budget, offset, pool))
        offset += pool
    return out


def _source_address(index: np.ndarray) -> np.ndarray:
    """A distinct, scattered IPv4 address for every global source index (a bijection of uint32)."""
    with np.errstate(over="ignore"):
        return ((index.astype(np.uint64) * _SRC_MUL + _SRC_ADD) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _segment_positions(sizes: np.ndarray) -> np.ndarray:
    """``0..size-1`` for every segment, concatenated."""
    total = int(sizes.sum())
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.arange(total, dtype=np.int64) - starts


def _times(
    rng: np.random.Generator, day_us: int, n_per_source: np.ndarray, owner: np.ndarray, slot: np.ndarray
) -> np.ndarray:
    """Timestamps: each source starts at a random second of the day and sends its probes in ``slot``
    order (float positions), one every ``gap`` seconds; a source never runs past midnight."""
    n = np.maximum(n_per_source, 1).astype(np.float64)
    gap = rng.lognormal(np.log(_GAP_MEDIAN_S), _GAP_SIGMA, size=n.size)
    gap = np.minimum(gap, 0.9 * 86_400 / n)
    start = rng.random(n.size) * (86_400 - gap * n)
    seconds = start[owner] + slot * gap[owner]
    return day_us + np.minimum((seconds * 1e6).astype(np.int64), C.DAY_US - 1)


def _tailored(
    rng: np.random.Generator,
    params: DarknetParams,
    day_us: int,
    cid: int,
    budget: float,
    offset: int,
    pool: int,
) -> dict[str, np.ndarray]:
    camp = CAMPAIGNS[cid]
    ports = np.asarray(camp.ports, dtype=np.uint16)
    m = ports.size
    weighted = camp.order == "weighted"
    mean_hosts = _HOSTS_MEDIAN * np.exp(_HOSTS_SIGMA**2 / 2)
    per_source = mean_hosts * (1.0 if weighted else (min(2, m) + m) / 2)
    n_src = max(1, round(budget / per_source))
    n_src = min(n_src, pool)
    chosen = rng.choice(pool, size=n_src, replace=False) + offset
    hosts = np.clip(np.rint(rng.lognormal(np.log(_HOSTS_MEDIAN), _HOSTS_SIGMA, n_src)), 1, params.n_addresses)
    hosts = hosts.astype(np.int64)
    owner_h = np.repeat(np.arange(n_src), hosts)
    h = _segment_positions(hosts)
    dst_h = (params.base + rng.integers(0, params.n_addresses, size=owner_h.size)).astype(np.uint32)
    if weighted:
        # One probe per target, its port drawn by weight (Mirai's 9:1 of 23 and 2323).
        weights = np.asarray(camp.weights, dtype=np.float64)
        port = ports[rng.choice(m, size=owner_h.size, p=weights / weights.sum())]
        owner, dst = owner_h, dst_h
        n_per = hosts
        slot = rng.random(owner.size) * n_per[owner]
    else:
        # Each source probes a random subset (at least two ports) in the campaign's port order.
        n_sel = rng.integers(min(2, m), m + 1, size=n_src)
        rank = np.argsort(np.argsort(rng.random((n_src, m)), axis=1), axis=1)
        selected = rank < n_sel[:, None]
        position = np.cumsum(selected, axis=1) - 1  # the port's place in the source's own list
        owner = np.repeat(owner_h, m)
        col = np.tile(np.arange(m), owner_h.size)
        hh = np.repeat(h, m)
        dst = np.repeat(dst_h, m)
        keep = selected[owner, col]
        owner, col, hh, dst = owner[keep], col[keep], hh[keep], dst[keep]
        port = ports[col]
        n_ports = n_sel[owner]
        n_hosts = hosts[owner]
        j = position[owner, col]
        n_per = hosts * n_sel
        if camp.order == "host":
            slot = (hh * n_ports + j).astype(np.float64)
        elif camp.order == "port":
            slot = (j * n_hosts + hh).astype(np.float64)
        else:
            slot = rng.random(owner.size) * n_per[owner]
    ts = _times(rng, day_us, n_per, owner, slot)
    return {
        C.TS: ts,
        C.SRC: _source_address(chosen[owner]),
        C.DST: dst,
        C.DPORT: port,
        C.CAMPAIGN: np.full(owner.size, cid, dtype=np.int32),
    }


def _vertical(rng: np.random.Generator, params: DarknetParams, day_us: int, budget: float, offset: int):
    # Full vertical scans: a range of 1,000..65,535 ports on one host, 80% in port order.
    full_share = 0.3
    mean_width = full_share * 65_535 + (1 - full_share) * (1_000 + 65_535) / 2
    n_src = max(1, round(budget / mean_width))
    width = np.where(rng.random(n_src) < full_share, 65_535, rng.integers(1_000, 65_535, size=n_src))
    width = width.astype(np.int64)
    first = (1 + (rng.random(n_src) * (65_536 - width))).astype(np.int64)
    owner = np.repeat(np.arange(n_src), width)
    pos = _segment_positions(width)
    port = (first[owner] + pos).astype(np.uint16)
    ordered = rng.random(n_src) < 0.8
    slot = np.where(ordered[owner], pos.astype(np.float64), rng.random(owner.size) * width[owner])
    target = (params.base + rng.integers(0, params.n_addresses, size=n_src)).astype(np.uint32)
    chosen = rng.integers(0, _pool_size(n_src), size=n_src) + offset
    return {
        C.TS: _times(rng, day_us, width, owner, slot),
        C.SRC: _source_address(chosen[owner]),
        C.DST: target[owner],
        C.DPORT: port,
        C.CAMPAIGN: np.full(owner.size, VERTICAL_ID, dtype=np.int32),
    }


def _horizontal(rng: np.random.Generator, params: DarknetParams, day_us: int, budget: float, offset: int):
    # Full horizontal scans: one port across 50..100% of the telescope, in a scattered host order.
    n_addr = params.n_addresses
    n_src = max(1, round(budget / (0.75 * n_addr)))
    cover = (n_addr * rng.uniform(0.5, 1.0, size=n_src)).astype(np.int64)
    favourite = np.asarray(HORIZONTAL_PORTS, dtype=np.uint16)[
        rng.integers(0, len(HORIZONTAL_PORTS), size=n_src)
    ]
    random_port = rng.integers(1, 65_536, size=n_src).astype(np.uint16)
    port = np.where(rng.random(n_src) < HORIZONTAL_RANDOM_SHARE, random_port, favourite)
    owner = np.repeat(np.arange(n_src), cover)
    pos = _segment_positions(cover)
    stride = (2 * rng.integers(0, n_addr // 2, size=n_src) + 1).astype(np.int64)  # odd: a permutation
    phase = rng.integers(0, n_addr, size=n_src)
    dst = (params.base + (pos * stride[owner] + phase[owner]) % n_addr).astype(np.uint32)
    chosen = rng.integers(0, _pool_size(n_src), size=n_src) + offset
    return {
        C.TS: _times(rng, day_us, cover, owner, pos.astype(np.float64)),
        C.SRC: _source_address(chosen[owner]),
        C.DST: dst,
        C.DPORT: port[owner],
        C.CAMPAIGN: np.full(owner.size, HORIZONTAL_ID, dtype=np.int32),
    }


def _noise(rng: np.random.Generator, params: DarknetParams, day_us: int, budget: float, offset: int):
    # One to three probes per source on random ports: half uniform, half among the family ports.
    n_src = max(1, round(budget / 2))
    count = rng.integers(1, 4, size=n_src)
    owner = np.repeat(np.arange(n_src), count)
    known = np.asarray([p for ports in FAMILIES.values() for p in ports], dtype=np.uint16)
    port = np.where(
        rng.random(owner.size) < 0.5,
        rng.integers(1, 65_536, size=owner.size).astype(np.uint16),
        known[rng.integers(0, known.size, size=owner.size)],
    )
    chosen = rng.integers(0, 4 * n_src, size=n_src) + offset
    return {
        C.TS: _times(rng, day_us, count, owner, rng.random(owner.size) * count[owner]),
        C.SRC: _source_address(chosen[owner]),
        C.DST: (params.base + rng.integers(0, params.n_addresses, size=owner.size)).astype(np.uint32),
        C.DPORT: port.astype(np.uint16),
        C.CAMPAIGN: np.full(owner.size, NOISE_ID, dtype=np.int32),
    }


def simulate_day(params: DarknetParams, day: int) -> pd.DataFrame:
    """Every probe the telescope receives on day ``day`` (0-based), in time order.

    Returns
    -------
    pandas.DataFrame
        ``ts int64, src uint32, dst uint32, dport uint16, campaign int32`` (see
        :mod:`gpsgpu.portdist.columns`), sorted by ``ts`` (ties in generation order).
    """
    if not 0 <= day < params.days:
        raise ValueError(f"day {day} is outside 0..{params.days - 1}")
    rng = np.random.default_rng([int(params.seed), int(day), DARKNET_SIM_VERSION])
    day_us = params.day_start_us(day)
    plan = _campaign_plan(params)
    parts = [_tailored(rng, params, day_us, cid, budget, off, pool) for cid, budget, off, pool in plan]
    offset = plan[-1][2] + plan[-1][3]
    budgets = _kind_budgets(params)
    parts.append(_vertical(rng, params, day_us, budgets["vertical"], offset))
    parts.append(_horizontal(rng, params, day_us, budgets["horizontal"], offset + 10_000_000))
    parts.append(_noise(rng, params, day_us, budgets["noise"], offset + 20_000_000))
    frame = {k: np.concatenate([p[k] for p in parts]) for k in (C.TS, C.SRC, C.DST, C.DPORT, C.CAMPAIGN)}
    order = np.argsort(frame[C.TS], kind="stable")
    return pd.DataFrame({k: v[order] for k, v in frame.items()})

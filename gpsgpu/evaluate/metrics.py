"""Coverage metrics against a ground truth: found, normalized, precision, probes, and their curves.

Every method (GPS, a baseline) is described as a sequence of *events* (the seed, a plan row, a chunk
of predictions, a whole port), each with a probe cost. A ground-truth service is found at the first
event that finds it, so one pass gives the whole coverage-vs-probes curve:

- **fraction of services** after event ``e``: services found by then / services in the truth;
- **normalized services** (GPS's metric): the mean over ports ``p`` with a service in the truth of
  (services of ``p`` found) / (services of ``p`` in the truth); each found service adds
  ``1 / (n_ports * n_truth(p))``;
- **precision**: services found by the probes (not already in the seed) per probe.

Everything here is host NumPy: the arrays are one row per ground-truth service or per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gpsgpu import schema

#: Hosts answering on more ports than this are pseudo-service hosts (GPS's definition).
PSEUDO_PORTS = 10


@dataclass(frozen=True)
class Truth:
    """Ground truth prepared for scoring.

    Attributes
    ----------
    keys : uint64[n], ascending
        ``ip << 16 | port`` of every service counted.
    port_counts : int64[65536]
        Services per port.
    n_addresses : int
        Addresses of the simulated Internet (what one exhaustive scan of one port probes).
    n_pseudo_excluded : int
        Services of pseudo-service hosts left out (0 when they are counted).
    """

    keys: np.ndarray
    port_counts: np.ndarray
    n_addresses: int
    n_pseudo_excluded: int = 0

    @property
    def n_services(self) -> int:
        return int(self.keys.size)

    @property
    def n_ports(self) -> int:
        return int((self.port_counts > 0).sum())

    @property
    def ports(self) -> np.ndarray:
        return (self.keys & np.uint64(schema.PORT_MASK)).astype(np.int64)

    @property
    def exhaustive_probes(self) -> int:
        return self.n_addresses * 65536


def make_truth(ip: Any, port: Any, n_addresses: int, *, include_pseudo: bool = False) -> Truth:
    """A :class:`Truth` from service arrays (host or device; any order, duplicates merged).

    Hosts with more than :data:`PSEUDO_PORTS` ports are left out unless ``include_pseudo``.
    """
    from gpsgpu.backend import to_numpy

    keys = np.unique(
        schema.pack_service(np.asarray(to_numpy(ip), np.uint32), np.asarray(to_numpy(port), np.uint16))
    )
    excluded = 0
    if not include_pseudo and keys.size:
        host = keys >> np.uint64(schema.SERVICE_IP_SHIFT)
        first = np.flatnonzero(np.r_[True, host[1:] != host[:-1]])
        counts = np.diff(np.r_[first, host.size])
        real = np.repeat(counts <= PSEUDO_PORTS, counts)
        excluded = int((~real).sum())
        keys = keys[real]
    ports = (keys & np.uint64(schema.PORT_MASK)).astype(np.int64)
    return Truth(keys, np.bincount(ports, minlength=65536).astype(np.int64), int(n_addresses), excluded)


@dataclass(frozen=True)
class Curve:
    """Cumulative probes and finds after each event of a method.

    Attributes
    ----------
    name : str
    probes, found : int64[n_events]
    normalized : float64[n_events]
    total : int
        Services in the truth.
    """

    name: str
    probes: np.ndarray
    found: np.ndarray
    normalized: np.ndarray
    total: int

    @property
    def coverage(self) -> np.ndarray:
        return self.found / max(1, self.total)

    @property
    def final_probes(self) -> int:
        return int(self.probes[-1]) if self.probes.size else 0

    def at(self, budget: float) -> tuple[float, float]:
        """(fraction of services, normalized services) with ``budget`` probes (linear in between)."""
        if self.probes.size == 0:
            return 0.0, 0.0
        return (
            float(np.interp(budget, self.probes, self.coverage)),
            float(np.interp(budget, self.probes, self.normalized)),
        )

    def probes_to_reach(self, coverage: float) -> float | None:
        """Probes needed to find ``coverage`` of the services (None: never reached)."""
        cov = self.coverage
        if cov.size == 0 or cov[-1] < coverage:
            return None
        i = int(np.searchsorted(cov, coverage, side="left"))
        if i == 0:
            return float(self.probes[0])
        # Linear between the event before and the event that reaches it.
        c0, c1 = cov[i - 1], cov[i]
        p0, p1 = self.probes[i - 1], self.probes[i]
        return float(p0 + (p1 - p0) * (coverage - c0) / max(c1 - c0, 1e-300))


def curve_from_events(name: str, truth: Truth, first_event: np.ndarray, event_cost: np.ndarray) -> Curve:
    """The curve of a method from each truth service's first finding event.

    Parameters
    ----------
    first_event : int64[truth.n_services]
        Index of the event that first finds the service, -1 when never found.
    event_cost : int64[n_events]
        Probes of each event, in order.
    """
    n_events = int(event_cost.size)
    found_mask = first_event >= 0
    ev = first_event[found_mask]
    per_event = np.bincount(ev, minlength=n_events)[:n_events]
    weights = 1.0 / (truth.n_ports * truth.port_counts[truth.ports[found_mask]].astype(np.float64))
    per_event_norm = np.bincount(ev, weights=weights, minlength=n_events)[:n_events]
    return Curve(
        name=name,
        probes=np.cumsum(event_cost.astype(np.int64)),
        found=np.cumsum(per_event).astype(np.int64),
        normalized=np.minimum(np.cumsum(per_event_norm), 1.0),
        total=truth.n_services,
    )


def _lookup(sorted_keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``values`` in ``sorted_keys`` and whether each is there."""
    if sorted_keys.size == 0:
        return np.zeros(values.size, np.int64), np.zeros(values.size, bool)
    at = np.minimum(np.searchsorted(sorted_keys, values), sorted_keys.size - 1)
    return at.astype(np.int64), sorted_keys[at] == values


def seed_events(truth: Truth, seed_keys: np.ndarray) -> np.ndarray:
    """Event 0 for truth services in the seed, -1 for the others."""
    _, hit = _lookup(np.unique(seed_keys.astype(np.uint64)), truth.keys)
    return np.where(hit, 0, -1).astype(np.int64)


def row_events(truth: Truth, ports: np.ndarray, networks: np.ndarray, length: int) -> np.ndarray:
    """For each truth service, the index of the first plan row ``(port, network/length)`` that covers it.

    -1 where no row does.
    """
    if ports.size == 0:
        return np.full(truth.n_services, -1, np.int64)
    row_key = (
        schema.prefix_of(np.asarray(networks, np.uint32), length).astype(np.uint64) << np.uint64(16)
    ) | np.asarray(ports, np.uint64)
    order = np.lexsort((np.arange(row_key.size), row_key))
    sorted_key = row_key[order]
    first = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    uniq, uniq_row = sorted_key[first], order[first]  # first row of each distinct key
    ip = (truth.keys >> np.uint64(schema.SERVICE_IP_SHIFT)).astype(np.uint32)
    key = (schema.prefix_of(ip, length).astype(np.uint64) << np.uint64(16)) | truth.ports.astype(np.uint64)
    at, hit = _lookup(uniq, key)
    return np.where(hit, uniq_row[at], -1).astype(np.int64)


def list_events(truth: Truth, keys: np.ndarray, event_of_key: np.ndarray) -> np.ndarray:
    """For each truth service, the event of the first listed target equal to it (-1: not listed)."""
    if keys.size == 0:
        return np.full(truth.n_services, -1, np.int64)
    order = np.lexsort((event_of_key, keys))
    k, e = keys[order], event_of_key[order]
    first = np.r_[True, k[1:] != k[:-1]]
    at, hit = _lookup(k[first], truth.keys)
    return np.where(hit, e[first][at], -1).astype(np.int64)


def earliest(*events: np.ndarray) -> np.ndarray:
    """Element-wise earliest event, -1 meaning never."""
    big = np.iinfo(np.int64).max
    stacked = np.stack([np.where(e < 0, big, e) for e in events])
    best = stacked.min(axis=0)
    return np.where(best == big, -1, best)


def chunk_ids(n: int, n_chunks: int) -> np.ndarray:
    """Split ``n`` ordered items into at most ``n_chunks`` consecutive chunks of near-equal size."""
    if n == 0:
        return np.zeros(0, np.int64)
    n_chunks = max(1, min(n_chunks, n))
    return (np.arange(n, dtype=np.int64) * n_chunks) // n


@dataclass(frozen=True)
class Summary:
    """The end point of a method's curve, with the ratios the GPS paper reports."""

    method: str
    probes: int
    found: int
    fraction: float
    normalized: float
    precision: float
    saving_vs_exhaustive: float
    precision_gain_vs_exhaustive: float

    def as_row(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "probes": self.probes,
            "services_found": self.found,
            "fraction_of_services": round(self.fraction, 6),
            "normalized_services": round(self.normalized, 6),
            "precision": self.precision,
            "bandwidth_saving_vs_exhaustive": round(self.saving_vs_exhaustive, 3),
            "precision_gain_vs_exhaustive": round(self.precision_gain_vs_exhaustive, 3),
        }


def summarize(curve: Curve, truth: Truth, *, at: int | None = None, method: str | None = None) -> Summary:
    """The curve's point at its end (or at ``at`` events), as a :class:`Summary`.

    Precision counts the services found beyond the seed (event 0) per probe.
    """
    i = (curve.probes.size - 1) if at is None else at
    probes = int(curve.probes[i]) if curve.probes.size else 0
    found = int(curve.found[i]) if curve.found.size else 0
    seeded = int(curve.found[0]) if curve.found.size else 0
    precision = (found - seeded) / probes if probes else 0.0
    exhaustive_precision = (truth.n_services - seeded) / truth.exhaustive_probes
    return Summary(
        method=method or curve.name,
        probes=probes,
        found=found,
        fraction=found / max(1, truth.n_services),
        normalized=float(curve.normalized[i]) if curve.normalized.size else 0.0,
        precision=precision,
        saving_vs_exhaustive=truth.exhaustive_probes / probes if probes else float("inf"),
        precision_gain_vs_exhaustive=precision / exhaustive_precision if exhaustive_precision else 0.0,
    )


def dominates(a: Curve, b: Curve) -> tuple[bool, float]:
    """Whether ``a`` finds at least as many services as ``b`` at every budget up to ``a``'s last.

    Both curves are read as piecewise linear; checking every breakpoint of either within range is
    exact. Returns the verdict and the smallest ratio ``a / b`` of services found (>= 1 when it holds).
    """
    if a.probes.size == 0:
        return False, 0.0
    top = a.final_probes
    budgets = np.unique(
        np.concatenate([a.probes[a.probes > 0], b.probes[(b.probes > 0) & (b.probes <= top)]])
    )
    fa = np.interp(budgets, a.probes, a.found.astype(np.float64))
    fb = np.interp(budgets, b.probes, b.found.astype(np.float64))
    ratio = np.where(fb > 0, fa / np.maximum(fb, 1e-300), np.inf)
    worst = float(ratio.min()) if ratio.size else float("inf")
    return bool((fa >= fb - 1e-9).all()), worst

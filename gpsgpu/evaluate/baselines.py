"""The curves of GPS runs and of the exhaustive baselines, as event sequences for :mod:`metrics`.

- **GPS**: the seed (free: it is the input), then the plan rows in plan order (each costs its
  prefix's non-blocklisted addresses), then the predictions in descending score order (one probe
  each), in chunks.
- **Optimal port-order probing** (the GPS paper's tight baseline): the seed, then whole ports in
  descending order of their true service count, each port an exhaustive scan of every address.
- **Exhaustive**: every port of every address (one point).
"""

from __future__ import annotations

import numpy as np

from gpsgpu import schema
from gpsgpu.blocklist import Blocklist
from gpsgpu.evaluate.metrics import (
    Curve,
    Truth,
    chunk_ids,
    curve_from_events,
    earliest,
    list_events,
    row_events,
    seed_events,
)
from gpsgpu.sim.scanner import blocked_in_ranges

#: Curve points given to the predictions of a run (they are probed in this many chunks).
PREDICTION_CHUNKS = 256


def gps_curve(
    truth: Truth,
    seed_keys: np.ndarray,
    plan_ports: np.ndarray,
    plan_networks: np.ndarray,
    step: int,
    pred_ip: np.ndarray,
    pred_port: np.ndarray,
    *,
    blocklist: Blocklist,
    name: str = "GPS",
    chunks: int = PREDICTION_CHUNKS,
) -> Curve:
    """The coverage curve of a GPS run.

    Parameters
    ----------
    seed_keys : uint64, ``ip << 16 | port`` of the seed's services.
    plan_ports, plan_networks : the plan rows in plan order (uint16, uint32 host arrays).
    step : prefix length of the plan rows.
    pred_ip, pred_port : the predictions in probing order (best first).
    blocklist : space never probed (plan rows cost only their allowed addresses; blocklisted
        predictions cost nothing and find nothing).
    """
    size = 1 << (32 - step)
    first = schema.prefix_of(np.asarray(plan_networks, np.uint32), step).astype(np.int64)
    row_cost = size - blocked_in_ranges(blocklist, first, first + size - 1)
    allowed = ~np.asarray(blocklist.contains(np.asarray(pred_ip, np.uint32)))
    pred_ip, pred_port = np.asarray(pred_ip, np.uint32)[allowed], np.asarray(pred_port, np.uint16)[allowed]
    n_rows = int(first.size)
    chunk = chunk_ids(pred_ip.size, chunks)
    n_chunks = int(chunk[-1]) + 1 if chunk.size else 0
    chunk_cost = np.bincount(chunk, minlength=n_chunks).astype(np.int64)
    ev_seed = seed_events(truth, seed_keys)
    ev_rows = row_events(truth, np.asarray(plan_ports), np.asarray(plan_networks), step)
    ev_rows = np.where(ev_rows >= 0, 1 + ev_rows, -1)
    ev_pred = list_events(truth, schema.pack_service(pred_ip, pred_port), 1 + n_rows + chunk)
    cost = np.concatenate([[0], row_cost, chunk_cost]).astype(np.int64)
    return curve_from_events(name, truth, earliest(ev_seed, ev_rows, ev_pred), cost)


def port_order_curve(truth: Truth, seed_keys: np.ndarray, *, name: str = "optimal port order") -> Curve:
    """Exhaustive optimal port-order probing: ports by descending true count (ties: lower port first)."""
    counts = truth.port_counts
    order = np.lexsort((np.arange(counts.size), -counts))
    order = order[counts[order] > 0]
    rank = np.full(counts.size, -1, dtype=np.int64)
    rank[order] = np.arange(order.size)
    ev_port = rank[truth.ports]
    ev_port = np.where(ev_port >= 0, 1 + ev_port, -1)
    cost = np.concatenate([[0], np.full(order.size, truth.n_addresses, dtype=np.int64)])
    return curve_from_events(name, truth, earliest(seed_events(truth, seed_keys), ev_port), cost)


def exhaustive_curve(truth: Truth, *, name: str = "exhaustive") -> Curve:
    """Every port of every address: one event finding everything."""
    return Curve(
        name=name,
        probes=np.array([0, truth.exhaustive_probes], dtype=np.int64),
        found=np.array([0, truth.n_services], dtype=np.int64),
        normalized=np.array([0.0, 1.0 if truth.n_services else 0.0]),
        total=truth.n_services,
    )


def restrict_truth(truth: Truth, ports: np.ndarray) -> Truth:
    """The truth on a subset of ports only."""
    keep = np.isin(truth.ports, np.asarray(ports, dtype=np.int64))
    keys = truth.keys[keep]
    counts = np.zeros(65536, dtype=np.int64)
    p = np.asarray(ports, dtype=np.int64)
    counts[p] = truth.port_counts[p]
    return Truth(keys, counts, truth.n_addresses, truth.n_pseudo_excluded)

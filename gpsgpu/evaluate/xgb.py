"""The XGBoost scanner of Sarabi, Jin and Liu ("Smart Internet Probing", 2021), as a baseline.

One gradient-boosted classifier per port, trained on the seed (where every port of every sampled
address is known) and applied *sequentially*: ports are probed in descending seed popularity, and the
classifier of a port sees, besides network features, which earlier ports were found open on the
address by the earlier (predicted) probes. An address is probed on a port when the classifier's
probability reaches a threshold; sweeping the threshold traces a coverage-vs-probes curve.

Features of an address (network layer; the simulation's ASN is what a routing table would give):
the seed's responsive-host rate and per-port rate in its /16 and in its AS, and one 0/1 column per
earlier port. Training rows use leave-one-out rates (a seed address does not see its own label).

This needs a per-port training set with positives, so it is run on the few most popular ports
only, which is also how the GPS paper compares against it ("the ports where it is feasible"). It is
applied to a random sample of the simulated Internet's addresses and scaled up, so its cost stays
bounded on a laptop; the sample size is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpsgpu import schema
from gpsgpu.evaluate.metrics import Truth
from gpsgpu.sim.internet import SimInternet

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 0.3, 0.15, 0.08, 0.04, 0.02, 0.01)


@dataclass
class XGBResult:
    """Points of the XGBoost scanner's curve on its ports (probes scaled to the whole Internet)."""

    ports: list[int]
    thresholds: list[float]
    probes: list[float] = field(default_factory=list)
    fraction: list[float] = field(default_factory=list)
    normalized: list[float] = field(default_factory=list)
    sample_addresses: int = 0
    seed_addresses: int = 0

    def as_rows(self) -> list[dict[str, Any]]:
        return [
            {"threshold": t, "probes": p, "fraction_of_services": f, "normalized_services": n}
            for t, p, f, n in zip(self.thresholds, self.probes, self.fraction, self.normalized, strict=True)
        ]


def available() -> bool:
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return False
    return True


def _open_matrix(truth: Truth, ips: np.ndarray, ports: list[int]) -> np.ndarray:
    """bool[n, k]: whether each address has a (counted) service on each port."""
    out = np.zeros((ips.size, len(ports)), dtype=bool)
    if truth.keys.size == 0:
        return out
    for j, port in enumerate(ports):
        key = schema.pack_service(ips.astype(np.uint32), np.full(ips.size, port, np.uint16))
        at = np.minimum(np.searchsorted(truth.keys, key), truth.keys.size - 1)
        out[:, j] = truth.keys[at] == key
    return out


def _group_rates(groups: np.ndarray, labels: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: number of seed rows and number of positive rows (label columns summed)."""
    n = np.bincount(groups, minlength=n_groups).astype(np.float64)
    pos = np.stack(
        [np.bincount(groups, weights=labels[:, j], minlength=n_groups) for j in range(labels.shape[1])], 1
    )
    return n, pos


def xgboost_scanner(
    internet: SimInternet,
    truth: Truth,
    *,
    seed_fraction: float,
    ports: list[int],
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
    sample_addresses: int = 400_000,
    random_state: int = 0,
    n_estimators: int = 60,
    max_depth: int = 4,
    n_jobs: int = 2,
) -> XGBResult:
    """Run the sequential per-port XGBoost scanner on ``ports`` against ``truth``."""
    import xgboost

    prefixes = internet.prefixes.astype(np.int64)
    slot = np.full(65536, -1, dtype=np.int64)
    slot[prefixes >> 16] = np.arange(prefixes.size)
    as_of_slot = internet.prefix_as[internet.slot16[prefixes >> 16]]
    n_slots, n_as = prefixes.size, int(internet.n_as)

    # The seed's addresses (responsive or not) and the evaluation sample (outside the seed).
    seed_parts = []
    for ips in internet.iter_universe():
        host = np.asarray(ips) if internet.xp is np else ips.get()
        mask = internet.seed_mask(ips, seed_fraction)
        seed_parts.append(host[np.asarray(mask) if internet.xp is np else mask.get()])
    seed_ips = np.concatenate(seed_parts).astype(np.int64)
    rng = np.random.default_rng(random_state)
    n_sample = int(min(sample_addresses, internet.n_addresses))
    index = np.sort(rng.choice(internet.n_addresses, size=n_sample, replace=False))
    sample_ips = prefixes[index // 65536] + index % 65536
    sample_ips = sample_ips[~np.isin(sample_ips, seed_ips)]
    scale = internet.n_addresses / max(1, sample_ips.size)

    y_seed = _open_matrix(truth, seed_ips, ports)
    y_any_seed = np.isin(
        seed_ips.astype(np.uint64), (truth.keys >> np.uint64(schema.SERVICE_IP_SHIFT)).astype(np.uint64)
    )
    labels = np.column_stack([y_any_seed, y_seed]).astype(np.float64)
    g16_seed = slot[seed_ips >> 16]
    gas_seed = as_of_slot[g16_seed]
    n16, pos16 = _group_rates(g16_seed, labels, n_slots)
    nas, posas = _group_rates(gas_seed, labels, n_as)

    def network_features(g16: np.ndarray, own: np.ndarray | None) -> np.ndarray:
        """Rates per /16 and AS; ``own`` (the rows' labels) is left out for training rows."""
        gas = as_of_slot[g16]
        a16, p16 = n16[g16].copy(), pos16[g16].copy()
        aas, pas = nas[gas].copy(), posas[gas].copy()
        if own is not None:
            a16 -= 1
            aas -= 1
            p16 -= own
            pas -= own
        return np.column_stack([p16 / np.maximum(a16, 1)[:, None], pas / np.maximum(aas, 1)[:, None]])

    x_net_seed = network_features(g16_seed, labels)
    x_net_sample = network_features(slot[sample_ips >> 16], None)
    y_sample = _open_matrix(truth, sample_ips, ports)

    # The native API (xgboost.train), not the scikit-learn wrapper: no scikit-learn dependency.
    params = {
        "objective": "binary:logistic",
        "max_depth": max_depth,
        "eta": 0.2,
        "tree_method": "hist",
        "nthread": n_jobs,
        "seed": random_state,
        "verbosity": 0,
    }
    models = []
    for j in range(len(ports)):
        x = np.column_stack([x_net_seed, y_seed[:, :j].astype(np.float64)])
        if y_seed[:, j].any() and not y_seed[:, j].all():
            dtrain = xgboost.DMatrix(x, label=y_seed[:, j].astype(np.float32))
            models.append(xgboost.train(params, dtrain, num_boost_round=n_estimators))
        else:
            models.append(None)

    result = XGBResult(
        ports=list(ports), thresholds=list(thresholds), sample_addresses=int(sample_ips.size),
        seed_addresses=int(seed_ips.size),
    )  # fmt: skip
    truth_sample = y_sample.sum(axis=0)
    for t in thresholds:
        found = np.zeros_like(y_sample)
        probes = 0
        for j, model in enumerate(models):
            if model is None:
                continue
            x = np.column_stack([x_net_sample, found[:, :j].astype(np.float64)])
            probe = model.inplace_predict(x) >= t
            probes += int(probe.sum())
            found[:, j] = probe & y_sample[:, j]
        n_found = found.sum(axis=0)
        total = max(1, int(truth_sample.sum()))
        valid = truth_sample > 0
        result.probes.append(probes * scale)
        result.fraction.append(float(n_found.sum() / total))
        result.normalized.append(float((n_found[valid] / truth_sample[valid]).mean()) if valid.any() else 0.0)
    return result

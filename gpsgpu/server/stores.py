"""What ``gpsgpu serve`` holds in memory: port2dist windows, a GPS model and a plan, with their queries.

Everything is read once by :func:`load_stores`; the query methods only look things up (NumPy slices
and binary searches), so a request never touches the disk. Nothing here imports FastAPI: the web
layer (:mod:`gpsgpu.server.app`) turns these plain results into responses.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu import schema
from gpsgpu.errors import InputError
from gpsgpu.features.labels import describe_feature
from gpsgpu.io import portdist as dist_io
from gpsgpu.io.model import PATTERNS_FILE, RULES_FILE, read_model_metadata
from gpsgpu.io.parquet import read_table
from gpsgpu.portdist import apsp, graph
from gpsgpu.portdist import columns as C

N_PORTS = 65_536


def _offsets(keys: np.ndarray) -> np.ndarray:
    """``int64[65537]`` start offsets of each port in ``keys`` (uint16, sorted ascending)."""
    return np.searchsorted(keys, np.arange(N_PORTS + 1), side="left").astype(np.int64)


def _distance(value: Any) -> float:
    # The same rounding as `gpsgpu portdist neighbors`, so the API and the CLI print equal numbers.
    return round(float(value), 6)


# --- port distances --------------------------------------------------------------------------------


@dataclass
class DistWindow:
    """One window of one source: its graph and each port's stored nearest ports, in memory.

    ``neighbor``/``distance`` hold the stored neighbour lists sorted by ``(port, rank)``;
    ``offsets[p]:offsets[p + 1]`` is port ``p``'s slice.
    """

    source: str
    window: str
    info: dict[str, Any]
    port_graph: graph.PortGraph
    offsets: np.ndarray
    neighbor: np.ndarray
    distance: np.ndarray

    @classmethod
    def read(cls, dist: Path, source: str, window: str) -> DistWindow:
        """Read ``DIST/<source>/<window>`` (:func:`gpsgpu.io.portdist.read_window`)."""
        stored = dist_io.read_window(dist, source, window)
        ordered = stored.neighbors.sort_values([C.PORT, C.RANK], kind="stable")
        return cls(
            source=source,
            window=window,
            info=stored.info,
            port_graph=graph.port_graph(stored.edges),
            offsets=_offsets(ordered[C.PORT].to_numpy(np.uint16)),
            neighbor=ordered[C.NEIGHBOR].to_numpy(np.uint16),
            distance=ordered[C.DISTANCE].to_numpy(np.float32),
        )

    @property
    def store_k(self) -> int:
        return int(self.info.get("store_k", 0))

    def observed(self, port: int) -> bool:
        return self.port_graph.index_of(port) >= 0

    def nearest(self, port: int, k: int) -> list[tuple[int, float]]:
        """``port``'s ``k`` nearest ports ``(port, distance)``, nearest first (computed when ``k`` exceeds
        what was stored, as ``gpsgpu portdist neighbors`` does)."""
        if k <= self.store_k:
            lo, hi = int(self.offsets[port]), int(self.offsets[port + 1])
            hi = min(hi, lo + k)
            return [
                (n, _distance(d))
                for n, d in zip(self.neighbor[lo:hi].tolist(), self.distance[lo:hi].tolist(), strict=True)
            ]
        table = apsp.neighbors_on_demand(self.port_graph, port, k).sort_values(C.RANK).head(k)
        return [(int(n), _distance(d)) for n, d in zip(table[C.NEIGHBOR], table[C.DISTANCE], strict=True)]

    def pair(self, a: int, b: int) -> float | None:
        """The distance between ``a`` and ``b`` (None when either is unobserved or they are unreachable)."""
        lo, hi = int(self.offsets[a]), int(self.offsets[a + 1])
        hit = np.flatnonzero(self.neighbor[lo:hi] == b)
        if hit.size:
            return _distance(self.distance[lo + int(hit[0])])
        value = apsp.pair_distance(self.port_graph, a, b)
        return None if value is None else _distance(value)

    def iter_csv(self, k: int | None = None) -> Iterator[bytes]:
        """The whole window as CSV ``a,b,distance`` (every reachable pair, or each port's ``k`` nearest),
        block by block."""
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        yield b"a,b,distance\n"
        for block in apsp.iter_pair_distances(self.port_graph, k=k):
            sink = io.BytesIO()
            table = pa.Table.from_pandas(block, preserve_index=False).cast(_pair_schema())
            pa_csv.write_csv(table, sink, write_options=pa_csv.WriteOptions(include_header=False))
            yield sink.getvalue()

    def iter_parquet(self, k: int | None = None) -> Iterator[bytes]:
        """The same rows as :meth:`iter_csv` as one Parquet file (zstd), a row group per block."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = _Drain()
        writer = pq.ParquetWriter(sink, _pair_schema(), compression="zstd")
        for block in apsp.iter_pair_distances(self.port_graph, k=k):
            writer.write_table(pa.Table.from_pandas(block, preserve_index=False).cast(_pair_schema()))
            yield sink.take()
        writer.close()
        yield sink.take()


def _pair_schema() -> Any:
    """``a uint16, b uint16, distance float32`` (built on use: pyarrow loads only for downloads)."""
    import pyarrow as pa

    return pa.schema([(C.A, pa.uint16()), (C.B, pa.uint16()), (C.DISTANCE, pa.float32())])


class _Drain(io.RawIOBase):
    """A write-only sink that hands its bytes out as they come, yet reports the total position
    (the Parquet writer records offsets with ``tell``)."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


# --- GPS model -------------------------------------------------------------------------------------


def _feature(feature: Any) -> dict[str, str]:
    """A feature string and what it is in words (:func:`gpsgpu.features.labels.describe_feature`)."""
    described = describe_feature(str(feature))
    return {"feature": str(feature), "kind": described.kind, "label": described.label}


@dataclass
class ModelStore:
    """A GPS model folder in memory: each port's predictors, the rules and co-location counts.

    ``predictors`` are the patterns' best predictors grouped by ``(neededP, p, server)``:
    ``neededP, p, server, hitrate, count_p2, cp_server, n_services`` sorted by port then strongest
    first; ``rules`` are ``neededP, p, fkey, score, server`` sorted the same way.
    """

    path: str
    metadata: dict[str, Any]
    predictors: pd.DataFrame
    predictor_offsets: np.ndarray
    unpredicted: np.ndarray  # int64[65536]: seed services of each port with no predictor
    rules: pd.DataFrame
    rule_offsets: np.ndarray
    pair_keys: np.ndarray | None = None  # uint64 ``p1 << 16 | p2``, sorted; pair_n: hosts with both
    pair_n: np.ndarray | None = None
    host_n: np.ndarray | None = None  # int64[65536]: hosts with each port
    counts_from: str | None = None

    @classmethod
    def read(cls, model: Path) -> ModelStore:
        """Read and check ``MODEL/`` (``gpsgpu learn``); co-location counts come from the model's
        ``count_p2``/``cp_server`` when saved, else from its seed (as ``portdist build --from-model``)."""
        model = Path(model)
        metadata = read_model_metadata(model)
        for name in (PATTERNS_FILE, RULES_FILE):
            if not (model / name).is_file():
                raise InputError(f"{model}: incomplete model, {name} is missing; run 'gpsgpu learn' again")
        patterns = read_table(model / PATTERNS_FILE).to_pandas()
        known = patterns[schema.P].notna()
        unpredicted = np.bincount(
            patterns.loc[~known, schema.NEEDED_P].to_numpy(np.int64), minlength=N_PORTS
        ).astype(np.int64)
        grouped = (
            patterns[known]
            .assign(**{schema.SERVER: patterns.loc[known, schema.SERVER].fillna("")})
            .groupby([schema.NEEDED_P, schema.P, schema.SERVER], sort=False)
            .agg(
                hitrate=(schema.HITRATE, "max"),
                count_p2=(schema.COUNT_P2, "max"),
                cp_server=(schema.CP_SERVER, "max"),
                n_services=(schema.IP, "size"),
            )
            .reset_index()
        )
        grouped = grouped.astype(
            {
                schema.NEEDED_P: np.uint16,
                schema.P: np.int64,
                schema.COUNT_P2: np.int64,
                "n_services": np.int64,
            }
        )
        grouped[schema.CP_SERVER] = grouped[schema.CP_SERVER].fillna(0).astype(np.int64)
        grouped = grouped.sort_values(
            [schema.NEEDED_P, schema.HITRATE, schema.COUNT_P2, schema.P, schema.SERVER],
            ascending=[True, False, False, True, True],
            kind="stable",
        ).reset_index(drop=True)
        rules = read_table(model / RULES_FILE).to_pandas()
        if schema.SERVER not in rules:
            rules[schema.SERVER] = ""
        rules = rules.sort_values(
            [schema.NEEDED_P, schema.SCORE, schema.P, schema.FKEY],
            ascending=[True, False, True, True],
            kind="stable",
        ).reset_index(drop=True)
        store = cls(
            path=str(model),
            metadata=metadata,
            predictors=grouped,
            predictor_offsets=_offsets(grouped[schema.NEEDED_P].to_numpy(np.uint16)),
            unpredicted=unpredicted,
            rules=rules,
            rule_offsets=_offsets(rules[schema.NEEDED_P].to_numpy(np.uint16)),
        )
        try:
            pairs, hosts, description = dist_io.read_model_colocation(model)
        except InputError:
            return store
        keys = (pairs[C.A].to_numpy(np.uint64) << np.uint64(16)) | pairs[C.B].to_numpy(np.uint64)
        order = np.argsort(keys, kind="stable")
        store.pair_keys = keys[order]
        store.pair_n = pairs[C.N].to_numpy(np.int64)[order]
        store.host_n = np.zeros(N_PORTS, np.int64)
        store.host_n[hosts[C.PORT].to_numpy(np.int64)] = hosts[C.N].to_numpy(np.int64)
        store.counts_from = str(description.get("from"))
        return store

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.metadata.get("params") or self.metadata.get("config") or {})

    def port_predictors(self, port: int, limit: int) -> tuple[list[dict[str, Any]], int, int]:
        """``(rows, n_predictors, n_unpredicted)``: ``port``'s ``limit`` strongest predictors."""
        lo, hi = int(self.predictor_offsets[port]), int(self.predictor_offsets[port + 1])
        part = self.predictors.iloc[lo : min(hi, lo + limit)]
        rows = [
            {
                "port": int(p),
                **_feature(f),
                "hitrate": float(h),
                "count_p2": int(c2),
                "cp_server": int(cs),
                "n_services": int(n),
            }
            for p, f, h, c2, cs, n in zip(
                part[schema.P],
                part[schema.SERVER],
                part[schema.HITRATE],
                part[schema.COUNT_P2],
                part[schema.CP_SERVER],
                part["n_services"],
                strict=True,
            )
        ]
        return rows, hi - lo, int(self.unpredicted[port])

    def port_rules(self, port: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """``(rows, n_rules)``: the ``limit`` best-scored rules that predict ``port``."""
        lo, hi = int(self.rule_offsets[port]), int(self.rule_offsets[port + 1])
        part = self.rules.iloc[lo : min(hi, lo + limit)]
        rows = [
            {"port": int(p), **_feature(f), "fkey": str(int(k)), "score": float(s)}
            for p, f, k, s in zip(
                part[schema.P], part[schema.SERVER], part[schema.FKEY], part[schema.SCORE], strict=True
            )
        ]
        return rows, hi - lo

    def conditional(self, a: int, b: int) -> tuple[int, int] | None:
        """``(hosts with both a and b, hosts with b)``, or None when the model kept no counts."""
        if self.pair_keys is None or self.pair_n is None or self.host_n is None:
            return None
        n_b = int(self.host_n[b])
        if a == b:
            return n_b, n_b
        key = np.uint64(b) << np.uint64(16) | np.uint64(a)
        i = int(np.searchsorted(self.pair_keys, key))
        both = int(self.pair_n[i]) if i < self.pair_keys.size and self.pair_keys[i] == key else 0
        return both, n_b


# --- plan ------------------------------------------------------------------------------------------


@dataclass
class PlanStore:
    """A ``PLAN/`` folder's priors scan in memory: its rows in plan order and the budget per port."""

    path: str
    step: int
    ports: np.ndarray  # uint16, plan order
    prefixes: np.ndarray  # uint32
    order: np.ndarray = field(repr=False)  # row positions sorted by (port, position)
    offsets: np.ndarray = field(repr=False)
    budget: list[dict[str, Any]] = field(repr=False)

    @classmethod
    def read(cls, plan: Path) -> PlanStore:
        from gpsgpu.pipelines.simulate import read_plan_rows

        ports, prefixes, step = read_plan_rows(plan)
        order = np.argsort(ports, kind="stable")
        offsets = _offsets(ports[order])
        per_row = 1 << (32 - step)
        total = max(ports.size, 1) * per_row
        counts = np.diff(offsets)
        firsts = {int(p): i for i, p in reversed(list(enumerate(ports.tolist())))}
        budget = [
            {
                "port": port,
                "rows": int(counts[port]),
                "probes": int(counts[port]) * per_row,
                "share": int(counts[port]) * per_row / total,
                "first_row": first,
            }
            for port, first in sorted(firsts.items(), key=lambda item: item[1])
        ]
        return cls(str(plan), step, ports, prefixes, order, offsets, budget)

    @property
    def probes_per_row(self) -> int:
        return 1 << (32 - self.step)

    def port_rows(self, port: int, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """``(rows, n_rows)``: ``port``'s plan rows ``offset .. offset + limit`` as ``row`` (position in
        the plan) and ``cidr``."""
        lo, hi = int(self.offsets[port]), int(self.offsets[port + 1])
        picked = self.order[lo + offset : min(hi, lo + offset + limit)] if offset < hi - lo else []
        picked = np.asarray(picked, dtype=np.int64)
        cidrs = schema.ip_to_str(self.prefixes[picked]).tolist() if picked.size else []
        return [
            {"row": int(i), "cidr": f"{c}/{self.step}"} for i, c in zip(picked.tolist(), cidrs, strict=True)
        ], hi - lo


# --- all of it -------------------------------------------------------------------------------------


@dataclass
class Stores:
    """Everything one server answers from."""

    windows: dict[tuple[str, str], DistWindow] = field(default_factory=dict)
    model: ModelStore | None = None
    plan: PlanStore | None = None


def load_stores(
    *, dists: Sequence[str | Path] = (), model: str | Path | None = None, plan: str | Path | None = None
) -> Stores:
    """Read every window of each ``DIST/`` (the first store wins a window found twice), the ``MODEL/``
    and the ``PLAN/``; raises :class:`~gpsgpu.errors.InputError` on anything unreadable."""
    stores = Stores()
    for dist in dists:
        dist = Path(dist)
        dist_io.check_dist(dist)
        found = dist_io.list_windows(dist)
        if not found:
            raise InputError(f"{dist}: no windows built yet (run 'gpsgpu portdist build')")
        for source, window in found:
            if (source, window) not in stores.windows:
                stores.windows[(source, window)] = DistWindow.read(dist, source, window)
    if model is not None:
        stores.model = ModelStore.read(_not_a_demo(Path(model), "model"))
    if plan is not None:
        stores.plan = PlanStore.read(_not_a_demo(Path(plan), "plan"))
    return stores


def _not_a_demo(folder: Path, part: str) -> Path:
    """``folder``, unless it is a ``gpsgpu demo`` output (which holds ``model/`` and the compatible
    campaign, whose first step is a plan): then an :class:`~gpsgpu.errors.InputError` naming the
    subfolder to give instead."""
    inside = {"model": folder / "model", "plan": folder / "campaign" / "steps" / "001"}
    if not (folder / "metadata.json").is_file() and (inside[part] / "metadata.json").is_file():
        raise InputError(
            f"{folder} is a 'gpsgpu demo' folder, not a {part}: give --{part} {inside[part]}"
            f" (the demo writes the model {inside['model']} and the plan {inside['plan']})"
        )
    return folder

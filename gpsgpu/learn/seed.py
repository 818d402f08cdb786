"""Indexing one partition of the seed for pair counting: the host CSR and its feature rows.

A :class:`SeedPartition` holds the services of one partition's hosts with 2..10 ports ("slots",
sorted by ``(ip, port)``), the features of those services (``row_slot``, ``row_fid``), the
single-port services (which become patterns rows as they are) and the partition's counts of
services and hosts. It is built once and used by both counting passes of :mod:`gpsgpu.learn.counts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from gpsgpu import schema
from gpsgpu.errors import InputError
from gpsgpu.features import DEFAULT_PRESET, feature_arrays_of_table, feature_columns
from gpsgpu.ops import cpu

#: Hosts answering on more ports than this are pseudo services (GPS_REFERENCE §3).
MAX_HOST_PORTS = 10
MIN_HOST_PORTS = 2


@dataclass
class SeedPartition:
    """One partition of the seed, indexed by host.

    Attributes
    ----------
    slot_ip : uint32[n_slots]
    slot_port : uint16[n_slots]
        Services of hosts with 2..10 distinct ports, sorted by ``(number of ports of the host, ip,
        port)``: a host's slots are contiguous and sorted by port.
    slot_first, slot_count : int64[n_slots]
        Index of the first slot of the slot's host, and the host's number of ports.
    row_slot : int64[n_rows]
    row_fid : uint32[n_rows]
        Feature rows, distinct ``(slot, fid)``.
    fkeys : uint64[n_features]
        Key of every local fid.
    strings : pyarrow.LargeStringArray
        Canonical string of every local fid.
    single_ip, single_port : uint32 / uint16 arrays
        Services of hosts with exactly one port.
    services : uint64 array
        Every distinct service of the partition, ``ip << 16 | port``, sorted (hosts of any size).
    counts : dict
        ``n_rows`` (input rows), ``n_services`` (distinct ``(ip, port)``), ``n_hosts``,
        ``n_hosts_single``, ``n_hosts_counted`` (2..10 ports), ``n_hosts_over`` (> 10 ports).
    row_gid : uint32[n_rows]
        Global feature ids, set by :func:`gpsgpu.learn.counts.assign_global_ids` (which also
        reorders the rows and empties ``row_fid``).
    """

    slot_ip: np.ndarray
    slot_port: np.ndarray
    slot_first: np.ndarray
    slot_count: np.ndarray
    row_slot: np.ndarray
    row_fid: np.ndarray
    fkeys: np.ndarray
    strings: pa.Array
    single_ip: np.ndarray
    single_port: np.ndarray
    services: np.ndarray
    counts: dict[str, int]
    row_gid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))


def index_seed(services: Any, /, *, use_asn: bool = True, preset: str = DEFAULT_PRESET) -> SeedPartition:
    """Index a services frame (one partition, whole hosts) for counting.

    Parameters
    ----------
    services : frame
        ``ip uint32, port uint16, asn uint32, protocol str, window int32, banner str``
        (+ the optional columns the preset reads, e.g. ``tls_cert str``); repeated ``(ip, port)``
        rows are merged.
    use_asn : bool
        Whether ASN features are part of the data (``--no-asn`` turns them off).
    preset : str
        Feature preset (:data:`gpsgpu.features.PRESETS`).
    """
    table = schema.frame_to_arrow(services[feature_columns(services.columns, preset)])
    ip = np.asarray(table[schema.IP]).astype(np.uint32, copy=False)
    port = np.asarray(table[schema.PORT]).astype(np.uint16, copy=False)
    n_rows = int(ip.size)

    service, inverse = cpu.unique_inverse(schema.pack_service(ip, port))
    s_ip, s_port = schema.unpack_service(service)
    host_start = np.flatnonzero(np.concatenate(([True], s_ip[1:] != s_ip[:-1]))) if service.size else service
    host_size = np.diff(np.append(host_start, service.size)).astype(np.int64)
    count = np.repeat(host_size, host_size)
    counted = (count >= MIN_HOST_PORTS) & (count <= MAX_HOST_PORTS)
    single = count == 1

    # Slots: the counted services ordered by (host's port count, ip, port), so hosts stay contiguous
    # and feature rows sorted by slot are also in the pair kernels' block order (by port count).
    counted_services = np.flatnonzero(counted)
    by_count = counted_services[np.argsort(count[counted_services].astype(np.uint8), kind="stable")]
    slot_of_service = np.full(service.size, -1, dtype=np.int64)
    slot_of_service[by_count] = np.arange(by_count.size, dtype=np.int64)
    slot_ip, slot_port, slot_count = s_ip[by_count], s_port[by_count], count[by_count]
    new_host = np.concatenate(([True], slot_ip[1:] != slot_ip[:-1])) if slot_ip.size else np.zeros(0, bool)
    slot_first = np.maximum.accumulate(np.where(new_host, np.arange(slot_ip.size), 0)).astype(np.int64)

    rows = np.flatnonzero(counted[inverse])
    features = feature_arrays_of_table(table.take(pa.array(rows)), use_asn=use_asn, preset=preset)
    if features.n_features and not _unique(features.fkeys):
        raise InputError("two different feature strings have the same XXH64 key; cannot learn exactly")
    row_slot = slot_of_service[inverse[rows]][features.row]
    row_fid = features.fid
    if rows.size > slot_ip.size:
        # Repeated (ip, port) rows: their features are the union, each (slot, fid) once. (Rows of
        # one input row are distinct already.)
        pair = cpu.unique_sorted((row_slot.astype(np.uint64) << np.uint64(32)) | row_fid.astype(np.uint64))
        row_slot = (pair >> np.uint64(32)).astype(np.int64)
        row_fid = (pair & np.uint64(0xFFFFFFFF)).astype(np.uint32)

    n_hosts = int(host_start.size)
    return SeedPartition(
        slot_ip=slot_ip,
        slot_port=slot_port,
        slot_first=slot_first,
        slot_count=slot_count,
        row_slot=row_slot.astype(np.int64, copy=False),
        row_fid=row_fid,
        fkeys=features.fkeys,
        strings=features.strings,
        single_ip=s_ip[single],
        single_port=s_port[single],
        services=service,
        counts={
            "n_rows": n_rows,
            "n_services": int(service.size),
            "n_hosts": n_hosts,
            "n_hosts_single": int((host_size == 1).sum()),
            "n_hosts_counted": int(((host_size >= MIN_HOST_PORTS) & (host_size <= MAX_HOST_PORTS)).sum()),
            "n_hosts_over": int((host_size > MAX_HOST_PORTS).sum()),
            "n_feature_rows": int(row_slot.size),
        },
    )


def _unique(keys: np.ndarray) -> bool:
    import pandas as pd

    return bool(pd.Index(keys).is_unique)

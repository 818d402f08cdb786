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

from gpsgpu import schema
from gpsgpu.backend import backend_of
from gpsgpu.errors import InputError
from gpsgpu.features import DEFAULT_PRESET, feature_arrays_of_table, feature_columns
from gpsgpu.ops import ops_for

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
    strings : string array
        Canonical string of every local fid (Arrow on the host, a cuDF Series on the device; every
        array here is NumPy or CuPy alike).
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
    strings: Any
    single_ip: np.ndarray
    single_port: np.ndarray
    services: np.ndarray
    counts: dict[str, int]
    row_gid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))


def index_seed(services: Any, /, *, use_asn: bool = True, preset: str = DEFAULT_PRESET) -> SeedPartition:
    """Index a services frame (one partition, whole hosts) for counting, on its backend.

    Parameters
    ----------
    services : frame
        ``ip uint32, port uint16, asn uint32, protocol str, window int32, banner str``
        (+ the optional columns the preset reads, e.g. ``tls_cert str``); repeated ``(ip, port)``
        rows are merged. pandas (host arrays) or cuDF (every array of the partition on the device).
    use_asn : bool
        Whether ASN features are part of the data (``--no-asn`` turns them off).
    preset : str
        Feature preset (:data:`gpsgpu.features.PRESETS`).
    """
    ops = ops_for(backend_of(services))
    xp = ops.namespace()
    table = ops.table_of(services, feature_columns(services.columns, preset))
    ip = ops.table_column(table, schema.IP, np.uint32)
    port = ops.table_column(table, schema.PORT, np.uint16)
    n_rows = int(ip.size)

    service, inverse = ops.unique_inverse(schema.pack_service(ip, port))
    s_ip, s_port = schema.unpack_service(service)
    if service.size:
        new_host = xp.concatenate((xp.ones(1, dtype=bool), s_ip[1:] != s_ip[:-1]))
        host_start = xp.flatnonzero(new_host)
    else:
        host_start = xp.zeros(0, dtype=xp.int64)
    host_size = xp.diff(xp.append(host_start, service.size)).astype(xp.int64)
    count = ops.repeat(host_size, host_size)
    counted = (count >= MIN_HOST_PORTS) & (count <= MAX_HOST_PORTS)
    single = count == 1

    # Slots: the counted services ordered by (host's port count, ip, port), so hosts stay contiguous
    # and feature rows sorted by slot are also in the pair kernels' block order (by port count).
    counted_services = xp.flatnonzero(counted)
    by_count = counted_services[ops.argsort_stable(count[counted_services].astype(xp.uint8))]
    slot_of_service = xp.full(service.size, -1, dtype=xp.int64)
    slot_of_service[by_count] = xp.arange(by_count.size, dtype=xp.int64)
    slot_ip, slot_port, slot_count = s_ip[by_count], s_port[by_count], count[by_count]
    slot_first = xp.zeros(slot_ip.size, dtype=xp.int64)
    if slot_ip.size:
        # Each slot points at the first slot of its host: hosts are contiguous runs of slots.
        slot_host = xp.flatnonzero(xp.concatenate((xp.ones(1, dtype=bool), slot_ip[1:] != slot_ip[:-1])))
        slot_first = ops.repeat(slot_host, xp.diff(xp.append(slot_host, slot_ip.size)))

    rows = xp.flatnonzero(counted[inverse])
    features = feature_arrays_of_table(ops.table_take(table, rows), use_asn=use_asn, preset=preset)
    if features.n_features and not ops.all_distinct(features.fkeys):
        raise InputError("two different feature strings have the same XXH64 key; cannot learn exactly")
    row_slot = slot_of_service[inverse[rows]][features.row]
    row_fid = features.fid
    if rows.size > slot_ip.size:
        # Repeated (ip, port) rows: their features are the union, each (slot, fid) once. (Rows of
        # one input row are distinct already.)
        pair = ops.unique_sorted((row_slot.astype(xp.uint64) << xp.uint64(32)) | row_fid.astype(xp.uint64))
        row_slot = (pair >> xp.uint64(32)).astype(xp.int64)
        row_fid = (pair & xp.uint64(0xFFFFFFFF)).astype(xp.uint32)

    return SeedPartition(
        slot_ip=slot_ip,
        slot_port=slot_port,
        slot_first=slot_first,
        slot_count=slot_count,
        row_slot=row_slot.astype(xp.int64, copy=False),
        row_fid=row_fid,
        fkeys=features.fkeys,
        strings=features.strings,
        single_ip=s_ip[single],
        single_port=s_port[single],
        services=service,
        counts={
            "n_rows": n_rows,
            "n_services": int(service.size),
            "n_hosts": int(host_start.size),
            "n_hosts_single": int((host_size == 1).sum()),
            "n_hosts_counted": int(((host_size >= MIN_HOST_PORTS) & (host_size <= MAX_HOST_PORTS)).sum()),
            "n_hosts_over": int((host_size > MAX_HOST_PORTS).sum()),
            "n_feature_rows": int(row_slot.size),
        },
    )

"""Indexing one partition of the seed for pair counting: the host CSR and its feature rows.

A :class:`SeedPartition` holds the services of one partition's learned hosts ("slots", sorted by
``(ip, port)``), the features of those services (``row_slot``, ``row_fid``), the single-port
services (which become patterns rows as they are, and whose features count toward a rule's support
when asked) and the partition's counts of services and hosts. It is built once and used by every
counting pass of :mod:`gpsgpu.learn.counts`.

Learned hosts have 2..``max_host_ports`` distinct ports. GPS learns from hosts of at most 10 ports
(more are pseudo services); with a larger ``max_host_ports`` a host of more than 10 ports is learned
from only when it is *real*: at least half of its ports answer with distinct ``(protocol, banner)``
(pseudo-service hosts, tarpits and middleboxes answer the same bytes everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpsgpu import schema
from gpsgpu.backend import backend_of
from gpsgpu.errors import InputError
from gpsgpu.features import DEFAULT_PRESET, feature_arrays_of_table, feature_columns
from gpsgpu.features.gps2022 import unique_row_features
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
    row_slot : int32[n_rows] (int64 when slots or feature rows pass 2**31)
    row_fid : uint32[n_rows]
        Feature rows, distinct ``(slot, fid)``.
    fkeys : uint64[n_features]
        Key of every local fid.
    strings : FeatureStrings
        Canonical string of every local fid (Arrow on the host, cuDF on the device, the crosses
        built when taken; every array here is NumPy or CuPy alike).
    single_ip, single_port : uint32 / uint16 arrays
        Services of hosts with exactly one port.
    services : uint64 array
        Every distinct service of the partition, ``ip << 16 | port``, sorted (hosts of any size).
    counts : dict
        ``n_rows`` (input rows), ``n_services`` (distinct ``(ip, port)``), ``n_hosts``,
        ``n_hosts_single``, ``n_hosts_counted`` (2..10 ports), ``n_hosts_over`` (> 10 ports).
    row_gid : uint32[n_rows]
        Global feature ids, set by :func:`gpsgpu.learn.counts.set_global_ids` (which also
        reorders the rows and empties ``row_fid``).
    single_row_port, single_row_fid : uint16 / uint32 arrays
        Feature rows of the single-port services, distinct ``(service, fid)`` (empty unless
        :func:`index_seed` was asked for them: they count toward supports only).
    single_row_gid : uint32 array
        Their global ids (set with ``row_gid``).
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
    single_row_port: Any = None
    single_row_fid: Any = None
    single_row_gid: Any = None


def index_seed(
    services: Any,
    /,
    *,
    use_asn: bool = True,
    preset: str = DEFAULT_PRESET,
    max_host_ports: int = MAX_HOST_PORTS,
    single_features: bool = False,
) -> SeedPartition:
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
    max_host_ports : int
        Largest learned host (10: GPS; more: real hosts of up to that many ports too).
    single_features : bool
        Also featurize the single-port services (for supports).
    """
    ops = ops_for(backend_of(services))
    xp = ops.namespace()
    table = ops.table_of(services, feature_columns(services.columns, preset))
    ip = ops.table_column(table, schema.IP, np.uint32)
    port = ops.table_column(table, schema.PORT, np.uint16)
    n_rows = int(ip.size)

    service, inverse, s_ip, s_port, host_start, host_size, count = _hosts(ops, ip, port)
    counted = (count >= MIN_HOST_PORTS) & (count <= MAX_HOST_PORTS)
    if max_host_ports > MAX_HOST_PORTS:
        counted |= _real_big_services(ops, table, ip, inverse, s_ip, count, max_host_ports)
    single = count == 1

    # Slots: the counted services ordered by (host's port count, ip, port), so hosts stay contiguous
    # and feature rows sorted by slot are also in the pair kernels' block order (by port count).
    counted_services = xp.flatnonzero(counted)
    by_count = counted_services[ops.argsort_stable(count[counted_services].astype(xp.uint16))]
    slot_of_service = xp.full(service.size, -1, dtype=xp.int64)
    slot_of_service[by_count] = xp.arange(by_count.size, dtype=xp.int64)
    slot_ip, slot_port, slot_count = s_ip[by_count], s_port[by_count], count[by_count]
    slot_first = xp.zeros(slot_ip.size, dtype=xp.int64)
    if slot_ip.size:
        # Each slot points at the first slot of its host: hosts are contiguous runs of slots.
        slot_host = xp.flatnonzero(xp.concatenate((xp.ones(1, dtype=bool), slot_ip[1:] != slot_ip[:-1])))
        slot_first = ops.repeat(slot_host, xp.diff(xp.append(slot_host, slot_ip.size)))

    featured = (counted | single) if single_features else counted
    rows = xp.flatnonzero(featured[inverse])
    features = feature_arrays_of_table(table, use_asn=use_asn, preset=preset, rows=rows)
    if features.n_features and not ops.all_distinct(features.fkeys):
        raise InputError("two different feature strings have the same XXH64 key; cannot learn exactly")
    fkeys, strings, row_fid = features.fkeys, features.strings, features.fid
    # Gathered through the (few) featurized rows and written over the feature rows' own index, so
    # no second array per feature row is made; the slot is -1 exactly where the service is not
    # counted (a single-port service's, with single_features).
    row_service = inverse[rows]
    slot_of_row = slot_of_service[row_service].astype(features.row.dtype, copy=False)
    single_row_port = single_row_fid = None
    if single_features:
        on_single = xp.flatnonzero((slot_of_row < 0)[features.row])
        single_service, single_row_fid = row_service[features.row[on_single]], row_fid[on_single]
        del on_single
    row_slot = ops.take_over(slot_of_row, features.row)
    del features, row_service, slot_of_row
    if single_features:
        on_slot = row_slot >= 0
        row_slot, row_fid = compact(xp, row_slot, on_slot), compact(xp, row_fid, on_slot)
        del on_slot
    # Repeated (ip, port) rows: their features are the union, each (service, fid) once. (Rows of
    # one input row are distinct already.)
    if rows.size > int(featured.sum()):
        row_slot, row_fid = unique_row_features(row_slot, row_fid)
        if single_features:
            single_service, single_row_fid = unique_row_features(single_service, single_row_fid)
    if single_features:
        single_row_port = s_port[single_service]
        del single_service
    ops.release_memory()  # the features step's freed temporaries leave the resident set
    big = host_size > MAX_HOST_PORTS
    return SeedPartition(
        slot_ip=slot_ip,
        slot_port=slot_port,
        slot_first=slot_first,
        slot_count=slot_count,
        row_slot=row_slot,
        row_fid=row_fid.astype(xp.uint32, copy=False),
        fkeys=fkeys,
        strings=strings,
        single_ip=s_ip[single],
        single_port=s_port[single],
        services=service,
        counts={
            "n_rows": n_rows,
            "n_services": int(service.size),
            "n_hosts": int(host_start.size),
            "n_hosts_single": int((host_size == 1).sum()),
            "n_hosts_counted": int(counted[host_start].sum()) if host_start.size else 0,
            "n_hosts_counted_over_10": int((big & counted[host_start]).sum()) if host_start.size else 0,
            "n_hosts_over": int((big & ~counted[host_start]).sum()) if host_start.size else 0,
            "n_feature_rows": int(row_slot.size),
        },
        single_row_port=single_row_port,
        single_row_fid=single_row_fid,
    )


def compact(xp: Any, values: Any, keep: Any) -> Any:
    """``values[keep]``, written over the front of ``values`` a block at a time (a block is read
    before anything is written over it): no second array of that size is made. The result is a
    view of ``values``'s memory."""
    at = 0
    for start in range(0, int(values.size), _COMPACT_BLOCK):
        kept = values[start : start + _COMPACT_BLOCK][keep[start : start + _COMPACT_BLOCK]]
        values[at : at + kept.size] = kept
        at += int(kept.size)
    return values[:at]


#: Elements moved at once by :func:`compact`.
_COMPACT_BLOCK = 1 << 20


def real_rows(services: Any, /, *, max_host_ports: int = MAX_HOST_PORTS) -> Any:
    """Which rows of a services frame belong to a real host (bool per row, NumPy or CuPy): one of
    at most 10 ports, or of 11..``max_host_ports`` ports answering with distinct ``(protocol,
    banner)`` on at least half of them (the hosts :func:`index_seed` learns from, with one port
    or more).

    Parameters
    ----------
    services : frame
        ``ip uint32, port uint16, protocol str, banner str`` (pandas or cuDF).
    """
    ops = ops_for(backend_of(services))
    table = ops.table_of(services, [schema.IP, schema.PORT, schema.PROTOCOL, schema.BANNER])
    ip = ops.table_column(table, schema.IP, np.uint32)
    port = ops.table_column(table, schema.PORT, np.uint16)
    _, inverse, s_ip, _, _, _, count = _hosts(ops, ip, port)
    real = count <= MAX_HOST_PORTS
    if max_host_ports > MAX_HOST_PORTS:
        real |= _real_big_services(ops, table, ip, inverse, s_ip, count, max_host_ports)
    return real[inverse]


def _hosts(ops: Any, ip: Any, port: Any) -> tuple[Any, ...]:
    """The distinct services of rows and their hosts: ``service`` (sorted ``ip << 16 | port``),
    ``inverse`` (each row's service), ``s_ip``, ``s_port``, ``host_start`` (each host's first
    service), ``host_size`` (its ports) and ``count`` (the ports of each service's host)."""
    xp = ops.namespace()
    service, inverse = ops.unique_inverse(schema.pack_service(ip, port))
    s_ip, s_port = schema.unpack_service(service)
    if service.size:
        host_start = xp.flatnonzero(xp.concatenate((xp.ones(1, dtype=bool), s_ip[1:] != s_ip[:-1])))
    else:
        host_start = xp.zeros(0, dtype=xp.int64)
    host_size = xp.diff(xp.append(host_start, service.size)).astype(xp.int64)
    return service, inverse, s_ip, s_port, host_start, host_size, ops.repeat(host_size, host_size)


def _real_big_services(
    ops: Any, table: Any, ip: Any, inverse: Any, s_ip: Any, count: Any, max_host_ports: int
) -> Any:
    """Services of hosts with 11..``max_host_ports`` ports that answer with distinct ``(protocol,
    banner)`` on at least half of their ports (bool per distinct service)."""
    xp = ops.namespace()
    big = (count > MAX_HOST_PORTS) & (count <= max_host_ports)
    rows = xp.flatnonzero(big[inverse])
    if rows.size == 0:
        return big
    answer = ops.text_join(
        ops.text_take(ops.table_text(table, schema.PROTOCOL), rows),
        "\x00",
        ops.text_take(ops.table_text(table, schema.BANNER), rows),
    )
    answer_code, _ = ops.factorize(ops.xxh64_strings(answer, schema.FKEY_SEED))
    distinct = ops.unique_sorted(
        (ip[rows].astype(xp.uint64) << xp.uint64(32)) | answer_code.astype(xp.uint64)
    )
    host, _, n_answers = ops.runs((distinct >> xp.uint64(32)).astype(xp.uint32))
    at = xp.searchsorted(s_ip, host)  # a host's first service (services are sorted by ip)
    varied = host[2 * n_answers >= count[at]]
    return big & ops.sorted_isin(s_ip, varied)

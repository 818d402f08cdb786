"""Stages on the services table (pandas or cuDF, the same code): merging duplicates, ASN annotation."""

from __future__ import annotations

from typing import Any

from gpsgpu import schema
from gpsgpu.asn import AsnTable
from gpsgpu.backend import backend_of, values_of

_ORDER = "__row__"


def _is_empty(series: Any) -> Any:
    """Null, or the column's "unknown" value: 0 for numbers (asn, window), "" for text."""
    # fillna: cuDF compares a null to a value as null (pandas as False), and null | False is null.
    if series.dtype.kind in "iuf":
        return series.isna() | (series == 0).fillna(False)
    return series.isna() | (series == "").fillna(False)


def merge_duplicate_services(services: Any, /, *, order: Any = None) -> Any:
    """One row per ``(ip, port)``, sorted by ``(ip, port)``.

    Rows that repeat an ``(ip, port)`` are merged column by column: each column takes the first
    non-empty value in input order (empty: null, ``""``, or 0 for numbers such as ``asn`` and
    ``window``), so a record that adds a banner or an ASN to an earlier one is not lost.

    Parameters
    ----------
    services : DataFrame
        A services table (``ip uint32, port uint16, ...``; see :mod:`gpsgpu.schema`).
    order : array, optional
        The input position of each row (unique integers; NumPy or CuPy like the frame). Defaults
        to the row order of ``services``.
    """
    xp = backend_of(services).xp
    n = len(services)
    if n == 0:
        return services.reset_index(drop=True)
    key = (values_of(services[schema.IP]).astype(xp.uint64) << xp.uint64(16)) | values_of(
        services[schema.PORT]
    ).astype(xp.uint64)
    # Both sort keys as uint64: stacking int64 with uint64 would promote them to float64.
    order = xp.arange(n, dtype=xp.uint64) if order is None else xp.asarray(order).astype(xp.uint64)
    permutation = xp.lexsort(xp.stack([order, key]))
    sorted_key = key[permutation]
    first = xp.ones(n, dtype=bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    frame = services.iloc[permutation].reset_index(drop=True)
    if bool(first.all()):
        return frame
    group = xp.cumsum(first) - 1
    repeated = xp.bincount(group)[group] > 1
    # Each output row gathers each column from one input row: its group's first row, or the
    # first non-empty one of a repeated group. A gather works for every dtype on pandas and cuDF
    # (assigning a cuDF string column's ``.values`` does not exist).
    first_rows = xp.flatnonzero(first)
    columns = {schema.IP: frame[schema.IP].iloc[first_rows], schema.PORT: frame[schema.PORT].iloc[first_rows]}
    rows = xp.flatnonzero(repeated)
    groups = group[rows]
    for column in frame.columns:
        if column in (schema.IP, schema.PORT):
            continue
        # Within each repeated group, rank non-empty values first, then by input order: the first wins.
        empty = values_of(_is_empty(frame[column].iloc[rows])).astype(xp.int8)
        ranked = xp.lexsort(xp.stack([rows, empty, groups]))
        winner = xp.ones(ranked.size, dtype=bool)
        winner[1:] = groups[ranked][1:] != groups[ranked][:-1]
        take = first_rows.copy()
        take[groups[ranked[winner]]] = rows[ranked[winner]]
        columns[column] = frame[column].iloc[take]
    xdf = backend_of(services).xdf
    merged = xdf.DataFrame({name: columns[name].reset_index(drop=True) for name in frame.columns})
    return merged


def annotate_asn(services: Any, /, *, table: AsnTable) -> tuple[Any, int]:
    """Fill ``asn`` where it is 0 (unknown) from a routing table; returns the frame and how many
    rows gained an ASN."""
    xp = backend_of(services).xp
    asn = values_of(services[schema.ASN])
    unknown = asn == 0
    if not bool(unknown.any()):
        return services, 0
    found = table.lookup(values_of(services[schema.IP]))
    filled = xp.where(unknown, found, asn).astype(xp.uint32)
    out = services.copy()
    out[schema.ASN] = filled
    return out, int((unknown & (found != 0)).sum())

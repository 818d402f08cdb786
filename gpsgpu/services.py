"""Stages on the services table (pandas or cuDF, the same code): merging duplicates, ASN annotation."""

from __future__ import annotations

from typing import Any

from gpsgpu import schema
from gpsgpu.asn import AsnTable
from gpsgpu.backend import backend_of, values_of

_ORDER = "__row__"


def _is_empty(series: Any) -> Any:
    """Null, or the column's "unknown" value: 0 for numbers (asn, window), "" for text."""
    if series.dtype.kind in "iuf":
        return series.isna() | (series == 0)
    return series.isna() | (series == "")


def merge_duplicate_services(services: Any, /) -> Any:
    """One row per ``(ip, port)``, sorted by ``(ip, port)``.

    Rows that repeat an ``(ip, port)`` are merged column by column: each column takes the first
    non-empty value in input order (empty: null, ``""``, or 0 for ``asn``/``window``), so a record
    that adds a banner or an ASN to an earlier one is not lost.

    Parameters
    ----------
    services : DataFrame
        A services table (``ip uint32, port uint16, ...``; see :mod:`gpsgpu.schema`).
    """
    frame = services.reset_index(drop=True)
    frame[_ORDER] = backend_of(frame).xp.arange(len(frame), dtype="int64")
    frame = frame.sort_values([schema.IP, schema.PORT, _ORDER]).reset_index(drop=True)
    duplicated = frame.duplicated([schema.IP, schema.PORT], keep=False)
    if not bool(duplicated.any()):
        return frame.drop(columns=[_ORDER])
    unique = frame[~duplicated]
    repeated = frame[duplicated].reset_index(drop=True)
    keys = [schema.IP, schema.PORT]
    merged = repeated.drop_duplicates(keys, keep="first")[keys].reset_index(drop=True)
    for column in frame.columns:
        if column in keys or column == _ORDER:
            continue
        # Per column: sort each group's non-empty values first (then by input order), take the first.
        ranked = repeated[[*keys, column, _ORDER]].copy()
        ranked["__empty__"] = _is_empty(ranked[column]).astype("int8")
        ranked = ranked.sort_values([*keys, "__empty__", _ORDER]).drop_duplicates(keys, keep="first")
        merged[column] = ranked[column].reset_index(drop=True)
    merged[_ORDER] = repeated.drop_duplicates(keys, keep="first")[_ORDER].reset_index(drop=True)
    combined = backend_of(frame).xdf.concat([unique, merged[list(frame.columns)]], ignore_index=True)
    combined = combined.sort_values([schema.IP, schema.PORT]).reset_index(drop=True)
    return combined.drop(columns=[_ORDER])


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

"""Stages on the services table, on every backend: duplicate merging and ASN annotation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from gpsgpu import schema
from gpsgpu.asn import AsnTable
from gpsgpu.backend import Backend, to_backend
from gpsgpu.services import annotate_asn, merge_duplicate_services


def services(backend: Backend, rows: list[tuple]) -> object:
    table = pa.table(
        {
            "ip": pa.array([r[0] for r in rows], pa.uint32()),
            "port": pa.array([r[1] for r in rows], pa.uint16()),
            "asn": pa.array([r[2] for r in rows], pa.uint32()),
            "protocol": pa.array([r[3] for r in rows], pa.string()),
            "window": pa.array([r[4] for r in rows], pa.int32()),
            "banner": pa.array([r[5] for r in rows], pa.string()),
            "http_status": pa.array([r[6] for r in rows], pa.int16()),
            "tls_org": pa.array([r[7] for r in rows], pa.string()),
        }
    )
    return schema.services_from_arrow(table, backend.xdf)


def host(frame: object) -> object:
    return to_backend(frame, Backend.CPU)


def test_merge_first_non_empty_per_column(backend: Backend) -> None:
    rows = [
        (9, 80, 0, "http", 0, "", None, None),
        (1, 22, 5, "ssh", 100, "SSH-2.0", None, None),
        (9, 80, 7, "", 512, "late banner", 200, None),
        (9, 80, 8, "http", 1024, "later banner", 404, "Org"),
        (1, 21, 5, "ftp", 100, "220", None, None),
    ]
    merged = host(merge_duplicate_services(services(backend, rows)))
    assert merged[["ip", "port"]].values.tolist() == [[1, 21], [1, 22], [9, 80]]
    last = merged.iloc[2]
    assert (last.asn, last.protocol, last.window, last.banner, last.http_status, last.tls_org) == (
        7,
        "http",
        512,
        "late banner",
        200,
        "Org",
    )


def test_merge_respects_given_input_order(backend: Backend) -> None:
    rows = [(1, 1, 0, "a", 1, "second", None, None), (1, 1, 0, "b", 1, "first", None, None)]
    order = backend.xp.asarray(np.array([2, 1], dtype=np.uint64))
    merged = host(merge_duplicate_services(services(backend, rows), order=order))
    assert merged.banner.tolist() == ["first"] and merged.protocol.tolist() == ["b"]


def test_merge_without_duplicates_only_sorts(backend: Backend) -> None:
    rows = [
        (3, 1, 1, "x", 1, "c", None, None),
        (2, 9, 1, "x", 1, "b", None, None),
        (2, 1, 1, "x", 1, "a", None, None),
    ]
    merged = host(merge_duplicate_services(services(backend, rows)))
    assert merged.banner.tolist() == ["a", "b", "c"]
    assert host(merge_duplicate_services(services(backend, []))).empty


def test_annotate_asn_fills_only_unknown(backend: Backend) -> None:
    table = AsnTable.from_lines(["1.0.0.0/8\t100", "2.0.0.0/8\t200"])
    rows = [
        (0x01000001, 80, 0, "", 0, "", None, None),
        (0x02000001, 80, 7, "", 0, "", None, None),
        (0x03000001, 80, 0, "", 0, "", None, None),
    ]
    annotated, n = annotate_asn(services(backend, rows), table=table)
    assert host(annotated).asn.tolist() == [100, 7, 0] and n == 1

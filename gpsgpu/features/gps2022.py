"""Feature preset ``gps2022``: the features of GPS's published queries (``GPS_REFERENCE.md`` §2).

Each service gets canonical strings; a string's key is ``XXH64(utf8(string), seed 0)``:

- data features ``D``: ``http line: <L>`` for every piece of the banner split on ``"\\n"`` (a
  ``"\\r"`` stays, a trailing ``"\\n"`` gives an empty last line, an empty banner one empty line,
  exactly like BigQuery's ``SPLIT``), ``fingerprint: <protocol>``, ``window: <window>``,
  ``ssh banner: <banner>`` (protocol ``ssh``), ``tls cert: <hex>`` and ``tls oid: <piece>`` for each
  piece of that hex split on ``"30"`` longer than 7 characters (protocol ``tls``; the ``tls_cert``
  column when present and not null, else the banner, see :mod:`gpsgpu.features.tls`);
- network features: ``s16: <x>`` .. ``s22: <x>`` (8-digit lower-case hex of the prefix), ``L4``,
  ``asn: <asn>``;
- crosses of every data feature: ``16:<D>-<x16>`` and ``asn:<D>-asn: <asn>``.

ASN 0 means "unknown" in the services table (AS 0 never originates routes, RFC 7607), so a service
with ASN 0 has no ``asn: `` feature and no ASN crosses: unknown-ASN hosts share no AS.

The strings are built column-wise with Arrow compute and hashed once per distinct string; every
kind of feature gets its dense ids from distinct values that map 1:1 to distinct strings (the kinds'
prefixes differ), so no step compares long strings row by row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gpsgpu import schema
from gpsgpu.backend import Backend, backend_of
from gpsgpu.errors import InputError
from gpsgpu.features.tls import certificate_hex
from gpsgpu.ops import cpu

PRESET = "gps2022"

#: Prefix lengths of the ``sNN`` network features.
PREFIX_LENGTHS: tuple[int, ...] = (16, 17, 18, 19, 20, 21, 22)
#: Cut the certificate hex on this to get the ``tls oid`` pieces, keeping those longer than 7.
TLS_OID_SEPARATOR = "30"
TLS_OID_MIN_LENGTH = 8
L4_FEATURE = "L4"
#: Rows featurized per chunk (and thread): chunks bound the memory of the intermediate string
#: arrays on large inputs; below this size one pass is faster than chunks plus their merge.
DEFAULT_CHUNK_ROWS = 1 << 22


@dataclass(frozen=True)
class FeatureArrays:
    """Features of the rows of a services table, as host arrays.

    Attributes
    ----------
    row : int64[n]
        Index of the input row each feature belongs to; ``(row, fid)`` pairs are distinct.
    fid : uint32[n]
        Dense feature id, local to this object.
    strings : pyarrow.LargeStringArray
        The canonical string of every fid.
    fkeys : uint64[n_features]
        ``XXH64(utf8(string), 0)`` of every fid.
    """

    row: np.ndarray
    fid: np.ndarray
    strings: pa.Array
    fkeys: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.fkeys.size)


@dataclass(frozen=True)
class FeatureTable:
    """The features stage's output: a long table and its dictionary.

    Attributes
    ----------
    long : frame
        ``ip uint32, port uint16, fid uint32, fkey uint64``; one row per distinct ``(ip, port, fid)``.
    dictionary : frame
        ``fid uint32, fkey uint64, feature string``; one row per feature.
    """

    long: Any
    dictionary: Any


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLE_SHIFTS = np.arange(28, -1, -4, dtype=np.uint32)


def _hex8(values: np.ndarray) -> pa.Array:
    """8-digit lower-case hex of uint32 values (large_string), built as one byte buffer."""
    values = np.asarray(values).astype(np.uint32, copy=False)
    chars = _HEX_DIGITS[(values[:, None] >> _NIBBLE_SHIFTS[None, :]) & np.uint32(0xF)]
    offsets = np.arange(0, 8 * values.size + 1, 8, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(
        values.size, pa.py_buffer(offsets.tobytes()), pa.py_buffer(np.ascontiguousarray(chars).tobytes())
    )


def _decimal(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.large_string())


def _prepend(prefix: str, strings: pa.Array) -> pa.Array:
    return _join(prefix, strings)


def _join(*parts: str | pa.Array) -> pa.Array:
    """Concatenate strings and string arrays element-wise (all as large_string)."""
    typed = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else _as_large(p) for p in parts]
    return pc.binary_join_element_wise(*typed, pa.scalar("", pa.large_string()))


def _as_large(strings: Any) -> pa.Array:
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    return strings.cast(pa.large_string()) if strings.type != pa.large_string() else strings


def _factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes (int64) and distinct values in order of first appearance (hash based, O(n))."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64), keys
    codes, uniques = pd.factorize(keys, sort=False)
    return codes.astype(np.int64, copy=False), np.asarray(uniques)


def _tls_hex(protocol: pa.Array, banner: pa.Array, tls_cert: pa.Array | None) -> tuple[np.ndarray, pa.Array]:
    """Rows of protocol ``tls`` that have a certificate, and its hex (large_string) per such row."""
    is_tls = np.asarray(pc.fill_null(pc.equal(protocol, "tls"), False))
    rows = np.flatnonzero(is_tls)
    if rows.size == 0:
        return rows, pa.array([], type=pa.large_string())
    given = tls_cert.take(pa.array(rows)) if tls_cert is not None else pa.nulls(rows.size, pa.large_string())
    given = _as_large(given)
    missing = np.flatnonzero(~np.asarray(given.is_valid()))
    hexes = given
    if missing.size:
        # Parse each distinct banner once: devices of one vendor share their certificate.
        banners = _as_large(banner.take(pa.array(rows[missing])))
        encoded = banners.dictionary_encode()
        parsed = pa.array(
            [certificate_hex(b) for b in encoded.dictionary.to_pylist()], type=pa.large_string()
        ).take(encoded.indices)
        filled = np.asarray(given.to_pylist(), dtype=object)
        filled[missing] = np.asarray(parsed.to_pylist(), dtype=object)
        hexes = pa.array(filled, type=pa.large_string())
    keep = np.asarray(hexes.is_valid())
    return rows[keep], hexes.filter(pa.array(keep))


def feature_arrays(
    ip: np.ndarray,
    protocol: pa.Array,
    window: np.ndarray,
    banner: pa.Array,
    asn: np.ndarray,
    tls_cert: pa.Array | None = None,
    *,
    use_asn: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
) -> FeatureArrays:
    """The ``gps2022`` features of every row (array level; :func:`extract_features` wraps it).

    Rows are cut into chunks of ``chunk_rows``, featurized on up to ``workers`` threads (Arrow and
    NumPy release the GIL) and merged by key, each merged key's strings compared to be sure.

    Parameters
    ----------
    ip : uint32[n]
    protocol, banner : pyarrow string arrays of length n
    window : int32[n]
    asn : uint32[n]
    tls_cert : pyarrow string array of length n, optional
        Leaf certificate DER as lower-case hex (null: parse the banner).
    use_asn : bool
        Whether to emit ``asn: <asn>`` and the ASN crosses.
    chunk_rows : int
        Rows per chunk.
    workers : int, optional
        Threads (default: every core).
    """
    n = int(ip.size)
    if n <= chunk_rows:
        return _chunk_features(ip, protocol, window, banner, asn, tls_cert, use_asn=use_asn)
    starts = list(range(0, n, chunk_rows))

    def one(start: int) -> FeatureArrays:
        stop = min(start + chunk_rows, n)
        return _chunk_features(
            ip[start:stop],
            protocol.slice(start, stop - start),
            window[start:stop],
            banner.slice(start, stop - start),
            asn[start:stop],
            tls_cert.slice(start, stop - start) if tls_cert is not None else None,
            use_asn=use_asn,
        )

    return map_chunks(one, starts, workers)


def map_chunks(one: Callable[[int], FeatureArrays], starts: list[int], workers: int | None) -> FeatureArrays:
    """``one(start)`` for each chunk start, on up to ``workers`` threads (Arrow compute and the
    hashing release the GIL), merged in chunk order."""
    workers = workers or os.cpu_count() or 1
    if workers > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
            chunks = list(pool.map(one, starts))
    else:
        chunks = [one(start) for start in starts]
    return _merge_chunks(chunks, starts)


def _merge_chunks(chunks: list[FeatureArrays], starts: list[int]) -> FeatureArrays:
    """One dictionary for the chunks' features, merged by key (and checked string by string)."""
    keys = np.concatenate([c.fkeys for c in chunks])
    codes, uniques = pd.factorize(keys, sort=False)
    codes = codes.astype(np.int64, copy=False)
    first = np.empty(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)  # reversed writes leave first occurrences
    every = _as_large(pa.chunked_array([c.strings for c in chunks], type=pa.large_string()))
    if not pc.all(pc.equal(every, every.take(pa.array(first[codes])))).as_py():
        raise InputError("two different feature strings have the same XXH64 key; cannot proceed exactly")
    offsets = np.cumsum([0] + [c.n_features for c in chunks])
    return FeatureArrays(
        row=np.concatenate([c.row + start for c, start in zip(chunks, starts, strict=True)]),
        fid=np.concatenate(
            [codes[off:][c.fid] for c, off in zip(chunks, offsets[:-1].tolist(), strict=True)]
        ).astype(np.uint32),
        strings=every.take(pa.array(first)),
        fkeys=np.asarray(uniques, dtype=np.uint64),
    )


def _chunk_features(
    ip: np.ndarray,
    protocol: pa.Array,
    window: np.ndarray,
    banner: pa.Array,
    asn: np.ndarray,
    tls_cert: pa.Array | None,
    *,
    use_asn: bool,
) -> FeatureArrays:
    """:func:`feature_arrays` of one chunk of rows."""
    n = int(ip.size)
    ip = np.asarray(ip, dtype=np.uint32)
    asn = np.asarray(asn, dtype=np.uint32)
    protocol, banner = _as_large(protocol), _as_large(banner)
    all_rows = np.arange(n, dtype=np.int64)

    # --- data features: one Arrow array of strings with the row each came from -----------------
    data_strings: list[pa.Array] = []
    data_rows: list[np.ndarray] = []
    lines = pc.split_pattern(banner, "\n")
    data_strings.append(_prepend("http line: ", pc.list_flatten(lines)))
    data_rows.append(np.asarray(pc.list_parent_indices(lines)).astype(np.int64))
    data_strings.append(_prepend("fingerprint: ", protocol))
    data_rows.append(all_rows)
    data_strings.append(_prepend("window: ", _decimal(np.asarray(window, dtype=np.int32))))
    data_rows.append(all_rows)
    ssh_rows = np.flatnonzero(np.asarray(pc.fill_null(pc.equal(protocol, "ssh"), False)))
    data_strings.append(_prepend("ssh banner: ", banner.take(pa.array(ssh_rows))))
    data_rows.append(ssh_rows)
    tls_rows, tls_hex = _tls_hex(protocol, banner, tls_cert)
    data_strings.append(_prepend("tls cert: ", tls_hex))
    data_rows.append(tls_rows)
    pieces = pc.split_pattern(tls_hex, TLS_OID_SEPARATOR)
    flat_pieces = pc.list_flatten(pieces)
    long_enough = np.asarray(pc.greater_equal(pc.utf8_length(flat_pieces), TLS_OID_MIN_LENGTH))
    data_strings.append(_prepend("tls oid: ", flat_pieces.filter(pa.array(long_enough))))
    data_rows.append(tls_rows[np.asarray(pc.list_parent_indices(pieces))[long_enough]])

    encoded = _as_large(pa.chunked_array(data_strings, type=pa.large_string())).dictionary_encode()
    d_strings = _as_large(encoded.dictionary)
    d_code = np.asarray(encoded.indices).astype(np.int64)
    d_row = np.concatenate(data_rows)
    # A banner may repeat a line and a certificate a piece: keep each (row, feature) once.
    d_row, d_code = unique_row_features(d_row, d_code)
    kinds: list[pa.Array] = [d_strings]
    rows: list[np.ndarray] = [d_row]
    codes: list[np.ndarray] = [d_code]
    cross_features(kinds, rows, codes, d_row, d_code, d_strings, ip, asn, use_asn=use_asn)
    known_asn = asn != 0

    # --- network features --------------------------------------------------------------------------
    prefix_features(kinds, rows, codes, ip, PREFIX_LENGTHS)
    kinds.append(pa.array([L4_FEATURE] if n else [], type=pa.large_string()))
    rows.append(all_rows)
    codes.append(np.zeros(n, dtype=np.int64))
    if use_asn:
        asn_rows = np.flatnonzero(known_asn)
        code, unique = _factorize(asn[asn_rows])
        kinds.append(_prepend("asn: ", _decimal(unique.astype(np.uint32))))
        rows.append(asn_rows)
        codes.append(code)

    return assemble_features(kinds, rows, codes)


def unique_row_features(d_row: np.ndarray, d_code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(row, feature code)`` pairs kept once each, sorted by row then code."""
    if not d_row.size:
        return d_row, d_code
    pair = cpu.unique_sorted((d_row.astype(np.uint64) << np.uint64(32)) | d_code.astype(np.uint64))
    return (pair >> np.uint64(32)).astype(np.int64), (pair & np.uint64(0xFFFFFFFF)).astype(np.int64)


def cross_features(
    kinds: list[pa.Array],
    rows: list[np.ndarray],
    codes: list[np.ndarray],
    d_row: np.ndarray,
    d_code: np.ndarray,
    d_strings: pa.Array,
    ip: np.ndarray,
    asn: np.ndarray,
    *,
    use_asn: bool,
) -> None:
    """Append each data feature crossed with its row's /16 (``16:<f>-<hex8>``) and, with
    ``use_asn``, its known ASN (``asn:<f>-asn: <n>``) to ``kinds``/``rows``/``codes``."""
    empty = pa.array([], pa.large_string())
    x16 = (ip >> np.uint32(16)).astype(np.uint64)
    c16_code, c16_unique = _factorize((d_code.astype(np.uint64) << np.uint64(16)) | x16[d_row])
    c16_d = (c16_unique >> np.uint64(16)).astype(np.int64)
    c16_hex = _hex8((c16_unique & np.uint64(0xFFFF)) << np.uint64(16))
    kinds.append(_join("16:", d_strings.take(pa.array(c16_d)), "-", c16_hex) if c16_d.size else empty)
    rows.append(d_row)
    codes.append(c16_code)
    if not use_asn:
        return
    with_asn = (asn != 0)[d_row]
    ca_row = d_row[with_asn]
    ca_code, ca_unique = _factorize((d_code[with_asn].astype(np.uint64) << np.uint64(32)) | asn[ca_row])
    ca_d = (ca_unique >> np.uint64(32)).astype(np.int64)
    ca_asn = _decimal((ca_unique & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    kinds.append(_join("asn:", d_strings.take(pa.array(ca_d)), "-asn: ", ca_asn) if ca_d.size else empty)
    rows.append(ca_row)
    codes.append(ca_code)


def prefix_features(
    kinds: list[pa.Array], rows: list[np.ndarray], codes: list[np.ndarray], ip: np.ndarray, lengths: Any
) -> None:
    """Append the ``sNN: <hex8>`` network feature of every row for each prefix length."""
    all_rows = np.arange(ip.size, dtype=np.int64)
    for length in lengths:
        code, unique = _factorize(schema.prefix_of(ip, length))
        kinds.append(_prepend(f"s{length}: ", _hex8(unique)))
        rows.append(all_rows)
        codes.append(code)


def assemble_features(
    kinds: list[pa.Array], rows: list[np.ndarray], codes: list[np.ndarray]
) -> FeatureArrays:
    """One :class:`FeatureArrays` from per-kind dictionaries, each kind's codes offset past the last's."""
    offsets = np.cumsum([0] + [len(k) for k in kinds])
    strings = _as_large(pa.chunked_array([_as_large(k) for k in kinds], type=pa.large_string()))
    fid = np.concatenate([c + off for c, off in zip(codes, offsets[:-1].tolist(), strict=True)])
    return FeatureArrays(
        row=np.concatenate(rows),
        fid=fid.astype(np.uint32),
        strings=strings,
        fkeys=cpu.xxh64_strings(strings, schema.FKEY_SEED),
    )


def feature_arrays_of_table(
    table: pa.Table, *, use_asn: bool = True, chunk_rows: int = DEFAULT_CHUNK_ROWS, workers: int | None = None
) -> FeatureArrays:
    """:func:`feature_arrays` of an Arrow services table (``ip, protocol, window, banner, asn``
    and optionally ``tls_cert``)."""
    has_cert = "tls_cert" in table.column_names
    return feature_arrays(
        np.asarray(table[schema.IP]).astype(np.uint32, copy=False),
        table[schema.PROTOCOL].combine_chunks(),
        np.asarray(table[schema.WINDOW]).astype(np.int32, copy=False),
        table[schema.BANNER].combine_chunks(),
        np.asarray(table[schema.ASN]).astype(np.uint32, copy=False),
        table["tls_cert"].combine_chunks() if has_cert else None,
        use_asn=use_asn,
        chunk_rows=chunk_rows,
        workers=workers,
    )


def feature_arrays_of_frame(services: Any, *, use_asn: bool = True) -> FeatureArrays:
    """:func:`feature_arrays` of a services frame (pandas or cuDF; strings are built on the host)."""
    columns = [schema.IP, schema.PROTOCOL, schema.WINDOW, schema.BANNER, schema.ASN]
    has_cert = "tls_cert" in services.columns
    table = schema.frame_to_arrow(services[columns + (["tls_cert"] if has_cert else [])])
    return feature_arrays_of_table(table, use_asn=use_asn)


def extract_features(services: Any, /, *, use_asn: bool = True) -> FeatureTable:
    """The ``gps2022`` features of a services frame: long table plus dictionary.

    Parameters
    ----------
    services : frame
        ``ip uint32, port uint16, asn uint32, protocol str, window int32, banner str`` and
        optionally ``tls_cert str``. Rows repeating an ``(ip, port)`` are merged (union of features).
    use_asn : bool
        Emit the ``asn`` feature and the ASN crosses.

    Returns
    -------
    FeatureTable
        On the backend of ``services``.
    """
    return feature_table(services, feature_arrays_of_frame(services, use_asn=use_asn))


def feature_table(services: Any, arrays: FeatureArrays) -> FeatureTable:
    """The :class:`FeatureTable` of the features ``arrays`` of the rows of ``services``.

    Parameters
    ----------
    services : frame
        ``ip uint32, port uint16`` (pandas or cuDF); the output is on its backend.
    arrays : FeatureArrays
        Features of its rows (of any preset).
    """
    table = schema.frame_to_arrow(services[[schema.IP, schema.PORT]])
    ip = np.asarray(table[schema.IP]).astype(np.uint32)[arrays.row]
    port = np.asarray(table[schema.PORT]).astype(np.uint16)[arrays.row]
    # Merge repeated services: one row per distinct (ip, port, fid).
    service = schema.pack_service(ip, port)
    order = np.lexsort((arrays.fid, service))
    service, fid = service[order], arrays.fid[order]
    keep = np.ones(service.size, dtype=bool)
    keep[1:] = (service[1:] != service[:-1]) | (fid[1:] != fid[:-1])
    service, fid = service[keep], fid[keep]
    ip, port = schema.unpack_service(service)
    long = pd.DataFrame(
        {schema.IP: ip, schema.PORT: port, schema.FID: fid, schema.FKEY: arrays.fkeys[fid]}, copy=False
    )
    dictionary = pa.table(
        {
            schema.FID: pa.array(np.arange(arrays.n_features, dtype=np.uint32)),
            schema.FKEY: pa.array(arrays.fkeys),
            schema.FEATURE: arrays.strings.cast(pa.string()),
        }
    ).to_pandas()
    if backend_of(services) is Backend.GPU:
        from gpsgpu.backend import to_backend

        return FeatureTable(to_backend(long, Backend.GPU), to_backend(dictionary, Backend.GPU))
    return FeatureTable(long, dictionary)

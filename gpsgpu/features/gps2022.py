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

The strings are built column-wise (Arrow compute on the host, cuDF on the device, through
:mod:`gpsgpu.ops`) from distinct values only: banners, protocols and certificates are encoded
first, lines and pieces are cut from the distinct ones, and rows carry integer codes. Every kind of
feature gets its dense ids from distinct values that map 1:1 to distinct strings (the kinds'
prefixes differ), and each distinct string is hashed once, so no step compares long strings row by
row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gpsgpu import schema
from gpsgpu.backend import Backend, backend_of
from gpsgpu.errors import InputError
from gpsgpu.features.strings import BLOCK as STRINGS_BLOCK
from gpsgpu.features.strings import ComposedStrings, FeatureStrings
from gpsgpu.features.tls import certificate_hex
from gpsgpu.ops import cpu, ops_for

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
    row : int32[n] (int64 past 2**31 rows)
        Index of the input row each feature belongs to; ``(row, fid)`` pairs are distinct.
    fid : uint32[n]
        Dense feature id, local to this object.
    strings : FeatureStrings
        The canonical string of every fid (crosses built only when taken).
    fkeys : uint64[n_features]
        ``XXH64(utf8(string), 0)`` of every fid.
    """

    row: np.ndarray
    fid: np.ndarray
    strings: FeatureStrings
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


def _hex8(values: np.ndarray) -> pa.Array:
    """8-digit lower-case hex of uint32 values (large_string)."""
    return cpu.text_hex8(values)


def _prepend(prefix: str, strings: pa.Array) -> pa.Array:
    return cpu.text_join(prefix, strings)


def _join(*parts: str | pa.Array) -> pa.Array:
    """Concatenate strings and string arrays element-wise (all as large_string)."""
    return cpu.text_join(*parts)


def _as_large(strings: Any) -> pa.Array:
    return cpu.text(strings)


def row_dtype(xp: ModuleType, n_rows: int) -> Any:
    """The dtype of row numbers below ``n_rows``: int32 while they fit (the feature rows are most
    of the features step's memory), else int64. Codes of a kind are uint32 (fid's dtype)."""
    return xp.int32 if n_rows < 1 << 31 else xp.int64


#: Banners parsed for a certificate per block (:func:`_tls_hex`).
_PARSE_BLOCK = 1 << 12


def _tls_hex(
    ops: ModuleType,
    tls_rows: Any,
    banner_code: Any,
    banners: Any,
    tls_cert: Any | None,
    cert_rows: Any,
) -> tuple[Any, Any, Any]:
    """The certificate hex of TLS rows: ``(rows that have one, their code, the distinct hexes)``.

    ``tls_rows`` are positions among the chunk's rows; ``cert_rows`` maps them to rows of the
    ``tls_cert`` column. The column gives the certificate where present; the other rows parse their
    banner, once per distinct banner (devices of one vendor share their certificate). The parser is
    Python, so on the device those distinct banners (and only those) make a round trip to the host.
    """
    xp = ops.namespace()
    parts: list[Any] = []  # distinct hex strings, given then parsed
    codes = xp.full(tls_rows.size, -1, dtype=xp.int64)
    if tls_cert is not None:
        given = ops.text_take(tls_cert, cert_rows[tls_rows])
        present = xp.flatnonzero(ops.text_valid(given))
        code, distinct = ops.text_encode(ops.text_take(given, present))
        codes[present] = code
        parts.append(distinct)
    missing = xp.flatnonzero(codes < 0)
    if missing.size:
        banner_at, wanted = ops.factorize(banner_code[tls_rows[missing]])
        encoded = ops.text_to_arrow(ops.text_take(banners, wanted))
        # Parsed a block of banners at a time: the Python strings of one block are alive at once.
        parsed = ops.text_from_arrow(
            cpu.text_concat(
                [
                    pa.array(
                        [certificate_hex(b) for b in encoded.slice(lo, _PARSE_BLOCK).to_pylist()],
                        type=pa.large_string(),
                    )
                    for lo in range(0, len(encoded), _PARSE_BLOCK)
                ]
            )
        )
        # Banners without a certificate parse to null: drop them, renumber the others.
        found = xp.flatnonzero(ops.text_valid(parsed))
        renumber = xp.full(ops.text_size(parsed), -1, dtype=xp.int64)
        offset = sum(ops.text_size(p) for p in parts)
        renumber[found] = xp.arange(found.size, dtype=xp.int64) + offset
        codes[missing] = renumber[banner_at]
        parts.append(ops.text_take(parsed, found))
    keep = xp.flatnonzero(codes >= 0)
    if keep.size == 0:
        return keep, keep, ops.text([])
    # One code per distinct hex: a certificate given in one row and parsed in another is one feature.
    merged, hexes = ops.text_encode(ops.text_concat(parts))
    return tls_rows[keep], merged[codes[keep]], hexes


def _per_row(
    ops: ModuleType, owner: Any, piece_owner: Any, piece_code: Any, n_owners: int
) -> tuple[Any, Any]:
    """Expand pieces of distinct values to the rows holding those values.

    ``owner[r]`` is row ``r``'s distinct value; ``piece_owner`` (sorted) and ``piece_code`` are the
    pieces of every distinct value. Returns ``(row, code)`` of every piece of every row's value.
    """
    xp = ops.namespace()
    per_owner = xp.bincount(piece_owner, minlength=n_owners).astype(xp.int64)
    first = xp.cumsum(per_owner) - per_owner
    n = per_owner[owner]
    row = ops.repeat(xp.arange(owner.size, dtype=xp.int64), n)
    within = xp.arange(row.size, dtype=xp.int64) - ops.repeat(xp.cumsum(n) - n, n)
    return row, piece_code[ops.repeat(first[owner], n) + within]


def feature_arrays(
    ip: Any,
    protocol: Any,
    window: Any,
    banner: Any,
    asn: Any,
    tls_cert: Any | None = None,
    *,
    use_asn: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
    rows: Any | None = None,
) -> FeatureArrays:
    """The ``gps2022`` features of every row (array level; :func:`extract_features` wraps it).

    On the host, rows are cut into chunks of ``chunk_rows``, featurized on up to ``workers``
    threads (Arrow and NumPy release the GIL) and merged by key, each merged key's strings compared
    to be sure. On the device the rows are featurized in one pass (the caller's partitions bound
    the memory).

    Parameters
    ----------
    ip : uint32[n] (NumPy, or CuPy: the device path)
    protocol, banner : string arrays of length n (Arrow on the host, cuDF Series on the device)
    window : int32[n]
    asn : uint32[n]
    tls_cert : string array of length n, optional
        Leaf certificate DER as lower-case hex (null: parse the banner).
    use_asn : bool
        Whether to emit ``asn: <asn>`` and the ASN crosses.
    chunk_rows : int
        Rows per chunk (host).
    workers : int, optional
        Threads (host; default: every core).
    rows : int64 array, optional
        Featurize only these rows (``FeatureArrays.row`` then counts among them); the string columns
        are not copied.
    """
    n = int(ip.size if rows is None else rows.size)
    if n <= chunk_rows or backend_of(ip) is Backend.GPU:
        return _chunk_features(ip, protocol, window, banner, asn, tls_cert, use_asn=use_asn, rows=rows)
    if rows is not None:
        # Chunks of the selected rows: each chunk's strings are taken (copied) apart.
        def taken(start: int) -> FeatureArrays:
            at = rows[start : start + chunk_rows]
            return _chunk_features(
                ip[at], cpu.text_take(protocol, at), window[at], cpu.text_take(banner, at), asn[at],
                cpu.text_take(tls_cert, at) if tls_cert is not None else None, use_asn=use_asn,
            )  # fmt: skip

        return map_chunks(taken, list(range(0, n, chunk_rows)), workers)
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
    hashing release the GIL), merged in chunk order (host arrays)."""
    workers = workers or os.cpu_count() or 1
    if workers > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
            chunks = list(pool.map(one, starts))
    else:
        chunks = [one(start) for start in starts]
    return _merge_chunks(chunks, starts)


def _merge_chunks(chunks: list[FeatureArrays], starts: list[int]) -> FeatureArrays:
    """One dictionary for the chunks' features, merged by key (and checked string by string), in
    the order of each feature's first chunk."""
    keys = np.concatenate([c.fkeys for c in chunks])
    codes, uniques, first = cpu.factorize_with_positions(keys)
    # The dictionary in first-seen order, so that it is a subset of the chunks' dictionaries in order.
    by_first = np.argsort(first, kind="stable")
    code_of = np.empty_like(by_first)
    code_of[by_first] = np.arange(by_first.size, dtype=by_first.dtype)
    codes, uniques, first = code_of[codes], uniques[by_first], first[by_first]
    every = FeatureStrings.concat([c.strings for c in chunks], Backend.CPU)
    repeated = np.flatnonzero(first[codes] != np.arange(codes.size))
    for start in range(0, repeated.size, STRINGS_BLOCK):
        at = repeated[start : start + STRINGS_BLOCK]
        if not pc.all(pc.equal(every.take(at), every.take(first[codes[at]]))).as_py():
            raise InputError("two different feature strings have the same XXH64 key; cannot proceed exactly")
    offsets = np.cumsum([0] + [c.n_features for c in chunks])
    n_rows = starts[-1] + (int(chunks[-1].row.max()) + 1 if chunks[-1].row.size else 0)
    dtype = row_dtype(np, n_rows)
    return FeatureArrays(
        row=np.concatenate([c.row.astype(dtype) + start for c, start in zip(chunks, starts, strict=True)]),
        fid=np.concatenate(
            [codes[off:][c.fid] for c, off in zip(chunks, offsets[:-1].tolist(), strict=True)]
        ).astype(np.uint32),
        strings=every.subset(first),
        fkeys=np.asarray(uniques, dtype=np.uint64),
    )


def _chunk_features(
    ip: Any,
    protocol: Any,
    window: Any,
    banner: Any,
    asn: Any,
    tls_cert: Any | None,
    *,
    use_asn: bool,
    rows: Any | None = None,
    more: tuple[list[Any], list[Any], list[Any]] | None = None,
) -> FeatureArrays:
    """:func:`feature_arrays` of one chunk of rows, on the backend of ``ip``.

    String work is done once per distinct value: banners, protocols and certificates are encoded
    first, and lines, pieces and prefixes are cut from the distinct values, then spread to the
    rows as integer codes. ``rows`` (optional) selects the rows to featurize; the string columns
    are then read whole and never copied row by row. ``more`` (another preset's kinds, rows and
    codes of the same rows, see :func:`assemble_features`) is assembled after these kinds.
    """
    ops = ops_for(backend_of(ip))
    xp = ops.namespace()
    if rows is None:
        rows = xp.arange(ip.size, dtype=xp.int64)
    ip = ip[rows].astype(xp.uint32, copy=False)
    asn = asn[rows].astype(xp.uint32, copy=False)
    window = window[rows].astype(xp.int32, copy=False)
    n = int(ip.size)
    all_rows = xp.arange(n, dtype=row_dtype(xp, n))
    d_strings, d_row, d_code = _data_features(ops, protocol, window, banner, tls_cert, rows, all_rows)
    # The string steps' temporaries go back to the system before the crosses allocate theirs
    # (freed heap pages otherwise stay resident and add to every later step's peak).
    ops.release_memory()
    feature_kinds: list[Any] = [d_strings]
    feature_rows: list[Any] = [d_row]
    feature_codes: list[Any] = [d_code]
    cross_features(
        feature_kinds, feature_rows, feature_codes, d_row, d_code, d_strings, ip, asn, use_asn=use_asn
    )
    del d_strings, d_row, d_code  # the lists hold them: assemble_features frees each once copied
    ops.release_memory()

    # --- network features --------------------------------------------------------------------------
    prefix_features(feature_kinds, feature_rows, feature_codes, ip, PREFIX_LENGTHS)
    feature_kinds.append(ops.text([L4_FEATURE] if n else []))
    feature_rows.append(all_rows)
    feature_codes.append(xp.zeros(n, dtype=xp.uint32))
    if use_asn:
        asn_rows = xp.flatnonzero(asn != 0)
        code, unique = ops.factorize(asn[asn_rows])
        feature_kinds.append(ops.text_join("asn: ", ops.text_decimal(unique.astype(xp.uint32))))
        feature_rows.append(asn_rows.astype(all_rows.dtype))
        feature_codes.append(code.astype(xp.uint32))
    if more is not None:
        for listed, added in zip((feature_kinds, feature_rows, feature_codes), more, strict=True):
            listed.extend(added)
            added.clear()
    return assemble_features(feature_kinds, feature_rows, feature_codes)


def _data_features(
    ops: ModuleType, protocol: Any, window: Any, banner: Any, tls_cert: Any | None, rows: Any, all_rows: Any
) -> tuple[Any, Any, Any]:
    """The data features of the chunk's ``rows`` (``window`` already taken at them): their distinct
    strings and the distinct ``(row, code)`` pairs that carry them (sorted; rows of ``all_rows``'s
    dtype, codes uint32). A function of its own so that its encodings, lines and pieces are freed
    when it returns."""
    xp = ops.namespace()
    banner_code, banners = ops.text_encode(ops.text(banner))
    protocol_code, protocols = ops.text_encode(ops.text(protocol))
    banner_code, protocol_code = banner_code[rows], protocol_code[rows]

    # --- data features: each kind's distinct strings, and the (row, code) pairs that carry them ---
    kinds: list[Any] = []
    kind_rows: list[Any] = []
    kind_codes: list[Any] = []

    def data(strings: Any, at: Any, code: Any, *, first: bool = False) -> None:
        position = 0 if first else len(kinds)
        kinds.insert(position, strings)
        kind_rows.insert(position, at.astype(all_rows.dtype, copy=False))
        kind_codes.insert(position, code.astype(xp.uint32, copy=False))

    data(ops.text_join("fingerprint: ", protocols), all_rows, protocol_code)
    window_code, windows = ops.factorize(window)
    data(ops.text_join("window: ", ops.text_decimal(windows)), all_rows, window_code)
    ssh_rows = xp.flatnonzero(ops.text_equal(protocols, "ssh")[protocol_code])
    ssh_code, ssh_banners = ops.factorize(banner_code[ssh_rows])
    data(ops.text_join("ssh banner: ", ops.text_take(banners, ssh_banners)), ssh_rows, ssh_code)
    tls_rows = xp.flatnonzero(ops.text_equal(protocols, "tls")[protocol_code])
    tls_rows, hex_code, hexes = _tls_hex(ops, tls_rows, banner_code, banners, tls_cert, rows)
    ops.release_memory()  # the parsed banners
    data(ops.text_join("tls cert: ", hexes), tls_rows, hex_code)
    pieces, piece_hex = ops.text_split(hexes, TLS_OID_SEPARATOR)
    long_enough = xp.flatnonzero(ops.text_length(pieces) >= TLS_OID_MIN_LENGTH)
    oid_code, oids = ops.text_encode(ops.text_take(pieces, long_enough))
    oid_at, oid_code = _per_row(ops, hex_code, piece_hex[long_enough], oid_code, ops.text_size(hexes))
    data(ops.text_join("tls oid: ", oids), tls_rows[oid_at], oid_code)
    del protocols, protocol_code, hexes, hex_code, pieces, piece_hex
    del long_enough, oids, oid_at, oid_code, tls_rows, ssh_rows
    # The banners' lines last (their kind first): the distinct banners go once cut into lines, and
    # the lines once encoded, so no two of them are held beside the joined strings.
    lines, line_banner = ops.text_split(banners, "\n")
    n_banners = ops.text_size(banners)
    del banners
    ops.release_memory()
    line_code, distinct_lines = ops.text_encode(lines)
    del lines
    line_row, line_code = _per_row(ops, banner_code, line_banner, line_code, n_banners)
    del banner_code, line_banner
    data(ops.text_join("http line: ", distinct_lines), line_row, line_code, first=True)
    del distinct_lines, line_row, line_code
    ops.release_memory()

    # The kinds' prefixes differ, so their distinct strings laid end to end are distinct.
    offsets = np.cumsum([0] + [ops.text_size(k) for k in kinds]).tolist()
    d_strings = ops.text_concat_drain(kinds)
    # A banner may repeat a line and a certificate a piece: keep each (row, feature) once.
    d_row, d_code = _distinct_pairs(_pack_pairs(kind_rows, kind_codes, offsets[:-1]))
    return d_strings, d_row, d_code


def unique_row_features(d_row: Any, d_code: Any) -> tuple[Any, Any]:
    """``(row, feature code)`` pairs kept once each, sorted by row then code (rows int32 while
    they fit, codes uint32)."""
    if not d_row.size:
        return d_row, d_code
    return _distinct_pairs(_pack_pairs([d_row], [d_code], [0]))


def _pack_pairs(rows: list[Any], codes: list[Any], offsets: list[int]) -> Any:
    """``row << 32 | code + offset`` (uint64) of each kind's pairs, end to end; the lists are emptied
    as they are packed, so each kind's arrays can go once copied."""
    xp = ops_for(backend_of(rows[0])).namespace()
    pair = xp.empty(sum(int(r.size) for r in rows), dtype=xp.uint64)
    at = 0
    for k, offset in enumerate(offsets):
        size = int(rows[k].size)
        packed = pair[at : at + size]
        packed[...] = rows[k]
        packed <<= xp.uint64(32)
        packed |= (codes[k] + offset).astype(xp.uint64)
        rows[k] = codes[k] = None
        at += size
    rows.clear()
    codes.clear()
    return pair


def _distinct_pairs(pair: Any) -> tuple[Any, Any]:
    """The distinct packed pairs as ``(row, code)`` (rows int32 while they fit, codes uint32),
    sorted; ``pair`` is sorted in place, and unpacked a block at a time (no temporary of its size)."""
    ops = ops_for(backend_of(pair))
    xp = ops.namespace()
    pair = ops.unique_sorted(pair, in_place=True)
    n = int(pair.size)
    row = xp.empty(n, dtype=row_dtype(xp, int(pair[-1] >> xp.uint64(32)) + 1 if n else 0))
    code = xp.empty(n, dtype=xp.uint32)
    for start in range(0, n, _UNPACK_BLOCK):
        block = pair[start : start + _UNPACK_BLOCK]
        row[start : start + block.size] = block >> xp.uint64(32)
        code[start : start + block.size] = block & xp.uint64(0xFFFFFFFF)
    return row, code


#: Packed pairs unpacked at once by :func:`_distinct_pairs`.
_UNPACK_BLOCK = 1 << 20


def cross_features(
    kinds: list[Any],
    rows: list[Any],
    codes: list[Any],
    d_row: Any,
    d_code: Any,
    d_strings: Any,
    ip: Any,
    asn: Any,
    *,
    use_asn: bool,
) -> None:
    """Append each data feature crossed with its row's /16 (``16:<f>-<hex8>``) and, with
    ``use_asn``, its known ASN (``asn:<f>-asn: <n>``) to ``kinds``/``rows``/``codes``.

    A cross is kept per distinct (feature, /16) and (feature, ASN) value as the index of its data
    feature and its number (:class:`ComposedStrings`): its string is built when taken or hashed."""
    ops = ops_for(backend_of(ip))
    xp = ops.namespace()
    x16 = (ip >> xp.uint32(16)).astype(xp.uint64)
    c16_code, c16_unique = ops.factorize((d_code.astype(xp.uint64) << xp.uint64(16)) | x16[d_row])
    c16_d = (c16_unique >> xp.uint64(16)).astype(xp.int64)
    c16_prefix = ((c16_unique & xp.uint64(0xFFFF)) << xp.uint64(16)).astype(xp.uint32)
    del c16_unique
    kinds.append(ComposedStrings("16:", d_strings, c16_d, "-", c16_prefix, hexadecimal=True))
    rows.append(d_row)
    codes.append(c16_code.astype(xp.uint32))
    if not use_asn:
        return
    with_asn = (asn != 0)[d_row]
    ca_row = d_row[with_asn]
    ca_code, ca_unique = ops.factorize(
        (d_code[with_asn].astype(xp.uint64) << xp.uint64(32)) | asn[ca_row].astype(xp.uint64)
    )
    ca_d = (ca_unique >> xp.uint64(32)).astype(xp.int64)
    ca_asn = (ca_unique & xp.uint64(0xFFFFFFFF)).astype(xp.uint32)
    del ca_unique
    kinds.append(ComposedStrings("asn:", d_strings, ca_d, "-asn: ", ca_asn))
    rows.append(ca_row)
    codes.append(ca_code.astype(xp.uint32))


def prefix_features(kinds: list[Any], rows: list[Any], codes: list[Any], ip: Any, lengths: Any) -> None:
    """Append the ``sNN: <hex8>`` network feature of every row for each prefix length."""
    ops = ops_for(backend_of(ip))
    xp = ops.namespace()
    all_rows = xp.arange(ip.size, dtype=row_dtype(xp, int(ip.size)))
    for length in lengths:
        code, unique = ops.factorize(schema.prefix_of(ip, length))
        kinds.append(ops.text_join(f"s{length}: ", ops.text_hex8(unique)))
        rows.append(all_rows)
        codes.append(code.astype(xp.uint32))


def assemble_features(kinds: list[Any], rows: list[Any], codes: list[Any]) -> FeatureArrays:
    """One :class:`FeatureArrays` from per-kind dictionaries (text arrays or
    :class:`ComposedStrings`), each kind's codes offset past the last's.

    The lists are emptied as their arrays are copied into the result (their memory goes early)."""
    backend = backend_of(rows[0])
    ops = ops_for(backend)
    xp = ops.namespace()
    sizes = [int(c.size) for c in codes]
    if len(sizes) != len(kinds) or len(sizes) != len(rows):
        raise ValueError("one list of rows and one of codes per kind of feature")
    fid = xp.empty(sum(sizes), dtype=xp.uint32)
    row = xp.empty(sum(sizes), dtype=xp.result_type(*(r.dtype for r in rows)) if rows else xp.int32)
    at, offset = 0, 0
    for k, size in enumerate(sizes):
        fid[at : at + size] = codes[k] + offset
        row[at : at + size] = rows[k]
        codes[k] = rows[k] = None
        at += size
        offset += len(kinds[k])
    codes.clear()
    rows.clear()
    strings = FeatureStrings(kinds, backend)
    kinds.clear()
    ops.release_memory()
    return FeatureArrays(row=row, fid=fid, strings=strings, fkeys=strings.keys(schema.FKEY_SEED))


def feature_arrays_of_table(
    table: Any,
    *,
    use_asn: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
    rows: Any | None = None,
) -> FeatureArrays:
    """:func:`feature_arrays` of a services table (``ip, protocol, window, banner, asn`` and
    optionally ``tls_cert``): an Arrow table on the host, a cuDF frame on the device; ``rows``
    selects rows (see :func:`feature_arrays`)."""
    ops = ops_for(backend_of(table))
    has_cert = "tls_cert" in ops.table_columns(table)
    return feature_arrays(
        ops.table_column(table, schema.IP, np.uint32),
        ops.table_text(table, schema.PROTOCOL),
        ops.table_column(table, schema.WINDOW, np.int32),
        ops.table_text(table, schema.BANNER),
        ops.table_column(table, schema.ASN, np.uint32),
        ops.table_text(table, "tls_cert") if has_cert else None,
        use_asn=use_asn,
        chunk_rows=chunk_rows,
        workers=workers,
        rows=rows,
    )


def feature_arrays_of_frame(services: Any, *, use_asn: bool = True) -> FeatureArrays:
    """:func:`feature_arrays` of a services frame: pandas on the host, cuDF on the device (the
    strings are built there too)."""
    columns = [schema.IP, schema.PROTOCOL, schema.WINDOW, schema.BANNER, schema.ASN]
    has_cert = "tls_cert" in services.columns
    ops = ops_for(backend_of(services))
    table = ops.table_of(services, columns + (["tls_cert"] if has_cert else []))
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
        ``ip uint32, port uint16`` (pandas or cuDF, on the backend of ``arrays``); the output is on
        that backend.
    arrays : FeatureArrays
        Features of its rows (of any preset).
    """
    backend = backend_of(services)
    ops = ops_for(backend)
    xp = ops.namespace()
    table = ops.table_of(services, [schema.IP, schema.PORT])
    ip = ops.table_column(table, schema.IP, np.uint32)[arrays.row]
    port = ops.table_column(table, schema.PORT, np.uint16)[arrays.row]
    # Merge repeated services: one row per distinct (ip, port, fid).
    service = schema.pack_service(ip, port)
    order = xp.lexsort(xp.stack([arrays.fid.astype(xp.uint64), service]))
    service, fid = service[order], arrays.fid[order]
    keep = xp.ones(service.size, dtype=bool)
    keep[1:] = (service[1:] != service[:-1]) | (fid[1:] != fid[:-1])
    service, fid = service[keep], fid[keep]
    ip, port = schema.unpack_service(service)
    xdf = backend.xdf
    long = xdf.DataFrame({schema.IP: ip, schema.PORT: port, schema.FID: fid, schema.FKEY: arrays.fkeys[fid]})
    dictionary = xdf.DataFrame(
        {
            schema.FID: xp.arange(arrays.n_features, dtype=xp.uint32),
            schema.FKEY: arrays.fkeys,
            schema.FEATURE: _frame_strings(arrays.strings.materialize(), backend),
        }
    )
    return FeatureTable(long, dictionary)


def _frame_strings(strings: Any, backend: Backend) -> Any:
    """A string array as a column of the backend's frames."""
    if backend is Backend.GPU:
        return strings
    return pd.arrays.ArrowStringArray(strings.cast(pa.string()))

"""Vectorized fast path for flat JSON Lines formats (the GPS seed schema).

Arrow's C++ JSON reader parses a whole chunk at once; columns are then validated with Arrow compute.
The fast path only *accepts* rows it is certain about: every row that is null, out of range, of an
unexpected shape or merely unusual (``"AS123"``, ``" 80 "``) is handed back by line number to the
per-record extractor, which gives the exact reject reason or accepts it. A chunk the reader cannot
take whole (blank lines, a malformed line, mixed types, bad UTF-8) goes to the per-record path
entirely. Both paths therefore produce the same rows, and the fast one costs no Python per row.

Arrow's reader recurses once per level of nesting and has no depth limit: a line nested some
thousands deep overflows a thread's stack and kills the process. Lines that could nest deeper than
:data:`MAX_FAST_DEPTH` are shown to it as ``{}`` (a row it hands back), so the per-record path,
whose parser stops at a fixed depth, rejects them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from gpsgpu import schema
from gpsgpu.io.sources import long_line_spans

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
DOTTED_QUAD = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"

_READ_OPTIONS = pj.ReadOptions(use_threads=True, block_size=1 << 26)

#: The deepest nesting Arrow's reader is shown (GPS records are flat; orjson stops at 1024).
MAX_FAST_DEPTH = 1024


@dataclass
class FastChunk:
    """Rows accepted by the fast path (an Arrow services table) and the lines it handed back."""

    table: pa.Table
    #: Line offsets (0-based within the chunk) of accepted rows, in order.
    accepted: np.ndarray
    #: Line offsets the per-record path must handle.
    deferred: np.ndarray


def _ints(column: pa.ChunkedArray, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and a "certainly valid" mask of an integer-like JSON column (ints, or digit strings)."""
    n = len(column)
    if pa.types.is_integer(column.type):
        values = (
            column.to_numpy(zero_copy_only=False)
            if column.null_count == 0
            else (pc.fill_null(column, low - 1).to_numpy())
        )
        ok = (values >= low) & (values <= high)
        return np.where(ok, values, 0).astype(np.int64), ok
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        digits = pc.fill_null(pc.match_substring_regex(column, r"^[0-9]{1,10}$"), False)
        as_text = pc.if_else(digits, column, "0")
        values = pc.cast(as_text, pa.int64()).to_numpy()
        ok = digits.to_numpy(zero_copy_only=False) & (values >= low) & (values <= high)
        return np.where(ok, values, 0), ok
    return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)


def _text(column: pa.ChunkedArray, max_bytes: int) -> tuple[pa.ChunkedArray, np.ndarray]:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return pa.chunked_array([pa.nulls(len(column), pa.string())]), np.zeros(len(column), dtype=bool)
    ok = pc.fill_null(pc.less_equal(pc.binary_length(column), max_bytes), False)
    return column, ok.to_numpy(zero_copy_only=False)


def _ipv4(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    n = len(column)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return _ints(column, 0, 0xFFFFFFFF)
    ok = pc.fill_null(pc.match_substring_regex(column, DOTTED_QUAD), False)
    safe = pc.if_else(ok, column, "0.0.0.0")
    octets = pc.split_pattern(safe, ".")
    flat = pc.cast(pc.list_flatten(octets), pa.int64()).to_numpy().reshape(n, 4)
    values = (flat[:, 0] << 24) | (flat[:, 1] << 16) | (flat[:, 2] << 8) | flat[:, 3]
    return values, ok.to_numpy(zero_copy_only=False)


def _shield_deep_lines(block: bytes) -> bytes:
    """``block`` with each line holding more than :data:`MAX_FAST_DEPTH` brackets replaced by
    ``{}`` (only a line that long can; counting its brackets bounds its depth)."""
    risky = [
        (start, end)
        for start, end in long_line_spans(block, MAX_FAST_DEPTH)
        if block.count(b"{", start, end) + block.count(b"[", start, end) > MAX_FAST_DEPTH
    ]
    if not risky:
        return block
    parts, position = [], 0
    for start, end in risky:
        parts += [block[position:start], b"{}"]
        position = end
    parts.append(block[position:])
    return b"".join(parts)


def parse_gps_block(block: bytes, n_lines: int, max_banner_bytes: int) -> FastChunk | None:
    """Parse a block of GPS-schema JSON Lines (``ip, p, asn, data, fingerprint, w``).

    Returns None when the block must go to the per-record path whole.
    """
    # Arrow skips blank lines, which would shift row numbers off line numbers: such blocks (and any
    # whose row count differs from its line count) take the per-record path.
    if b"\n\n" in block or block.startswith(b"\n") or block.endswith(b"\n"):
        return None
    try:
        table = pj.read_json(io.BytesIO(_shield_deep_lines(block)), read_options=_READ_OPTIONS)
    except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
        return None
    try:  # a key that is not UTF-8 fails only when its name is read
        names = set(table.column_names)
    except UnicodeDecodeError:
        return None
    if table.num_rows != n_lines or not {"ip", "p", "data", "fingerprint", "w"} <= names:
        return None
    try:  # the reader does not check that strings are UTF-8; a full validation does
        for name in ("ip", "data", "fingerprint"):
            table.column(name).validate(full=True)
    except pa.ArrowInvalid:
        return None
    ip, ok = _ipv4(table.column("ip"))
    port, port_ok = _ints(table.column("p"), 0, 65535)
    window, window_ok = _ints(table.column("w"), 0, 0x7FFFFFFF)
    if "asn" in names and table.column("asn").null_count < table.num_rows:
        asn_column = table.column("asn")
        asn, asn_ok = _ints(
            pc.fill_null(asn_column, 0) if pa.types.is_integer(asn_column.type) else asn_column, 0, 0xFFFFFFFF
        )
        asn_ok |= table.column("asn").is_null().to_numpy(zero_copy_only=False)
    else:
        asn, asn_ok = np.zeros(table.num_rows, dtype=np.int64), np.ones(table.num_rows, dtype=bool)
    banner, banner_ok = _text(table.column("data"), max_banner_bytes)
    protocol, protocol_ok = _text(table.column("fingerprint"), 1 << 30)
    ok &= port_ok & window_ok & asn_ok & banner_ok & protocol_ok
    accepted = np.flatnonzero(ok)
    deferred = np.flatnonzero(~ok)
    if deferred.size:
        keep = pa.array(accepted)
        protocol, banner = pc.take(protocol, keep), pc.take(banner, keep)
        ip, port, asn, window = ip[accepted], port[accepted], asn[accepted], window[accepted]
    services = pa.table(
        {
            schema.IP: pa.array(ip.astype(np.uint32)),
            schema.PORT: pa.array(port.astype(np.uint16)),
            schema.ASN: pa.array(asn.astype(np.uint32)),
            schema.PROTOCOL: protocol.cast(pa.string()),
            schema.WINDOW: pa.array(window.astype(np.int32)),
            schema.BANNER: banner.cast(pa.string()),
        }
    )
    return FastChunk(services, accepted, deferred)

"""Ingest: scan records of any supported format -> one services table on the chosen backend.

Parsing is host work (JSON/CSV/Parquet decoding, per-record validation); the parsed columns are then
moved to the backend once, where duplicate ``(ip, port)`` rows are merged and ASNs annotated by
stages that run the same on pandas and cuDF (:mod:`gpsgpu.services`).

Every input line is accounted for: a record becomes a row, or is *filtered* (a well-formed record
that is no service; CSV ``#`` comment lines are filtered as ``comment``), or is *rejected* with its
line number: a line over :data:`~gpsgpu.io.sources.MAX_RECORD_BYTES` (``record_too_long``, skipped
in bounded memory), a CSV line whose quote never closes (``unbalanced_quote``: that line alone; the
lines after it are read on their own), a record the extractor cannot take (``malformed``). Blank
lines and a CSV header are the only lines that are not records.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from gpsgpu import schema
from gpsgpu.asn import AsnTable
from gpsgpu.backend import Backend, resolve
from gpsgpu.config import IngestConfig
from gpsgpu.errors import InputError, UsageError
from gpsgpu.io.fastjson import parse_gps_block
from gpsgpu.io.parquet import one_line
from gpsgpu.io.records import (
    GPS_FIELDS,
    ZMAP_FIELDS_DEFAULT,
    Extractor,
    Filtered,
    Row,
    extract_censys,
    extract_gps,
    extract_lzr,
    is_censys_record,
    make_extract_zgrab2,
    make_extract_zmap,
    parse_ip,
)
from gpsgpu.io.rejects import (
    MALFORMED,
    NON_UTF8,
    OVERSIZED_BANNER,
    RECORD_TOO_LONG,
    UNBALANCED_QUOTE,
    RejectedRecord,
    Rejects,
)
from gpsgpu.io.sources import (
    CHUNK_BYTES,
    MAX_RECORD_BYTES,
    PARQUET_MAGIC,
    InputSource,
    iter_line_chunks,
    open_input,
    printable,
    read_all,
)
from gpsgpu.progress import progress
from gpsgpu.services import annotate_asn, merge_duplicate_services

log = logging.getLogger(__name__)

FORMATS = ("auto", "gps", "lzr", "zgrab2", "zmap", "censys", "services")

#: How far into an input format detection looks.
DETECT_BYTES = 1 << 20
#: Lines of JSON that detection tries for the first record that parses.
DETECT_LINES = 100

#: Filter reason of a CSV ``#`` comment line (counted, not a service).
COMMENT = "comment"

#: What an extractor may raise on a record no validator foresaw (a NUL byte in an address makes
#: ``inet_pton`` raise ValueError): the record is rejected, the ingest goes on.
_EXTRACT_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
)


@dataclass
class IngestResult:
    """What :func:`ingest` produced: the services frame and an account of every input record."""

    frame: Any
    backend: Backend
    rejects: Rejects
    counts: dict[str, Any]
    inputs: list[dict[str, Any]]
    filtered: Counter[str] = field(default_factory=Counter)


# --- accumulation -------------------------------------------------------------------------------


#: Rows carry their input position as ``input index << ORDER_SHIFT | line``, so that duplicates merge
#: in input order whatever path (fast or per-record) parsed them.
ORDER_SHIFT = 40
ORDER = "__order__"


class _Columns:
    """Service rows accumulated column by column (Python lists, converted to Arrow once), plus the
    Arrow tables the vectorized fast path produced."""

    def __init__(self, max_banner_bytes: int) -> None:
        self.max_banner_bytes = max_banner_bytes
        self.input_index = 0
        self.tables: list[pa.Table] = []
        self.n_table_rows = 0
        self.order: list[int] = []
        self.ip: list[int] = []
        self.port: list[int] = []
        self.asn: list[int] = []
        self.protocol: list[str] = []
        self.window: list[int] = []
        self.banner: list[str] = []
        self.optional: dict[str, list[Any]] = {}
        self.n_rows = 0

    def check(self, row: Row) -> None:
        """Raise :class:`RejectedRecord` for a banner over the cap or text that is not UTF-8."""
        banner = row.banner
        if banner.isascii():
            size = len(banner)
        else:
            try:
                size = len(banner.encode("utf-8"))
            except UnicodeEncodeError:
                raise RejectedRecord(NON_UTF8, "banner: holds an unpaired surrogate, not UTF-8") from None
        if size > self.max_banner_bytes:
            raise RejectedRecord(
                OVERSIZED_BANNER, f"banner: {size} bytes > --max-banner-bytes {self.max_banner_bytes}"
            )
        texts = [row.protocol]
        if row.optional:
            texts += [v for v in row.optional.values() if isinstance(v, str)]
        for text in texts:
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise RejectedRecord(NON_UTF8, "a text field holds an unpaired surrogate") from None

    @property
    def n_total(self) -> int:
        return self.n_rows + self.n_table_rows

    def add_table(self, table: pa.Table, lines: np.ndarray) -> None:
        """Rows parsed by the fast path, with their line numbers."""
        order = (np.uint64(self.input_index) << np.uint64(ORDER_SHIFT)) | lines.astype(np.uint64)
        self.tables.append(table.append_column(ORDER, pa.array(order)))
        self.n_table_rows += table.num_rows

    def append(self, row: Row, line: int) -> None:
        self.order.append(self.input_index << ORDER_SHIFT | line)
        self.ip.append(row.ip)
        self.port.append(row.port)
        self.asn.append(row.asn)
        self.protocol.append(row.protocol)
        self.window.append(row.window)
        self.banner.append(row.banner)
        if row.optional:
            for name, value in row.optional.items():
                column = self.optional.get(name)
                if column is None:
                    column = self.optional[name] = [None] * self.n_rows
                column.append(value)
        self.n_rows += 1
        if self.optional:
            for column in self.optional.values():
                if len(column) < self.n_rows:
                    column.append(None)

    def to_arrow(self) -> pa.Table:
        """Every accumulated row as one Arrow table (services columns + the ``__order__`` key)."""
        arrays = {
            schema.IP: pa.array(np.array(self.ip, dtype=np.uint32)),
            schema.PORT: pa.array(np.array(self.port, dtype=np.uint16)),
            schema.ASN: pa.array(np.array(self.asn, dtype=np.uint32)),
            schema.PROTOCOL: pa.array(self.protocol, type=pa.string()),
            schema.WINDOW: pa.array(np.array(self.window, dtype=np.int32)),
            schema.BANNER: pa.array(self.banner, type=pa.string()),
        }
        types = dict(schema.SERVICES_OPTIONAL)
        for name in schema.OPTIONAL_COLUMNS:
            if name in self.optional:
                arrays[name] = pa.array(self.optional[name], type=types[name])
        arrays[ORDER] = pa.array(np.array(self.order, dtype=np.uint64))
        tables = [pa.table(arrays), *self.tables]
        optional = [n for n in schema.OPTIONAL_COLUMNS if any(n in t.column_names for t in tables)]
        target = schema.services_arrow_schema(tuple(optional)).append(pa.field(ORDER, pa.uint64()))
        return pa.concat_tables([_with_columns(t, target) for t in tables])


class _Account:
    """Counts and rejects for one input."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rejects = Rejects()
        self.filtered: Counter[str] = Counter()
        self.n_records = 0  # input records (lines, array elements, rows)
        self.n_units = 0  # service candidates + record-level rejects: the reject rate's denominator

    def reject_record(self, line: int, reason: str, detail: str, record: bytes | str | None) -> None:
        """A whole input record rejected (it counts as a record and a candidate)."""
        self.n_records += 1
        self.n_units += 1
        self.rejects.add(self.source, line, reason, detail, record)

    def long_line(self, line: int, head: bytes, n_bytes: int) -> None:
        """:func:`iter_line_chunks`'s report of a line over the limit."""
        self.reject_record(
            line, RECORD_TOO_LONG, f"line of {n_bytes:,} bytes > the limit of {MAX_RECORD_BYTES:,}", head
        )


def _consume(items: list[Any], line: int, raw: Any, columns: _Columns, account: _Account) -> None:
    for item in items:
        account.n_units += 1
        if type(item) is Row:
            try:
                columns.check(item)
            except RejectedRecord as rejected:
                excerpt = raw() if callable(raw) else raw
                account.rejects.add(account.source, line, rejected.reason, rejected.detail, excerpt)
                continue
            columns.append(item, line)
        elif type(item) is Filtered:
            account.filtered[item.reason] += 1
        else:
            account.rejects.add(
                account.source, line, item.reason, item.detail, raw() if callable(raw) else raw
            )


# --- containers ---------------------------------------------------------------------------------


def _reject_undecodable(line: bytes, number: int, account: _Account) -> None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason, detail = NON_UTF8, f"not UTF-8 at byte {exc.start}"
    else:
        try:  # the standard parser accepts escaped unpaired surrogates ("\udc80"), which are not UTF-8
            json.loads(line)
            reason, detail = NON_UTF8, "an escaped unpaired surrogate, not UTF-8"
        except ValueError:
            reason, detail = MALFORMED, "not valid JSON"
        except RecursionError:
            reason, detail = MALFORMED, "not valid JSON (nested too deeply)"
    account.n_units += 1
    account.rejects.add(account.source, number, reason, detail, line)


def _parse_json_line(
    line: bytes, number: int, extract: Extractor, columns: _Columns, account: _Account
) -> None:
    """The per-record path for one JSON line (the exact reference for every row)."""
    if not line or line.isspace():
        return
    account.n_records += 1
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        _reject_undecodable(line, number, account)
        return
    try:
        items = extract(record)
    except _EXTRACT_ERRORS as exc:
        items = [_unforeseen(exc)]
    if len(items) == 1 and type(items[0]) is Row:  # the common case, inlined
        row = items[0]
        account.n_units += 1
        try:
            columns.check(row)
        except RejectedRecord as rejected:
            account.rejects.add(account.source, number, rejected.reason, rejected.detail, line)
            return
        columns.append(row, number)
    else:
        _consume(items, number, line, columns, account)


def _parse_json_lines(
    source: InputSource, extract: Extractor, columns: _Columns, account: _Account, *, fast: bool = False
) -> None:
    """JSON Lines; with ``fast``, blocks go through the vectorized GPS-schema reader first."""
    for first, block in iter_line_chunks(
        source, CHUNK_BYTES, max_line_bytes=MAX_RECORD_BYTES, on_long_line=account.long_line
    ):
        chunk = None
        if fast:
            n_lines = block.count(b"\n") + 1
            chunk = parse_gps_block(block, n_lines, columns.max_banner_bytes)
        if chunk is None:
            for offset, line in enumerate(block.split(b"\n")):
                _parse_json_line(line, first + offset, extract, columns, account)
            continue
        account.n_records += len(chunk.accepted)
        account.n_units += len(chunk.accepted)
        columns.add_table(chunk.table, chunk.accepted + first)
        if chunk.deferred.size:
            lines = block.split(b"\n")
            for offset in chunk.deferred.tolist():
                _parse_json_line(lines[offset], first + offset, extract, columns, account)


def _parse_json_array(data: bytes, extract: Extractor, columns: _Columns, account: _Account) -> None:
    """A whole-file JSON array (Censys exports) or one pretty-printed JSON object (a Censys API
    answer saved as it came): record numbers stand in for line numbers."""
    try:
        records = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        _reject_undecodable(data[:2048], 1, account)
        raise InputError(f"{account.source}: not a valid JSON document ({exc})") from None
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list):
        raise InputError(f"{account.source}: expected a JSON array of records or one JSON object")
    for number, record in enumerate(records, start=1):
        account.n_records += 1
        try:
            items = extract(record)
        except _EXTRACT_ERRORS as exc:
            items = [_unforeseen(exc)]
        _consume(items, number, lambda r=record: _dumps(r), columns, account)


def _dumps(record: Any) -> bytes:
    """A rejected record as JSON for the rejects file (whatever it holds)."""
    try:
        return orjson.dumps(record, default=str)
    except (orjson.JSONEncodeError, TypeError, ValueError):  # nested deeper than orjson writes
        return printable(repr(record), 2000).encode()


def _csv_header(first_row: list[str], fmt: str) -> tuple[list[str], bool]:
    """The column names of a CSV input and whether its first row is a header."""
    names = [name.strip().lower() for name in first_row]
    if fmt == "gps" and {"ip", "p"} <= set(names):
        return names, True
    if fmt == "zmap" and "saddr" in names:
        return names, True
    if fmt == "zmap":
        if len(first_row) > len(ZMAP_FIELDS_DEFAULT):
            raise InputError("a ZMap CSV without a header row must have 1 (saddr) or 2 (saddr,sport) columns")
        return list(ZMAP_FIELDS_DEFAULT[: len(first_row)]), False
    if fmt == "gps" and len(first_row) == len(GPS_FIELDS):
        return list(GPS_FIELDS), False
    raise InputError(f"cannot read this CSV as {fmt}: header {first_row[:8]}")


#: A line put after the last line of each block of a CSV input. Read as a row of its own when no
#: quote is open; when one is, the open field swallows it and ends in ``_OPEN_AT_END``.
_END_FIELD = "\ufdd0gpsgpu:end\ufdd0"
_END_LINE = f'"{_END_FIELD}"\n'
_OPEN_AT_END = _END_FIELD + '"'


def _parse_csv(
    source: InputSource, fmt: str, extract: Extractor, columns: _Columns, account: _Account
) -> None:
    """CSV records; a quoted field may span lines. A line whose quote is still open at the end of
    the input, past :data:`MAX_RECORD_BYTES` or in a row that then has the wrong number of fields
    is rejected alone (``unbalanced_quote``) and the lines after it are read again on their own."""
    # a quoted field that grows past the limit makes the reader raise (the limit is process-wide)
    previous = csv.field_size_limit(MAX_RECORD_BYTES)
    try:
        _parse_csv_blocks(source, fmt, extract, columns, account)
    finally:
        csv.field_size_limit(previous)


def _parse_csv_blocks(
    source: InputSource, fmt: str, extract: Extractor, columns: _Columns, account: _Account
) -> None:
    # The reader runs over whole blocks of lines (no Python per line); rows are placed by its
    # line count, and a row whose quote is open at a block's end is carried into the next block.
    header: list[str] | None = None
    carry: list[tuple[int, str]] = []
    blocks = iter_line_chunks(
        source, CHUNK_BYTES, max_line_bytes=MAX_RECORD_BYTES, on_long_line=account.long_line
    )
    for first, block in _with_end(blocks):
        fresh = [] if block is None else _lines_of(block)
        n_carry = len(carry)
        lines = [line for _, line in carry] + fresh if carry else fresh
        lines.append(_END_LINE)
        numbers = carry

        def number(i: int, first: int = first, n_carry: int = n_carry, numbers: list[Any] = numbers) -> int:
            return int(numbers[i][0]) if i < n_carry else first + i - n_carry

        carry = []
        end = len(lines) - 1  # the index of _END_LINE
        begin = 0
        while begin < end:
            reader = csv.reader(map(lines.__getitem__, range(begin, len(lines))))
            done = 0  # lines the reader consumed before the row it is reading
            again = None  # where to start a new reader, after a rejected line
            try:
                for row in reader:
                    i, used, done = begin + done, reader.line_num - done, reader.line_num
                    if i == end:
                        break
                    if used > 1 and row and row[-1].endswith(_OPEN_AT_END):
                        if block is not None:  # the quote may close in the next block
                            carry = [(number(j), lines[j]) for j in range(i, end)]
                            break
                        _reject_unbalanced(number(i), lines[i], end - i - 1, account)
                        again = i + 1
                        break
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue
                    if row[0].lstrip().startswith("#"):  # a comment is its first line, never more
                        account.n_records += 1
                        account.filtered[COMMENT] += 1
                        if used > 1:
                            again = i + 1
                            break
                        continue
                    if header is None:
                        header, is_header = _csv_header(row, fmt)
                        if is_header:
                            continue
                    if used > 1 and len(row) != len(header):
                        # a quote closed lines later, inside another record: the first line is the bad one
                        _reject_unbalanced(number(i), lines[i], used - 1, account)
                        again = i + 1
                        break
                    start = first + i - n_carry if i >= n_carry else number(i)
                    _csv_record(row, header, start, extract, columns, account)
            except csv.Error as exc:
                i = begin + done
                if "field limit" in str(exc):
                    _reject_unbalanced(
                        number(i), lines[i], min(end, begin + reader.line_num) - i - 1, account
                    )
                else:
                    account.reject_record(
                        number(i), MALFORMED, f"unreadable CSV ({exc})", _line_bytes(lines[i])
                    )
                again = i + 1
            if again is None:
                break
            begin = again


def _with_end(blocks: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, bytes | None]]:
    yield from blocks
    yield 0, None


def _lines_of(block: bytes) -> list[str]:
    """The lines of a block, each with its ``\\n`` when the block holds a quote (the reader needs
    it inside a quoted field; without quotes no field spans lines, and splitting is faster)."""
    text = block.decode("utf-8", "surrogateescape")
    if b'"' not in block:
        return text.split("\n")
    return io.StringIO(text + "\n", newline="\n").readlines()


def _line_bytes(line: str) -> bytes:
    return line.rstrip("\r\n").encode("utf-8", "surrogateescape")


def _csv_record(
    row: list[str], header: list[str], start: int, extract: Extractor, columns: _Columns, account: _Account
) -> None:
    account.n_records += 1
    raw = ",".join(row)
    if not raw.isascii():
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            account.n_units += 1
            record = raw.encode("utf-8", "surrogateescape")
            account.rejects.add(account.source, start, NON_UTF8, "not UTF-8", record)
            return
    if len(row) != len(header):
        account.n_units += 1
        detail = f"expected {len(header)} fields ({','.join(header)}), got {len(row)}"
        account.rejects.add(account.source, start, MALFORMED, detail, raw)
        return
    try:
        items = extract(dict(zip(header, row, strict=True)))
    except _EXTRACT_ERRORS as exc:
        items = [_unforeseen(exc)]
    _consume(items, start, raw, columns, account)


def _reject_unbalanced(number: int, line: str, n_later: int, account: _Account) -> None:
    where = f"is still open {n_later:,} lines later" if n_later > 0 else "never closes"
    account.reject_record(
        number,
        UNBALANCED_QUOTE,
        f"a quoted field opened on this line {where}; the lines after it are read on their own",
        _line_bytes(line),
    )


def _parse_parquet_rows(table: pa.Table, extract: Extractor, columns: _Columns, account: _Account) -> None:
    """Record-at-a-time validation of a Parquet table in a scan format (row numbers for lines)."""
    for batch in table.to_batches(max_chunksize=1 << 16):
        base = account.n_records
        for offset, record in enumerate(batch.to_pylist()):
            account.n_records += 1
            try:
                items = extract(record)
            except _EXTRACT_ERRORS as exc:
                items = [_unforeseen(exc)]
            _consume(items, base + offset + 1, lambda r=record: _dumps(r), columns, account)


# --- detection ----------------------------------------------------------------------------------


def _peek(source: InputSource, size: int = DETECT_BYTES) -> bytes:
    peek = getattr(source.stream, "peek", None)
    if peek is None:
        source.stream = io.BufferedReader(source.stream, buffer_size=size)  # type: ignore[arg-type]
        peek = source.stream.peek  # type: ignore[attr-defined]
    return peek(size)[:size]


def _detect_json(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    keys = record.keys()
    if is_censys_record(record):
        return "censys"
    if "saddr" in keys:
        return "lzr" if keys & {"data", "fingerprint", "RST", "expectedRToLZR"} else "zmap"
    if "ip" in keys and "p" in keys:
        return "gps"
    if "ip" in keys and isinstance(record.get("data"), dict):
        return "zgrab2"
    return None


def detect_format(head: bytes, name: str) -> tuple[str, str]:
    """Guess ``(format, container)`` from the first bytes of an input; container is
    ``jsonl``, ``json-array``, ``csv`` or ``parquet``."""
    if head.startswith(PARQUET_MAGIC):
        return "parquet?", "parquet"
    stripped = head.lstrip()
    if not stripped:
        raise InputError(f"{name}: empty input")
    if stripped.startswith(b"["):
        return "censys", "json-array"
    if stripped.startswith(b"{"):
        fmt = None
        if stripped.split(b"\n", 1)[0].strip() == b"{":  # one pretty-printed object, not JSON Lines
            try:
                fmt = _detect_json(orjson.loads(head)) if len(head) < DETECT_BYTES else "censys"
            except orjson.JSONDecodeError:
                fmt = None
            if fmt is None:
                raise InputError(f"{name}: cannot tell the format of this JSON document; pass --format")
            return fmt, "json-array"
        # the first record that parses decides (a broken first line is a reject, not the format)
        for line in stripped.split(b"\n", DETECT_LINES)[:DETECT_LINES]:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            fmt = _detect_json(record)
            break
        if fmt is None:
            raise InputError(f"{name}: cannot tell the format from the first record; pass --format")
        return fmt, "jsonl"
    first_line = _first_csv_line(stripped).decode("utf-8", "replace").strip()
    names = [f.strip().lower() for f in first_line.split(",")]
    if {"ip", "p"} <= set(names):
        return "gps", "csv"
    if "saddr" in names:
        return "zmap", "csv"
    try:
        parse_ip(names[0])
        return "zmap", "csv"
    except (RejectedRecord, ValueError):
        raise InputError(
            f"{name}: cannot tell the format (not JSON, Parquet or a known CSV); pass --format"
        ) from None


def _first_csv_line(head: bytes) -> bytes:
    """The first line of ``head`` that is neither blank nor a ``#`` comment."""
    for line in head.split(b"\n"):
        if line.strip() and not line.lstrip().startswith(b"#"):
            return line
    return b""


def _container_for(fmt: str, head: bytes) -> str:
    """The container of an input whose format the user named: CSV only when the first line looks
    like CSV (a comma, not JSON), so that garbage lines in JSON Lines become counted rejects."""
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    stripped = head.lstrip()
    if stripped.startswith(b"["):
        return "json-array"
    first_line = stripped.split(b"\n", 1)[0]
    if first_line.strip() == b"{":  # one pretty-printed object
        return "json-array"
    if not first_line.startswith(b"{"):
        first_line = _first_csv_line(stripped)
    if fmt in ("gps", "zmap") and not first_line.startswith(b"{") and b"," in first_line:
        return "csv"
    if fmt == "zmap" and not first_line.startswith(b"{"):
        try:  # ZMap's default single-port output: one address per line
            parse_ip(first_line.decode("utf-8", "replace").strip())
            return "csv"
        except (RejectedRecord, ValueError):
            pass
    return "jsonl"


def _parquet_format(table: pa.Table, name: str) -> str:
    names = set(table.column_names)
    if {schema.IP, schema.PORT, schema.BANNER} <= names:
        return "services"
    if {"ip", "p"} <= names:
        return "gps"
    raise InputError(f"{name}: Parquet columns {sorted(names)[:8]} are neither a services table nor GPS's")


def _extractor(fmt: str, default_port: int | None) -> Extractor:
    extractors: dict[str, Callable[[], Extractor]] = {
        "gps": lambda: extract_gps,
        "lzr": lambda: extract_lzr,
        "zgrab2": lambda: make_extract_zgrab2(default_port),
        "zmap": lambda: make_extract_zmap(default_port),
        "censys": lambda: extract_censys,
    }
    return extractors[fmt]()


def _unforeseen(exc: Exception) -> RejectedRecord:
    """The reject of a record on which an extractor failed in a way no validator foresaw."""
    detail = str(exc)
    if "null character" in detail or "null byte" in detail:
        detail = "a field holds a NUL byte"
    return RejectedRecord(MALFORMED, f"unreadable record ({type(exc).__name__}: {printable(detail, 120)})")


# --- driver -------------------------------------------------------------------------------------


def _ingest_one(path: str, config: IngestConfig, columns: _Columns) -> tuple[_Account, dict[str, Any]]:
    account = _Account(path)
    started = time.perf_counter()
    n_before = columns.n_total
    with open_input(path) as source, progress(f"ingest {Path(path).name}", source.size) as bar:
        source.on_progress = bar.update
        head = _peek(source)
        if config.format == "auto":
            fmt, container = detect_format(head, path)
        else:
            fmt, container = config.format, _container_for(config.format, head)
        if not head.strip():
            raise InputError(f"{path}: empty input")
        if container == "parquet":
            buffer = read_all(source)
            try:
                table = pq.read_table(pa.BufferReader(buffer))
            except (pa.ArrowException, OSError) as exc:  # truncated or corrupt
                raise InputError(f"{path}: unreadable Parquet ({one_line(exc)})") from None
            if fmt == "parquet?":
                fmt = _parquet_format(table, path)
            if fmt == "services":
                try:
                    services = schema.services_arrow_table(table)
                except (ValueError, pa.ArrowInvalid) as exc:
                    raise InputError(f"{path}: {exc}") from None
                columns.add_table(services, np.arange(1, table.num_rows + 1, dtype=np.uint64))
                account.n_records = account.n_units = table.num_rows
            else:
                _parse_parquet_rows(table, _extractor(fmt, config.default_port), columns, account)
        elif fmt == "services":
            raise InputError(f"{path}: --format services needs a Parquet services table")
        elif container == "json-array":
            _parse_json_array(read_all(source), _extractor(fmt, config.default_port), columns, account)
        elif container == "csv":
            if fmt not in ("gps", "zmap"):
                raise InputError(f"{path}: {fmt} records are JSON, but this input looks like CSV")
            _parse_csv(source, fmt, _extractor(fmt, config.default_port), columns, account)
        else:
            extract = _extractor(fmt, config.default_port)
            _parse_json_lines(source, extract, columns, account, fast=fmt == "gps")
        described = source.describe()
    seconds = time.perf_counter() - started
    n_services = columns.n_total - n_before
    described.update(
        format=fmt,
        container=container,
        records=account.n_records,
        rows=n_services,
        rejected=account.rejects.total,
        filtered=sum(account.filtered.values()),
        seconds=round(seconds, 3),
    )
    log.info(
        "%s: %s %s, %d records -> %d rows, %d rejected, %d filtered (%.0f records/s)",
        path,
        fmt,
        container,
        account.n_records,
        n_services,
        account.rejects.total,
        sum(account.filtered.values()),
        account.n_records / max(seconds, 1e-9),
    )
    return account, described


def ingest(
    inputs: Sequence[str],
    config: IngestConfig,
    asn_table: AsnTable | None = None,
    *,
    allow_empty: bool = False,
) -> IngestResult:
    """Read every input into one services frame on ``config.backend``.

    ``allow_empty``: inputs without a record are a scan that found nothing (an empty frame), not an
    error (a campaign step may find nothing).

    Bad records are returned in ``IngestResult.rejects`` with the reject rate in ``counts``; the
    caller decides what rate is too much (``run_ingest`` applies ``config.max_reject_rate``).
    Raises :class:`InputError` for an input that cannot be used at all (missing, empty, of an
    undetectable format) and :class:`UsageError` for bad parameters.
    """
    if config.format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {config.format!r}")
    if not inputs:
        raise UsageError("no input given")
    if sum(1 for p in inputs if str(p) == "-") > 1:
        raise UsageError("standard input ('-') can be read only once")
    backend = resolve(config.backend)
    columns = _Columns(config.max_banner_bytes)
    rejects = Rejects()
    filtered: Counter[str] = Counter()
    described: list[dict[str, Any]] = []
    n_records = n_units = 0
    for index, path in enumerate(inputs):
        columns.input_index = index
        account, info = _ingest_one(str(path), config, columns)
        rejects.extend(account.rejects)
        filtered.update(account.filtered)
        n_records += account.n_records
        n_units += account.n_units
        described.append(info)
    if n_records == 0 and not allow_empty:
        raise InputError(f"{', '.join(map(str, inputs))}: no records (empty input)")
    parsed = columns.to_arrow()
    order = backend.xp.asarray(parsed.column(ORDER).to_numpy())
    frame = schema.services_from_arrow(parsed.drop_columns([ORDER]), backend.xdf)
    n_parsed = len(frame)
    frame = merge_duplicate_services(frame, order=order)
    n_annotated = 0
    if asn_table is not None:
        frame, n_annotated = annotate_asn(frame, table=asn_table)
    counts: dict[str, Any] = {
        "records": n_records,
        "candidates": n_units,
        "parsed_rows": n_parsed,
        "services": len(frame),
        "duplicates_merged": n_parsed - len(frame),
        "rejected": rejects.total,
        "rejected_by_reason": dict(sorted(rejects.counts.items())),
        "filtered": sum(filtered.values()),
        "filtered_by_reason": dict(sorted(filtered.items())),
        "asn_annotated": n_annotated,
        "reject_rate": rejects.total / n_units if n_units else 0.0,
    }
    return IngestResult(frame, backend, rejects, counts, described, filtered)


def _with_columns(table: pa.Table, target: pa.Schema) -> pa.Table:
    for name in target.names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, target.field(name).type))
    return table.select(target.names).cast(target)

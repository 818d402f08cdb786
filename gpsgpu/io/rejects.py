"""Rejected input records: counted by reason, kept with their position, written as JSON Lines.

Nothing is dropped silently: a record that cannot become a service is either *filtered* (a
well-formed record that is not a real service, e.g. an LZR RST or a ZGrab2 connection timeout; counted
in ``metadata.json``) or *rejected* (bad input; counted and written to ``OUT.rejects.jsonl``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from gpsgpu.io.atomic import atomic_open

# Reject reasons (stable identifiers: they appear in rejects files and metadata).
MALFORMED = "malformed"  # not parseable as a record of the format (bad JSON, wrong CSV arity, ...)
NON_UTF8 = "non_utf8"  # bytes that are not UTF-8
MISSING_FIELD = "missing_field"  # a required field is absent or null
INVALID_IP = "invalid_ip"
INVALID_PORT = "invalid_port"
INVALID_ASN = "invalid_asn"
INVALID_WINDOW = "invalid_window"
INVALID_TYPE = "invalid_type"  # a field of the wrong type (e.g. data that is not a string)
OVERSIZED_BANNER = "oversized_banner"
RECORD_TOO_LONG = "record_too_long"  # a line over the length limit (skipped, never held whole)
UNBALANCED_QUOTE = "unbalanced_quote"  # a CSV line whose quoted field never closes

REASONS = (
    MALFORMED,
    NON_UTF8,
    MISSING_FIELD,
    INVALID_IP,
    INVALID_PORT,
    INVALID_ASN,
    INVALID_WINDOW,
    INVALID_TYPE,
    OVERSIZED_BANNER,
    RECORD_TOO_LONG,
    UNBALANCED_QUOTE,
)

#: How much of a rejected record is kept in the rejects file.
RECORD_EXCERPT_BYTES = 2048
#: Rejects kept in memory; past this only counts grow (the file says how many were left out).
MAX_KEPT = 1_000_000


class RejectedRecord(Exception):
    """Raised by a record parser: ``reason`` is one of :data:`REASONS`, ``detail`` says what was wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Rejects:
    """Collects rejected records with their source and line (or row) number."""

    counts: Counter[str] = field(default_factory=Counter)
    entries: list[dict[str, object]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, source: str, line: int, reason: str, detail: str, record: bytes | str | None) -> None:
        self.counts[reason] += 1
        if len(self.entries) >= MAX_KEPT:
            return
        if isinstance(record, bytes):
            excerpt = record[:RECORD_EXCERPT_BYTES].decode("utf-8", errors="backslashreplace")
        else:
            excerpt = (record or "")[:RECORD_EXCERPT_BYTES]
        self.entries.append(
            {"source": source, "line": line, "reason": reason, "detail": detail, "record": excerpt}
        )

    def extend(self, other: Rejects) -> None:
        self.counts.update(other.counts)
        room = MAX_KEPT - len(self.entries)
        self.entries.extend(other.entries[: max(room, 0)])

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write one JSON object per rejected record, in input order, atomically."""
        path = Path(path)
        ordered = sorted(self.entries, key=lambda e: (str(e["source"]), int(e["line"])))  # type: ignore[call-overload]
        with atomic_open(path, "wb") as handle:
            for entry in ordered:
                handle.write(orjson.dumps(entry))
                handle.write(b"\n")
            left_out = self.total - len(self.entries)
            if left_out > 0:
                handle.write(orjson.dumps({"left_out": left_out, "reason": "more rejects than are kept"}))
                handle.write(b"\n")
        return path


def rejects_path_for(output: str | os.PathLike[str]) -> Path:
    """``seed.parquet`` -> ``seed.rejects.jsonl`` (beside the output it belongs to)."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(output.suffix) + ".rejects.jsonl")


def enforce_reject_rate(
    rejects: Rejects,
    *,
    output: str | os.PathLike[str],
    n_candidates: int,
    max_rate: float,
    nothing_written: str = "no table written",
) -> Path | None:
    """Write (or clear) ``output``'s rejects file; past ``max_rate`` remove the output and its
    metadata and raise :class:`gpsgpu.errors.InputError` with one line that says where the rejects are.

    Returns the rejects file's path when any record was rejected.
    """
    from gpsgpu.errors import InputError

    output = Path(output)
    path = rejects_path_for(output)
    if rejects.total:
        rejects.write(path)
    else:
        path.unlink(missing_ok=True)
    rate = rejects.total / n_candidates if n_candidates else 0.0
    if rate > max_rate:  # an earlier output at ``output`` stays as it was: this run wrote nothing
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(rejects.counts.items()))
        raise InputError(
            f"{rejects.total} of {n_candidates} records rejected ({rate:.2%} > --max-reject-rate "
            f"{max_rate:.2%}; {reasons}); {nothing_written}, see {path}"
        )
    return path if rejects.total else None

"""Input helpers shared by the engine pipelines (learn, plan, predict)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gpsgpu.backend import Backend, backend_of, resolve, use_device_pool
from gpsgpu.blocklist import Blocklist
from gpsgpu.config import IngestConfig
from gpsgpu.errors import InputError
from gpsgpu.io.blocklist import effective_blocklist
from gpsgpu.io.parquet import read_services
from gpsgpu.io.sources import PARQUET_MAGIC
from gpsgpu.partition import HostPartitions


def _is_parquet(path: str | os.PathLike[str]) -> bool:
    path = Path(path)
    if str(path) == "-" or not path.is_file():
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None


def read_scan(
    inputs: list[str],
    *,
    backend: Backend,
    fmt: str = "auto",
    max_reject_rate: float | None = None,
    what: str = "input",
    allow_empty: bool = False,
    asn_table: Any = None,
    default_port: int | None = None,
    port_flag: bool = True,
) -> tuple[Any, list[dict[str, Any]]]:
    """A services frame from a services table (Parquet) or scan records of any supported format
    (``asn_table``: ASNs for records that carry none, as ``gpsgpu ingest --asn-file``;
    ``default_port``: the port of records that carry none, as ``--default-port``, which the
    command has when ``port_flag``).

    Returns the frame (on ``backend``) and a description of the inputs for ``metadata.json``.
    Raises :class:`InputError` when the input is unusable or holds no service (unless
    ``allow_empty``: a scan of a few /24s may find nothing).
    """
    if len(inputs) == 1 and fmt in ("auto", "services") and _is_parquet(inputs[0]):
        frame = read_services(inputs[0], backend)
        described = [{"path": str(inputs[0]), "format": "services"}]
    else:
        from gpsgpu.io.ingest import ingest

        flags: dict[str, Any] = {"format": fmt, "backend": backend.value}
        if max_reject_rate is not None:
            flags["max_reject_rate"] = max_reject_rate
        if default_port is not None:
            flags["default_port"] = default_port
        from gpsgpu.io.records import no_port_note

        result = ingest(inputs, IngestConfig(**flags), asn_table, allow_empty=allow_empty)
        counts = result.counts
        note = no_port_note(result.rejects)
        if counts.get("reject_rate", 0.0) > IngestConfig(**flags).max_reject_rate:
            fix = (
                "give --default-port PORT"
                if port_flag
                else ("run 'gpsgpu ingest --default-port PORT' first and give its table")
            )
            hint = (
                f"records without a port: {fix}"
                if note
                else f"is it a scan of the format {fmt!r}? (try 'gpsgpu ingest' to see the rejects)"
            )
            raise InputError(
                f"{what} {', '.join(inputs)}: {counts['rejected']} of {counts['candidates']} records "
                f"rejected; {hint}"
            )
        if note:
            # The note already says "give --default-port PORT", which this command may not take.
            how = "" if port_flag else " (with 'gpsgpu ingest', then give its table)"
            print(f"{note}{how}", file=sys.stderr)
        frame = result.frame
        described = result.inputs
    if len(frame) == 0 and not allow_empty:
        raise InputError(f"{what} {', '.join(inputs)}: no services in it")
    return frame, described


def open_scan(
    inputs: list[str],
    *,
    backend: Backend,
    fmt: str = "auto",
    max_reject_rate: float | None = None,
    what: str = "input",
    default_port: int | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """Like :func:`read_scan`, but one services Parquet table is not read whole: it comes back as a
    :class:`~gpsgpu.io.partitions.ParquetHostPartitions` that stages read host partition by host
    partition (out of core; the same results). Scan records are ingested in memory as before.
    """
    if len(inputs) == 1 and fmt in ("auto", "services") and _is_parquet(inputs[0]):
        from gpsgpu.io.partitions import ParquetHostPartitions

        source = ParquetHostPartitions(inputs[0], backend)
        if len(source) == 0:
            raise InputError(f"{what} {inputs[0]}: no services in it")
        return source, [{"path": str(inputs[0]), "format": "services"}]
    return read_scan(
        inputs,
        backend=backend,
        fmt=fmt,
        max_reject_rate=max_reject_rate,
        what=what,
        default_port=default_port,
    )


def engine_backend(requested: str, cluster: str) -> Backend:
    """The backend of an engine command; on the GPU in this process, with one RMM pool for cuDF and
    CuPy (a ``--cluster`` gives its workers their own)."""
    backend = resolve(requested)
    if backend is Backend.GPU and cluster == "none":
        use_device_pool()
    return backend


def bytes_to_device(scan: Any) -> int | None:
    """Bytes of a scan's columns the command copied to the device (0 on the CPU); None when its
    partitions were read by a cluster's workers (each onto its own device, not counted here)."""
    if isinstance(scan, HostPartitions):
        if getattr(scan, "read_elsewhere", False):
            return None
        return int(getattr(scan, "bytes_to_device", 0))
    if backend_of(scan) is not Backend.GPU:
        return 0
    return int(scan.memory_usage(deep=True).sum())


def whole_frame(scan: Any, columns: list[str]) -> Any:
    """``columns`` of every row of a scan as one pandas frame (a :class:`HostPartitions` source is
    read whole, those columns only kept)."""
    if isinstance(scan, HostPartitions):
        scan = next(iter(scan.partitions(1)))
    frame = scan[columns]
    return frame.to_pandas() if backend_of(frame) is Backend.GPU else frame


def blocklist_for(paths: tuple[str, ...] | list[str], *, plans: Iterable[str | None] = ()) -> Blocklist:
    """The built-in IANA blocklist plus every ``--blocklist`` file plus the blocklists the ``plans``
    (PLAN/ folders) were made with: a user blocklist given to ``plan`` binds what follows from it."""
    from gpsgpu.io.plan import read_plan_blocklist

    blocklist = effective_blocklist(list(paths))
    for plan in plans:
        if plan is not None:
            blocklist = blocklist.union(read_plan_blocklist(plan))
    return blocklist

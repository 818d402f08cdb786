"""``gpsgpu ingest`` and ``gpsgpu stats``."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from gpsgpu import schema
from gpsgpu.backend import Backend
from gpsgpu.config import IngestConfig, as_dict
from gpsgpu.errors import InputError, UsageError
from gpsgpu.io.asn import read_asn_table
from gpsgpu.io.ingest import ingest
from gpsgpu.io.metadata import Timings, build_metadata, metadata_path_for, write_metadata
from gpsgpu.io.parquet import read_services, write_services
from gpsgpu.io.records import no_port_note
from gpsgpu.io.rejects import enforce_reject_rate

log = logging.getLogger(__name__)


def run_ingest(inputs: list[str], output: str | os.PathLike[str], config: IngestConfig) -> dict[str, Any]:
    """Ingest ``inputs`` into the services table ``output`` (+ metadata, + rejects when any).

    Fails, leaving no table behind, when the reject rate exceeds ``config.max_reject_rate``.
    """
    output = Path(output)
    if str(output) == "-":
        raise UsageError("ingest writes Parquet with metadata beside it; give a file name to -o, not '-'")
    if output.is_dir():
        raise UsageError(f"-o {output}: is a folder; give the Parquet file to write")
    timings = Timings()
    asn_table = None
    if config.asn_file:
        with timings.step("read_asn_file"):
            asn_table = read_asn_table(config.asn_file)
    with timings.step("ingest"):
        result = ingest(inputs, config, asn_table)
    note = no_port_note(result.rejects)
    if note:  # the fix, said where the user looks (before the reject rate can end the run)
        print(note, file=sys.stderr)
    counts = result.counts
    rejects_path = enforce_reject_rate(
        result.rejects, output=output, n_candidates=counts["candidates"], max_rate=config.max_reject_rate
    )
    reasons = ", ".join(f"{k} {v}" for k, v in counts["rejected_by_reason"].items())
    if counts["services"] == 0:
        raise InputError(
            f"no services in {counts['records']} records "
            f"(filtered: {counts['filtered_by_reason']}); no table written"
        )
    metadata = build_metadata(
        command="ingest",
        config=as_dict(config),
        inputs={"files": result.inputs},
        backend=result.backend.value,
        counts=counts,
        timings=timings,
        extra={
            "outputs": {
                "services": str(output),
                "rejects": str(rejects_path) if result.rejects.total else None,
            }
        },
    )
    # The table carries its metadata in its footer, so one rename replaces both; the sidecar JSON
    # is the readable copy (a kill between the two leaves the table's own record authoritative).
    with timings.step("write"):
        write_services(result.frame, output, metadata=metadata)
    write_metadata(metadata_path_for(output), metadata)
    rate = counts["records"] / max(timings["ingest"], 1e-9)
    print(
        f"gpsgpu: ingest: {counts['records']:,} records -> {counts['services']:,} services "
        f"({counts['duplicates_merged']:,} duplicates merged, {counts['filtered']:,} filtered, "
        f"{counts['rejected']:,} rejected{': ' + reasons if reasons else ''}) in {timings['ingest']:.2f} s "
        f"({rate:,.0f} records/s) -> {output}",
        file=sys.stderr,
    )
    if rejects_path:
        print(f"gpsgpu: ingest: rejected records with their line numbers: {rejects_path}", file=sys.stderr)
    return metadata


def services_stats(services: Any, /, *, top: int = 10) -> dict[str, Any]:
    """Summary statistics of a services table (host-side numbers; works on pandas or cuDF)."""
    n_services = len(services)
    ports_per_host = services.groupby(schema.IP).size()
    n_hosts = len(ports_per_host)
    by_port = services.groupby(schema.PORT).size().sort_values(ascending=False)
    by_protocol = services.groupby(schema.PROTOCOL).size().sort_values(ascending=False)
    histogram = ports_per_host.clip(upper=11).value_counts().sort_index()
    to_host = Backend.GPU if type(services).__module__.startswith("cudf") else Backend.CPU

    def host(series: Any) -> Any:
        return series.to_pandas() if to_host is Backend.GPU else series

    by_port, by_protocol, histogram = host(by_port), host(by_protocol), host(histogram)
    top_ports = by_port.head(top)
    return {
        "services": int(n_services),
        "hosts": int(n_hosts),
        "ports": len(by_port),
        "asns": int(services[schema.ASN][services[schema.ASN] != 0].nunique()),
        "services_per_host_mean": round(n_services / n_hosts, 4) if n_hosts else 0.0,
        "hosts_by_port_count": {
            ("11+" if int(k) == 11 else str(int(k))): int(v) for k, v in histogram.items()
        },
        "hosts_usable_by_gps": int(((ports_per_host >= 2) & (ports_per_host <= 10)).sum()),
        "top_ports": [{"port": int(p), "services": int(n)} for p, n in top_ports.items()],
        "top_ports_share": round(float(top_ports.sum()) / n_services, 4) if n_services else 0.0,
        "top_protocols": [
            {"protocol": str(p) or "(none)", "services": int(n)} for p, n in by_protocol.head(top).items()
        ],
    }


def run_stats(table: str | os.PathLike[str], *, top: int = 10, as_json: bool = False) -> dict[str, Any]:
    services = read_services(table, Backend.CPU)
    if len(services) == 0:
        raise InputError(f"{table}: the services table is empty")
    stats = services_stats(services, top=top)
    if as_json:
        print(json.dumps(stats, indent=2))
    else:
        print_stats(stats)
    return stats


def print_stats(stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{stats['services']:,}[/] services on [bold]{stats['hosts']:,}[/] hosts, "
        f"{stats['ports']:,} distinct ports, {stats['asns']:,} ASes; "
        f"{stats['hosts_usable_by_gps']:,} hosts with 2..10 ports (what GPS learns from)"
    )
    hosts = Table(title="hosts by number of open ports")
    hosts.add_column("ports", justify="right")
    hosts.add_column("hosts", justify="right")
    for k, v in stats["hosts_by_port_count"].items():
        hosts.add_row(k, f"{v:,}")
    ports = Table(title=f"top ports ({stats['top_ports_share']:.1%} of services)")
    ports.add_column("port", justify="right")
    ports.add_column("services", justify="right")
    for row in stats["top_ports"]:
        ports.add_row(str(row["port"]), f"{row['services']:,}")
    protocols = Table(title="top protocols")
    protocols.add_column("protocol")
    protocols.add_column("services", justify="right")
    for row in stats["top_protocols"]:
        protocols.add_row(row["protocol"], f"{row['services']:,}")
    console.print(hosts, ports, protocols)

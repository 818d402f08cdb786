"""``gpsgpu simulate`` and ``gpsgpu sim-scan``: a simulated Internet, its seed scan, its statistics.

``NET/`` holds:

- ``seed.parquet``: the seed scan (every port of a ``--seed-fraction`` sample of addresses), a
  services table as ``gpsgpu ingest`` writes it (``seed.gps.jsonl.zst`` too with ``--export gps``);
- ``params.json``: the parameters and seed that regenerate everything (ground truth included);
- ``truth.parquet``: the ground truth, when it is small enough (``--truth``);
- ``stats.md`` / ``stats.json``: the simulation's numbers beside the GPS talk's;
- ``metadata.json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import zstandard

from gpsgpu import schema
from gpsgpu.backend import Backend, resolve, to_numpy
from gpsgpu.config import SimulateConfig, as_dict
from gpsgpu.distributed import SERIAL, Mapper, check_cluster, open_cluster
from gpsgpu.errors import InputError, UsageError
from gpsgpu.io.atomic import atomic_dir, atomic_open
from gpsgpu.io.blocklist import read_blocklist
from gpsgpu.io.metadata import Timings, build_metadata, write_metadata
from gpsgpu.io.parquet import read_table, write_services, write_table
from gpsgpu.io.predictions import SHARDS_DIR, read_targets
from gpsgpu.progress import Progress as Bar
from gpsgpu.sim import ServiceArrays, SimInternet, SimParams, read_params, write_params
from gpsgpu.sim.partitioned import (
    Block,
    concat_seed,
    concat_truth,
    generate_universe,
    internet_for,
    scan_rows,
)
from gpsgpu.sim.scanner import SimScanner
from gpsgpu.sim.stats import sim_statistics, statistics_markdown

log = logging.getLogger(__name__)

SEED_FILE = "seed.parquet"
TRUTH_FILE = "truth.parquet"
GPS_EXPORT_FILE = "seed.gps.jsonl.zst"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def write_gps_jsonl(table: Any, path: Path) -> Path:
    """A services Arrow table as GPS-schema JSON Lines (``ip, p, asn, data, fingerprint, w``), zstd."""
    ips = schema.ip_to_str(np.asarray(table[schema.IP]).astype(np.uint32)).tolist()
    columns = [
        table[c].to_pylist() for c in (schema.PORT, schema.ASN, schema.BANNER, schema.PROTOCOL, schema.WINDOW)
    ]
    compressor = zstandard.ZstdCompressor(level=3)
    with atomic_open(path, "wb") as raw, compressor.stream_writer(raw, closefd=False) as handle:
        for ip, p, asn, data, fingerprint, w in zip(ips, *columns, strict=True):
            record = {"ip": ip, "p": p, "asn": asn, "data": data, "fingerprint": fingerprint, "w": w}
            handle.write(orjson.dumps(record) + b"\n")
    return path


def simulate(
    config: SimulateConfig, backend: Backend, progress: Progress = _quiet, *, mapper: Mapper = SERIAL
) -> tuple[SimInternet, ServiceArrays, ServiceArrays, int]:
    """Build the Internet, its ground truth and its seed scan (no I/O).

    The universe is generated in blocks of /16s through ``mapper`` (this process or Dask workers);
    the result does not depend on the number of blocks or workers.
    Returns the internet, the truth, the seed services and the number of seed addresses probed.
    """
    internet, blocks = _generate(config, backend, progress, mapper)
    n_sampled = sum(b.n_sampled for b in blocks)
    return internet, concat_truth(internet, blocks), concat_seed(internet, blocks), n_sampled


def _generate(
    config: SimulateConfig,
    backend: Backend,
    progress: Progress,
    mapper: Mapper,
    *,
    render_seed: bool = False,
    render_truth: bool = False,
) -> tuple[SimInternet, list[Block]]:
    params = SimParams(hosts=config.hosts, seed=config.seed, day=config.day, port_spread=config.port_spread)
    internet = internet_for(params, backend.value)
    progress(f"generating {internet.n_addresses:,} addresses in {internet.n_prefixes} /16s")
    blocks = generate_universe(
        internet,
        mapper=mapper,
        seed_fraction=config.seed_fraction,
        render_seed=render_seed,
        render_truth=render_truth,
    )
    return internet, blocks


def run_simulate(
    output: str | os.PathLike[str], config: SimulateConfig, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Write a simulated Internet's seed scan, parameters, statistics (and ground truth) to ``output``."""
    return simulate_to(output, config, progress=progress)[0]


def simulate_to(
    output: str | os.PathLike[str], config: SimulateConfig, *, progress: Progress | None = None
) -> tuple[dict[str, Any], SimInternet, ServiceArrays]:
    """:func:`run_simulate`, also returning the internet and its ground truth (for the demo)."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UsageError(f"-o {output}: exists and is not a folder")
    progress = progress or (lambda msg: print(f"gpsgpu: simulate: {msg}", file=sys.stderr))
    started = time.perf_counter()
    backend = resolve(config.backend)
    timings = Timings()
    with (
        timings.step("generate"),
        Bar("simulate: generating", heartbeat=True),
        open_cluster(config.cluster, workers=config.workers) as mapper,
    ):
        # Workers render the seed's banners (and the truth's, when it is always written).
        internet, blocks = _generate(
            config, backend, progress, mapper, render_seed=True, render_truth=config.truth == "always"
        )
        truth = concat_truth(internet, blocks)
        seed = concat_seed(internet, blocks)
        n_sampled = sum(b.n_sampled for b in blocks)
        # Only the rendered tables are kept: the blocks' arrays are in ``truth`` and ``seed`` now.
        seed_tables = [b.seed_table for b in blocks]
        truth_tables = [b.truth_table for b in blocks]
        del blocks
    with timings.step("statistics"):
        stats = sim_statistics(truth)
    describe = internet.describe()
    write_truth = config.truth == "always" or (
        config.truth == "auto" and len(truth) <= config.truth_max_services
    )
    with atomic_dir(output) as tmp:
        with timings.step("write_seed"), Bar("simulate: writing the seed", heartbeat=True):
            seed_table = _concat_tables(seed_tables)
            write_table(seed_table, tmp / SEED_FILE)
            if config.export == "gps":
                write_gps_jsonl(seed_table, tmp / GPS_EXPORT_FILE)
        if write_truth:
            progress(f"writing the ground truth ({len(truth):,} services)")
            with timings.step("write_truth"), Bar("simulate: writing the ground truth", heartbeat=True):
                truth_table = (
                    _concat_tables(truth_tables)
                    if all(t is not None for t in truth_tables)
                    else internet.to_arrow(truth)
                )
                write_table(truth_table, tmp / TRUTH_FILE)
        write_params(internet.params, tmp, {"seed_fraction": config.seed_fraction})
        (tmp / "stats.json").write_text(
            json.dumps({"universe": describe, **stats}, indent=2) + "\n", encoding="utf-8"
        )
        (tmp / "stats.md").write_text(statistics_markdown(stats, describe), encoding="utf-8")
        counts = {
            "addresses": internet.n_addresses,
            "prefixes_16": internet.n_prefixes,
            "ases": internet.n_as,
            "hosts": stats["hosts"],
            "services": stats["services"],
            "seed_addresses": n_sampled,
            "seed_services": len(seed),
            "seed_probes": n_sampled * 65536,
        }
        metadata = build_metadata(
            command="simulate",
            config=as_dict(config),
            backend=backend.value,
            counts=counts,
            timings=timings,
            extra={
                "sim": internet.params.to_dict(),
                "universe": describe,
                "outputs": {
                    "seed": SEED_FILE,
                    "truth": TRUTH_FILE if write_truth else None,
                    "params": "params.json",
                    "stats": ["stats.md", "stats.json"],
                    "export": GPS_EXPORT_FILE if config.export == "gps" else None,
                },
            },
        )
        write_metadata(tmp / "metadata.json", metadata)
    # The whole command's time: generating is a small part once the ground truth is written.
    steps = ", ".join(f"{name.replace('_', ' ')} {seconds:.1f} s" for name, seconds in timings.items())
    progress(
        f"{stats['hosts']:,} hosts, {stats['services']:,} services in {internet.n_addresses:,} addresses; "
        f"seed: {len(seed):,} services of {n_sampled:,} addresses ({config.seed_fraction:g}) in "
        f"{time.perf_counter() - started:.2f} s ({steps}) -> {output}"
    )
    return metadata, internet, truth


def _concat_tables(tables: list[Any]) -> pa.Table:
    """Arrow tables of the blocks, in order, as one table of one chunk per column.

    One chunk, because Parquet pages follow the input's chunks: the file's bytes must not depend on
    the number of blocks.
    """
    present = [t for t in tables if t is not None]
    if not present:
        raise AssertionError("no rendered block")  # pragma: no cover - a block always renders
    return present[0] if len(present) == 1 else pa.concat_tables(present).combine_chunks()


# --- reading a NET/ folder back --------------------------------------------------------------------


def open_net(net: str | os.PathLike[str], backend: Backend) -> tuple[SimInternet, dict[str, Any]]:
    """The :class:`SimInternet` of a ``NET/`` folder and the other recorded settings."""
    params, extra = read_params(net)
    return SimInternet(params, backend), extra


def truth_of(
    net: str | os.PathLike[str], internet: SimInternet, *, cluster: str = "none", workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(ip uint32, port uint16)`` of the ground truth: from ``truth.parquet`` or regenerated.

    Regeneration runs in blocks of /16s on ``cluster`` (``--cluster``, opened only then); the result
    does not depend on the number of blocks or workers.
    """
    path = Path(net) / TRUTH_FILE
    if path.is_file():
        table = read_table(path, columns=[schema.IP, schema.PORT])
        return np.asarray(table[schema.IP]).astype(np.uint32), np.asarray(table[schema.PORT]).astype(
            np.uint16
        )
    with open_cluster(cluster, workers=workers) as mapper:
        blocks = generate_universe(internet, mapper=mapper, what="evaluate: ground truth")
    truth = concat_truth(internet, blocks)
    return np.asarray(to_numpy(truth.ip)), np.asarray(to_numpy(truth.port))


def seed_keys_of(net: str | os.PathLike[str]) -> np.ndarray:
    """``ip << 16 | port`` of the seed scan in ``NET/``."""
    path = Path(net) / SEED_FILE
    if not path.is_file():
        raise InputError(f"{net}: no {SEED_FILE}; is this a folder written by 'gpsgpu simulate'?")
    table = read_table(path, columns=[schema.IP, schema.PORT])
    return schema.pack_service(
        np.asarray(table[schema.IP]).astype(np.uint32), np.asarray(table[schema.PORT]).astype(np.uint16)
    )


def read_plan_rows(plan: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """The rows of a ``PLAN/`` folder written by ``gpsgpu plan``: ports, networks (uint32), step."""
    plan = Path(plan)
    meta_path = plan / "metadata.json"
    if not meta_path.is_file():
        raise InputError(f"{plan}: not a plan folder (no metadata.json); make one with 'gpsgpu plan'")
    try:
        step = int(json.loads(meta_path.read_text(encoding="utf-8"))["params"]["step"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{meta_path}: not a plan's metadata ({exc})") from None
    csv = plan / f"priors_scan_{step}.csv"
    if not csv.is_file():
        raise InputError(f"{plan}: no {csv.name}")
    ports: list[int] = []
    nets: list[str] = []
    try:
        text = csv.read_text(encoding="ascii")
    except (UnicodeDecodeError, OSError) as exc:
        why = type(exc).__name__
        raise InputError(f"{csv}: not a plan's rows (port,a.b.c.d/{step} lines; {why})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            port, cidr = line.split(",", 1)
            ports.append(int(port))
            nets.append(cidr.split("/", 1)[0])
        except ValueError:
            raise InputError(f"{csv}:{number}: not a 'port,a.b.c.d/{step}' line: {line[:80]!r}") from None
    networks = schema.ip_from_str(np.asarray(nets, dtype=object)) if nets else np.zeros(0, np.uint32)
    return np.asarray(ports, dtype=np.uint16), networks.astype(np.uint32), step


def run_sim_scan(
    net: str | os.PathLike[str],
    plan: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    backend: str,
    cluster: str = "none",
    workers: int = 0,
) -> dict[str, Any]:
    """Scan a plan on a simulated Internet: the priors scan's results as a services table.

    The /16s the plan's rows touch are scanned in blocks through ``--cluster`` (this process or
    Dask workers); the services found do not depend on the number of blocks or workers. Given a
    ``PRED/`` folder instead, its targets are probed (one probe each, blocklisted ones skipped) and
    the services that answer are written: what probing a round of predictions finds. Given a
    campaign step folder (``CAMP/steps/NNN/``, :mod:`gpsgpu.campaign.schedule`), exactly what it
    lists is scanned, as a user's scanner would: a rows step's ``rows.csv`` (``port,cidr`` pairs of
    any prefix length, e.g. the improved schedule's live /24s, blocklists and skipped hosts already
    cut) or a targets step's ``targets.txt``.
    """
    check_cluster(cluster)
    output = Path(output)
    if output.is_dir():
        raise UsageError(f"-o {output}: is a folder; give the Parquet file to write")
    chosen = resolve(backend)
    timings = Timings()
    if (Path(plan) / "step.json").is_file():  # a campaign step: exactly its rows.csv or targets.txt
        return _sim_scan_campaign_step(net, Path(plan), output, chosen, timings)
    targets = (Path(plan) / SHARDS_DIR).is_dir()  # a PRED/ folder: probe its targets
    with timings.step("read"):
        internet, _ = open_net(net, chosen)
        blocklist = None  # a PRED/ folder's targets: the built-in blocklist
        if targets:
            ips, ports = read_targets(plan)
        else:
            ports, networks, step = read_plan_rows(plan)
            if (Path(plan) / "blocklist.txt").is_file():
                # What ZMap would skip running the plan (a tail plan adds the hosts known live).
                blocklist = read_blocklist(Path(plan) / "blocklist.txt", what="plan blocklist")
    with timings.step("scan"), open_cluster(cluster, workers=workers) as mapper:
        scanner = SimScanner(internet, blocklist)
        if targets:
            from gpsgpu.sim.scanner import services_at

            hit = np.asarray(to_numpy(scanner.probe(ips, ports)), bool)
            frame = services_at(internet, np.unique(schema.pack_service(ips[hit], ports[hit])))
            n_found = len(frame)
        else:
            scanner.n_probes += int(scanner.row_probes(networks, step).sum())
            found = scan_rows(internet, ports, networks, step, mapper=mapper)
            found = found.take(internet.xp.flatnonzero(~scanner.blocklist.contains(found.ip)))
            frame = internet.to_frame(found)
            n_found = len(found)
    with timings.step("write"):
        write_services(frame, output)
    counts = {
        ("targets" if targets else "plan_rows"): int(ports.size),
        "probes": scanner.n_probes,
        "services": n_found,
    }
    from gpsgpu.io.metadata import metadata_path_for

    metadata = build_metadata(
        command="sim-scan",
        config={
            "net": str(net),
            "plan": str(plan),
            "backend": chosen.value,
            "cluster": cluster,
            "workers": workers,
        },
        backend=chosen.value,
        counts=counts,
        timings=timings,
    )
    write_metadata(metadata_path_for(output), metadata)
    what = f"{ports.size:,} predicted targets" if targets else f"{ports.size:,} (port, /{step}) rows"
    print(
        f"gpsgpu: sim-scan: {what}, {scanner.n_probes:,} probes -> {n_found:,} services "
        f"in {sum(timings.values()):.2f} s -> {output}",
        file=sys.stderr,
    )
    return metadata


def _sim_scan_campaign_step(
    net: str | os.PathLike[str], folder: Path, output: Path, backend: Backend, timings: Timings
) -> dict[str, Any]:
    """``sim-scan NET CAMP/steps/NNN``: scan the step's ``rows.csv`` or probe its ``targets.txt``, as
    a user's scanner would (the services found, ready for ``gpsgpu campaign next --found``)."""
    from gpsgpu.pipelines.campaign import sim_scan_step

    with timings.step("read"):
        internet, _ = open_net(net, backend)
    with timings.step("scan"):
        scanner = SimScanner(internet)
        frame, probes = sim_scan_step(scanner, folder)
    with timings.step("write"):
        write_services(frame, output)
    from gpsgpu.io.metadata import metadata_path_for

    counts = {"probes": int(probes), "services": len(frame)}
    metadata = build_metadata(
        command="sim-scan",
        config={"net": str(net), "plan": str(folder), "backend": backend.value},
        backend=backend.value,
        counts=counts,
        timings=timings,
    )
    write_metadata(metadata_path_for(output), metadata)
    print(
        f"gpsgpu: sim-scan: campaign step {folder}, {probes:,} probes -> {len(frame):,} services "
        f"in {sum(timings.values()):.2f} s -> {output}",
        file=sys.stderr,
    )
    return metadata

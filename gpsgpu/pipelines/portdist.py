"""``gpsgpu portdist ...``: ingest, simulate, build, neighbors, distance, export, block, peers.

Each ``run_*`` function reads its inputs (through :mod:`gpsgpu.io`), calls the pure stages of
:mod:`gpsgpu.portdist`, writes its outputs atomically with a ``metadata.json`` and prints a
one-line summary on stderr; query results go to stdout as JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from gpsgpu.backend import Backend, resolve, to_backend
from gpsgpu.config import (
    PortdistBlockConfig,
    PortdistBuildConfig,
    PortdistIngestConfig,
    PortdistPeersConfig,
    PortdistSimulateConfig,
    as_dict,
)
from gpsgpu.errors import InputError, UsageError
from gpsgpu.io import portdist as store
from gpsgpu.io.metadata import Timings, build_metadata, metadata_path_for, write_metadata
from gpsgpu.io.parquet import write_table
from gpsgpu.io.probes import probe_days, probe_files, read_probes, read_probes_days, write_probes
from gpsgpu.io.rejects import enforce_reject_rate
from gpsgpu.portdist import apsp, graph, replay, sequences
from gpsgpu.portdist import columns as C
from gpsgpu.progress import Progress

log = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(f"gpsgpu: portdist {message}", file=sys.stderr)


# --- ingest ---------------------------------------------------------------------------------------


def run_portdist_ingest(
    inputs: list[str], output: str | Path, config: PortdistIngestConfig
) -> dict[str, Any]:
    """Captures / flow records -> ``PROBES.parquet`` (+ rejects + metadata); fails past the reject rate."""
    output = Path(output)
    if str(output) == "-" or output.is_dir():
        raise UsageError("-o must name the probes Parquet file to write")
    started = time.perf_counter()
    timings = Timings()
    with timings.step("read"):
        result = read_probes(inputs, allow_truncated=config.allow_truncated)
    counts = result.counts
    rejects_path = enforce_reject_rate(
        result.rejects,
        output=output,
        n_candidates=counts["records"],
        max_rate=config.max_reject_rate,
        nothing_written="no probes written",
    )
    reasons = ", ".join(f"{k} {v}" for k, v in counts["rejected_by_reason"].items())
    if counts["probes"] == 0:
        raise InputError(
            f"no TCP SYN probes in {counts['records']} records (filtered: {counts['filtered_by_reason']}); "
            "nothing written"
        )
    with timings.step("write"):
        write_probes(result.table, output)
    metadata = build_metadata(
        command="portdist ingest",
        config=as_dict(config),
        inputs={"files": result.inputs},
        backend="cpu",
        counts=counts,
        timings=timings,
        extra={"outputs": {"probes": str(output), "rejects": str(rejects_path) if rejects_path else None}},
    )
    write_metadata(metadata_path_for(output), metadata)
    _say(
        f"ingest: {counts['records']:,} records -> {counts['probes']:,} probes "
        f"({counts['filtered']:,} filtered: {counts['filtered_by_reason']}; "
        f"{counts['rejected']:,} rejected{': ' + reasons if reasons else ''}) "
        f"in {time.perf_counter() - started:.2f} s -> {output}"
    )
    if result.rejects.total:
        _say(f"ingest: rejected records with their packet/line numbers: {rejects_path}")
    return metadata


# --- simulate -------------------------------------------------------------------------------------


def run_portdist_simulate(output: str | Path, config: PortdistSimulateConfig) -> dict[str, Any]:
    """A simulated darknet: ``DIR/probes/YYYY-MM-DD.parquet`` + ground truth + metadata."""
    from gpsgpu.io.atomic import atomic_dir
    from gpsgpu.portdist.simulate import DarknetParams, campaigns_frame, families_frame, simulate_day

    params = DarknetParams(
        probes_per_day=config.probes_per_day, days=config.days, start=config.start, seed=config.seed
    )
    output = Path(output)
    started = time.perf_counter()
    timings = Timings()
    per_day: dict[str, int] = {}
    with atomic_dir(output) as tmp:
        (tmp / "probes").mkdir()
        with Progress("portdist simulate", total=params.days, unit="days") as bar:
            for day in range(params.days):
                with timings.step("simulate"):
                    frame = simulate_day(params, day)
                with timings.step("write"):
                    table = pa.Table.from_pandas(frame, preserve_index=False).cast(C.LABELLED_PROBES_SCHEMA)
                    write_table(table, tmp / "probes" / f"{params.day_name(day)}.parquet")
                per_day[params.day_name(day)] = len(frame)
                bar.advance(1)
        write_table(pa.Table.from_pandas(campaigns_frame(), preserve_index=False), tmp / "campaigns.parquet")
        write_table(pa.Table.from_pandas(families_frame(), preserve_index=False), tmp / "families.parquet")
        metadata = build_metadata(
            command="portdist simulate",
            config=as_dict(config),
            backend="cpu",
            counts={"probes": int(sum(per_day.values())), "probes_by_day": per_day},
            timings=timings,
            extra={"params": params.as_dict()},
        )
        write_metadata(tmp / "metadata.json", metadata)
    total = sum(per_day.values())
    _say(
        f"simulate: {params.days} day(s), {total:,} probes on {params.prefix}/{params.prefix_len} "
        f"in {time.perf_counter() - started:.2f} s (simulate {timings['simulate']:.1f} s, "
        f"write {timings['write']:.1f} s) -> {output}"
    )
    return metadata


# --- build ----------------------------------------------------------------------------------------


def _is_parquet(path: str) -> bool:
    p = Path(path)
    if p.is_dir():
        return True
    try:
        with open(p, "rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError:
        return False


def _count_day(table: pa.Table, backend: Backend, config: PortdistBuildConfig) -> tuple[Any, dict[str, Any]]:
    """One day's probes -> its transition counts and statistics (on ``backend``)."""
    frame = to_backend(table.select([C.TS, C.SRC, C.DST, C.DPORT]).to_pandas(), backend)
    ordered = sequences.sort_probes(frame)
    seqs = sequences.classify_sequences(
        ordered,
        vertical_min_ports=config.vertical_min_ports,
        horizontal_max_ports=config.horizontal_max_ports,
        horizontal_min_dsts=config.horizontal_min_dsts,
    )
    counts = sequences.count_transitions(ordered, seqs)
    scan = seqs[C.SCAN]
    by_class: dict[str, Any] = {}
    for code, name in C.SCAN_NAMES.items():
        mask = scan == code
        by_class[name] = {"sequences": int(mask.sum()), "probes": int(seqs["n_probes"][mask].sum())}
    stats = {
        "thresholds": _thresholds(config),
        "probes": len(frame),
        "sequences": by_class,
        "transitions": int(counts[C.N].sum()),
        "pairs": len(counts),
    }
    return counts[[C.A, C.B, C.N, C.SOURCES]], stats


def _window_days(window: str, end: int, stored: list[int]) -> list[int]:
    first = end - C.WINDOWS[window] + 1
    return [d for d in stored if first <= d <= end]


def _distances(edges: Any, config: PortdistBuildConfig, engine: str, timings: Timings, label: str):
    with Progress(f"portdist build: {label} distances", heartbeat=True):
        return _distances_of(edges, config, engine, timings, label)


def _distances_of(edges: Any, config: PortdistBuildConfig, engine: str, timings: Timings, label: str):
    with timings.step(f"{label}:rescale"):
        edges = graph.rescale_invert(edges, rescale=config.rescale)
    with timings.step(f"{label}:graph"):
        port_graph = graph.port_graph(edges)
    with timings.step(f"{label}:apsp"):
        neighbors = apsp.nearest_ports(port_graph, k=config.store_k, engine=engine)
    return edges, port_graph, neighbors


def run_portdist_build(inputs: list[str], output: str | Path, config: PortdistBuildConfig) -> dict[str, Any]:
    """Probes -> daily counts (added to ``DIST/daily``) -> the requested windows' distances."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UsageError(f"-o {output}: exists and is not a folder")
    backend = resolve(config.backend)
    engine = config.apsp if config.apsp != "auto" else ("gpu" if backend is Backend.GPU else "scipy")
    if engine == "gpu" and backend is not Backend.GPU:
        raise UsageError("--apsp gpu needs --backend gpu (a CUDA device with CuPy)")
    if not inputs and not config.from_model and not store.daily_days(output):
        raise UsageError(
            f"nothing to build: give probes, or --from-model, or a DIST ({output}) with daily counts"
        )
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings = Timings()
    described: list[dict[str, Any]] = []
    days_written: list[str] = []
    n_probes = 0
    counting_s = 0.0
    # Captures and flow records are read whole (with the ingest reject rules); Parquet probes are
    # read one UTC day at a time, so a year of them never has to fit in memory at once.
    raw = [i for i in inputs if not _is_parquet(i)]
    if raw:
        with timings.step("read"):
            result = read_probes(raw)
        if result.counts["reject_rate"] > config.max_reject_rate:
            raise InputError(
                f"{result.rejects.total} of {result.records} records rejected; run 'gpsgpu portdist ingest' "
                "to see them (and --max-reject-rate to accept them)"
            )
        described += result.inputs
        tmp_table = result.table
    else:
        tmp_table = None
    files = [f for i in inputs if _is_parquet(i) for f in probe_files(i)]
    described += [{"path": str(f), "bytes": f.stat().st_size} for f in files]
    with timings.step("scan_days"):
        days = probe_days(files) if files else []
        if tmp_table is not None and tmp_table.num_rows:
            days = sorted(set(days) | set(np.unique(np.asarray(tmp_table[C.TS]) // C.DAY_US).tolist()))
    day_bar = Progress("portdist build: counting days", total=len(days), unit="days")
    for day in days:
        day_bar.note(store.day_name(day))
        with timings.step("read"):
            parts = [read_probes_days(files, day, day)] if files else []
            if tmp_table is not None:
                ts = np.asarray(tmp_table[C.TS])
                parts.append(tmp_table.filter(pa.array(ts // C.DAY_US == day)))
            table = pa.concat_tables([p.select([C.TS, C.SRC, C.DST, C.DPORT]) for p in parts])
        start = time.perf_counter()
        with timings.step("count"):
            counts, stats = _count_day(table, backend, config)
        counting_s += time.perf_counter() - start
        with timings.step("write_daily"):
            store.write_daily(output, day, counts, stats)
        n_probes += table.num_rows
        days_written.append(store.day_name(day))
        day_bar.advance()
        log.info(
            "day %s: %s probes, %s transitions",
            store.day_name(day),
            f"{stats['probes']:,}",
            f"{stats['transitions']:,}",
        )
    day_bar.close()
    stored = store.daily_days(output)
    windows_built: dict[str, Any] = {}
    if stored and config.windows:
        end = store.day_number(config.end) if config.end else stored[-1]
        for window in config.windows:
            days_in = _window_days(window, end, stored)
            if not days_in:
                log.warning(
                    "window %s ending %s: no daily counts in it; not built", window, store.day_name(end)
                )
                continue
            mixed = {
                day: s.get("thresholds")
                for day, s in store.read_daily_stats(output, days_in).items()
                if s.get("thresholds") != _thresholds(config)
            }
            if mixed:
                log.warning(
                    "window %s: %d day(s) were counted with other scan thresholds (%s); rebuild them from "
                    "their probes to compare like with like",
                    window,
                    len(mixed),
                    ", ".join(sorted(mixed)[:3]),
                )
            with timings.step(f"{window}:sum"):
                daily = store.read_daily(output, days_in)
                counts = to_backend(daily, backend)
                edges = graph.symmetrize(graph.sum_counts(counts), min_sources=config.min_sources)
            if len(edges) == 0:
                log.warning("window %s: no edge made by %d+ sources; not built", window, config.min_sources)
                continue
            edges, port_graph, neighbors = _distances(edges, config, engine, timings, window)
            info = {
                "first_day": store.day_name(end - C.WINDOWS[window] + 1),
                "last_day": store.day_name(end),
                "days_with_counts": len(days_in),
                "ports": port_graph.n_nodes,
                "edges": port_graph.n_edges,
                "store_k": config.store_k,
                "rescale": config.rescale,
                "min_sources": config.min_sources,
                "thresholds": _thresholds(config),
                "engine": engine,
                "backend": backend.value,
                "apsp_s": round(timings[f"{window}:apsp"], 6),
            }
            store.write_window(output, C.DARKNET, window, edges, neighbors, info)
            windows_built[window] = info
    if config.from_model:
        from gpsgpu.portdist.colocation import colocation_edges

        with timings.step("model:read"):
            pairs, hosts, model_info = store.read_model_colocation(Path(config.from_model))
            edges = colocation_edges(
                to_backend(pairs, backend),
                to_backend(hosts, backend),
                min_hosts=config.min_sources,
                prior_hosts=config.colocation_prior,
            )
        if len(edges) == 0:
            raise InputError(
                f"--from-model {config.from_model}: no two ports share {config.min_sources}+ hosts"
            )
        edges, port_graph, neighbors = _distances(edges, config, engine, timings, "model")
        info = {
            **model_info,
            "ports": port_graph.n_nodes,
            "edges": port_graph.n_edges,
            "store_k": config.store_k,
            "rescale": config.rescale,
            "min_sources": config.min_sources,
            "weight": "n / sqrt((n_a + prior_hosts) (n_b + prior_hosts))",
            "prior_hosts": config.colocation_prior,
            "engine": engine,
            "backend": backend.value,
        }
        store.write_window(output, C.MODEL, C.SEED_WINDOW, edges, neighbors, info)
        windows_built["model/seed"] = info
    counts_meta = {
        "probes": n_probes,
        "days_counted": days_written,
        "days_stored": [store.day_name(d) for d in stored],
        "probes_per_s": round(n_probes / counting_s, 1) if counting_s else None,
        "windows": windows_built,
    }
    metadata = build_metadata(
        command="portdist build",
        config=as_dict(config),
        inputs={"probes": described},
        backend=backend.value,
        counts=counts_meta,
        timings=timings,
        extra={"dist_format": store.DIST_FORMAT},
    )
    write_metadata(output / "metadata.json", metadata)
    built = (
        ", ".join(f"{w} ({i['ports']:,} ports, {i['edges']:,} edges)" for w, i in windows_built.items())
        or "none"
    )
    rate = f" ({n_probes / counting_s:,.0f} probes/s)" if counting_s else ""
    _say(
        f"build: {n_probes:,} probes over {len(days_written)} day(s) counted{rate}; "
        f"{len(stored)} day(s) stored; windows: {built} in {time.perf_counter() - started:.1f} s -> {output}"
    )
    return metadata


def _thresholds(config: Any) -> dict[str, int]:
    return {
        "vertical_min_ports": config.vertical_min_ports,
        "horizontal_max_ports": config.horizontal_max_ports,
        "horizontal_min_dsts": config.horizontal_min_dsts,
    }


# --- queries --------------------------------------------------------------------------------------


def _load(
    dist: str | Path, source: str | None, window: str | None
) -> tuple[store.StoredWindow, graph.PortGraph]:
    dist = Path(dist)
    source, window = store.pick_window(dist, source, window)
    stored = store.read_window(dist, source, window)
    return stored, graph.port_graph(stored.edges)


def _check_port(port: int, what: str) -> None:
    if not 0 <= int(port) <= 65_535:
        raise UsageError(f"{what} must be a TCP port (0..65535), not {port}")


def run_portdist_neighbors(
    dist: str | Path, port: int, *, k: int = 10, source: str | None = None, window: str | None = None
) -> dict[str, Any]:
    """Print ``port``'s ``k`` nearest ports as JSON on stdout."""
    _check_port(port, "PORT")
    if k < 1:
        raise UsageError(f"-k must be at least 1, not {k}")
    stored, port_graph = _load(dist, source, window)
    table = stored.neighbors[stored.neighbors[C.PORT] == port]
    if k > int(stored.info.get("store_k", 0)):
        table = apsp.neighbors_on_demand(port_graph, port, k)
    table = table.sort_values(C.RANK).head(k)
    result = {
        "port": int(port),
        "source": stored.source,
        "window": stored.window,
        "first_day": stored.info.get("first_day"),
        "last_day": stored.info.get("last_day"),
        "observed": port_graph.index_of(port) >= 0,
        "neighbors": [
            {"port": int(n), "distance": round(float(d), 6)}
            for n, d in zip(table[C.NEIGHBOR], table[C.DISTANCE], strict=True)
        ],
    }
    print(json.dumps(result))
    return result


def run_portdist_distance(
    dist: str | Path, a: int, b: int, *, source: str | None = None, window: str | None = None
) -> dict[str, Any]:
    """Print the distance between ports ``a`` and ``b`` as JSON (``null`` when unobserved/unreachable)."""
    _check_port(a, "A")
    _check_port(b, "B")
    stored, port_graph = _load(dist, source, window)
    hit = stored.neighbors[(stored.neighbors[C.PORT] == a) & (stored.neighbors[C.NEIGHBOR] == b)]
    value = float(hit[C.DISTANCE].iloc[0]) if len(hit) else apsp.pair_distance(port_graph, a, b)
    result = {
        "a": int(a),
        "b": int(b),
        "distance": None if value is None else round(float(value), 6),
        "source": stored.source,
        "window": stored.window,
        "observed": {str(a): port_graph.index_of(a) >= 0, str(b): port_graph.index_of(b) >= 0},
    }
    print(json.dumps(result))
    return result


def run_portdist_export(
    dist: str | Path,
    output: str,
    *,
    source: str | None = None,
    window: str | None = None,
    k: int | None = None,
    fmt: str | None = None,
) -> dict[str, Any]:
    """Write a whole window's distances (every reachable pair, or each port's ``k`` nearest)."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from gpsgpu.io.atomic import atomic_path

    stored, port_graph = _load(dist, source, window)
    fmt = fmt or ("parquet" if output.endswith(".parquet") else "csv")
    if fmt not in ("csv", "parquet"):
        raise UsageError(f"--format must be csv or parquet, not {fmt!r}")
    if fmt == "parquet" and output == "-":
        raise UsageError("Parquet cannot go to stdout; give a file name or --format csv")
    schema = pa.schema([(C.A, pa.uint16()), (C.B, pa.uint16()), (C.DISTANCE, pa.float32())])
    rows = 0

    def write_all(sink: Any) -> None:
        nonlocal rows
        writer = pq.ParquetWriter(sink, schema, compression="zstd") if fmt == "parquet" else None
        if writer is None:
            sink.write(b"a,b,distance\n")
        for block in apsp.iter_pair_distances(port_graph, k=k):
            table = pa.Table.from_pandas(block, preserve_index=False).cast(schema)
            rows += table.num_rows
            if writer is not None:
                writer.write_table(table)
            else:
                pa_csv.write_csv(table, sink, write_options=pa_csv.WriteOptions(include_header=False))
        if writer is not None:
            writer.close()

    if output == "-":
        write_all(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        with atomic_path(Path(output)) as tmp, open(tmp, "wb") as handle:
            write_all(handle)
        # The sidecar says gpsgpu wrote the file, so a later export may replace it (gpsgpu.io.outputs).
        write_metadata(
            metadata_path_for(output),
            build_metadata(
                command="portdist export",
                config={"source": stored.source, "window": stored.window, "k": k, "format": fmt},
                inputs={"dist": str(dist)},
                counts={"rows": rows},
            ),
        )
    what = f"each port's {k} nearest" if k else "every reachable pair"
    _say(f"export: {stored.source}/{stored.window}: {rows:,} rows ({what}) -> {output}")
    return {"rows": rows, "source": stored.source, "window": stored.window}


# --- blocking replay ------------------------------------------------------------------------------


def _replay_sources(ordered: Any, thresholds: dict[str, int]) -> np.ndarray:
    """Sources to replay: at least one tailored sequence and no full vertical or horizontal scan."""
    seqs = sequences.classify_sequences(ordered, **thresholds)
    scan = seqs[C.SCAN].to_numpy()
    src = seqs[C.SRC].to_numpy()
    scanners = np.unique(src[(scan == C.VERTICAL) | (scan == C.HORIZONTAL)])
    tailored = np.unique(src[scan == C.TAILORED])
    return np.setdiff1d(tailored, scanners)


def _replay_probes(
    files: list[Path], days: list[int], thresholds: dict[str, int]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    table = read_probes_days(files, days[0], days[-1])
    frame = sequences.sort_probes(table.to_pandas())
    keep = _replay_sources(frame, thresholds)
    chosen = frame[np.isin(frame[C.SRC].to_numpy(), keep)]
    return chosen, {"probes": len(frame), "replayed_probes": len(chosen), "replayed_sources": int(keep.size)}


class _LiveReplay:
    """A live view of the replay on stderr (a bar and the running true-positive rate per campaign),
    only when stderr is a terminal."""

    def __init__(self, names: dict[int, str], title: str) -> None:
        from gpsgpu.progress import enabled

        self.names = names
        self.title = title
        self.live: Any = None
        self.enabled = enabled()

    def __enter__(self) -> _LiveReplay:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(stderr=True), refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def __call__(self, done: int, total: int, totals: dict[int, list[float]]) -> None:
        if self.live is None:
            return
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table(title=f"{self.title}: {done:,}/{total:,} first probes replayed", expand=False)
        table.add_column("campaign")
        table.add_column("later ports", justify="right")
        table.add_column("blocked", justify="right")
        for cid, (n, hit) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:12]:
            table.add_row(self.names.get(cid, str(cid)), f"{int(n):,}", f"{hit / max(n, 1):.1%}")
        self.live.update(Group(ProgressBar(total=max(total, 1), completed=done), table))


def _campaign_names(campaigns: pd.DataFrame | None) -> dict[int, str]:
    if campaigns is None:
        return {-1: "all"}
    return dict(zip(campaigns[C.CAMPAIGN].astype(int), campaigns["name"], strict=True))


def _markdown(frame: pd.DataFrame, percent: tuple[str, ...] = (), digits: int = 2) -> str:
    cols = list(frame.columns)
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---" if c == cols[0] else "---:" for c in cols) + "|",
    ]
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(cols, row, strict=True):
            if col in percent:
                cells.append(f"{100 * float(value):.1f}%")
            elif isinstance(value, float | np.floating):
                cells.append(f"{float(value):.{digits}f}")
            elif isinstance(value, int | np.integer):
                cells.append(f"{int(value):,}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_portdist_block(probes: str, dist: str | Path, config: PortdistBlockConfig) -> dict[str, Any]:
    """Replay ``probes`` under the k-nearest blocking policy of one stored window; report per campaign."""
    started = time.perf_counter()
    timings = Timings()
    stored, _ = _load(dist, config.source, config.window)
    index = replay.NeighborIndex.from_frame(stored.neighbors, name=f"{stored.source}/{stored.window}")
    thresholds = stored.info.get("thresholds") or _thresholds(config)
    files = probe_files(probes)
    days = probe_days(files)
    if not days:
        raise InputError(f"{probes}: no probes")
    with timings.step("read"):
        frame, counts = _replay_probes(files, days, thresholds)
    campaigns, _ = store.read_campaigns(probes)
    names = _campaign_names(campaigns)
    with timings.step("replay"):
        events = replay.replay_events(frame)
        with _LiveReplay(names, f"blocking k={config.k}") as live:
            per_source = replay.replay_blocking(events, index=index, k=config.k, progress=live)
    summary = replay.summarize_replay(per_source)
    summary.insert(1, "name", [names.get(int(c), str(c)) for c in summary[C.CAMPAIGN]])
    if campaigns is not None:
        kinds = dict(zip(campaigns[C.CAMPAIGN].astype(int), campaigns["kind"], strict=True))
        summary.insert(2, "kind", [kinds.get(int(c), "") for c in summary[C.CAMPAIGN]])
    overall = replay.summarize_replay(per_source.assign(_all=0), by="_all").drop(columns="_all")
    report = {
        "k": config.k,
        "source": stored.source,
        "window": stored.window,
        "counts": {**counts, "events": len(events)},
        "overall": overall.to_dict(orient="records")[0] if len(overall) else {},
        "campaigns": summary.to_dict(orient="records"),
    }
    if config.output:
        out = Path(config.output)
        if out.suffix == ".json":
            store.write_json(out, report)
        else:
            from gpsgpu.io.atomic import atomic_path

            with atomic_path(out) as tmp:
                summary.to_csv(tmp, index=False)
        write_metadata(
            metadata_path_for(out),
            build_metadata(
                command="portdist block",
                config=as_dict(config),
                inputs={"probes": str(probes), "dist": str(dist)},
                counts=report["overall"],
            ),
        )
    shown = summary.drop(columns=[C.CAMPAIGN]).rename(
        columns={
            "new_ports_blocked": "new ports blocked",
            "later_probes_blocked": "later probes blocked",
            "fp_ports_per_source": "FP ports/source",
            "fp_share": "FP share",
        }
    )
    print(_markdown(shown, percent=("new ports blocked", "later probes blocked", "FP share")))
    o = report["overall"]
    _say(
        f"block: k={config.k} with {stored.source}/{stored.window}: "
        f"{counts['replayed_sources']:,} sources replayed; "
        f"new ports blocked {o.get('new_ports_blocked', 0):.1%}, later probes blocked "
        f"{o.get('later_probes_blocked', 0):.1%}, {o.get('fp_ports_per_source', 0):.1f} FP ports/source "
        f"in {time.perf_counter() - started:.1f} s (replay {timings['replay']:.1f} s)"
    )
    return report


# --- peers ----------------------------------------------------------------------------------------


def run_portdist_peers(
    probes: str, dist: str | Path, output: str | Path, config: PortdistPeersConfig
) -> dict[str, Any]:
    """port2dist against numeric distance, IANA ranges and Word2Vec: quality and blocking, one table."""
    from gpsgpu.io.atomic import atomic_dir
    from gpsgpu.portdist import peers

    try:
        import gensim  # noqa: F401
    except ImportError:
        raise UsageError("peers trains Word2Vec with gensim: pip install 'gpsgpu[portdist]'") from None
    timings = Timings()
    dist, output = Path(dist), Path(output)
    _, window = store.pick_window(dist, C.DARKNET, config.window)
    stored = store.read_window(dist, C.DARKNET, window)
    thresholds = stored.info.get("thresholds") or {}
    first, last = store.day_number(stored.info["first_day"]), store.day_number(stored.info["last_day"])
    files = probe_files(probes)
    days = probe_days(files)
    train_days = [d for d in days if first <= d <= last]
    replay_days = (
        [d for d in days if d > last][: config.replay_days]
        if config.replay_days
        else [d for d in days if d > last]
    )
    in_sample = not replay_days
    if in_sample:
        # The window's own last day(s), as many as a held-out replay would take: replaying the
        # whole window (7 days for a week) took 7 times as long for a score that is in-sample anyway.
        replay_days = train_days[-config.replay_days :] if config.replay_days else train_days
        log.warning(
            "no probes after the window's last day %s: replaying %s..%s of the window itself (in-sample)",
            stored.info["last_day"],
            store.day_name(replay_days[0]) if replay_days else "-",
            store.day_name(replay_days[-1]) if replay_days else "-",
        )
    if not train_days:
        raise InputError(
            f"{probes}: no probes within the window {stored.info['first_day']}..{stored.info['last_day']}"
        )
    campaigns, families = store.read_campaigns(probes)
    if campaigns is None or families is None:
        raise InputError(
            f"{probes}: peers needs ground truth (campaigns.parquet, families.parquet of 'portdist simulate')"
        )
    vocab = np.unique(np.concatenate([stored.edges[C.A].to_numpy(), stored.edges[C.B].to_numpy()])).astype(
        np.int64
    )
    kmax = max(max(config.ks), config.quality_k) + 32
    indexes: dict[str, replay.NeighborIndex] = {
        "port2dist": replay.NeighborIndex.from_frame(stored.neighbors, "port2dist")
    }
    if (C.MODEL, C.SEED_WINDOW) in store.list_windows(dist):
        model = store.read_window(dist, C.MODEL, C.SEED_WINDOW)
        indexes["port2dist (GPS co-location)"] = peers.restrict_index(
            replay.NeighborIndex.from_frame(model.neighbors, "model"), vocab
        )
    started = time.perf_counter()
    with (
        timings.step("word2vec:sequences"),
        Progress(f"portdist peers: sequences of {len(train_days)} day(s)", heartbeat=True),
    ):
        table = read_probes_days(files, train_days[0], train_days[-1])
        ordered = sequences.sort_probes(table.to_pandas())
        seqs = sequences.classify_sequences(ordered, **thresholds)
        tokens, starts = sequences.sequence_tokens(ordered, seqs)
        del table, ordered
    with (
        timings.step("word2vec"),
        Progress("portdist peers: word2vec", total=config.w2v_epochs, unit="epochs", heartbeat=True) as bar,
    ):
        w2v = peers.train_word2vec(
            tokens,
            starts,
            dim=config.w2v_dim,
            epochs=config.w2v_epochs,
            min_count=config.w2v_min_count,
            seed=config.seed,
            on_epoch=bar.advance,
        )
        indexes["word2vec"] = peers.word2vec_index(w2v, vocab, k=kmax)
    indexes["numeric distance"] = peers.numeric_index(vocab, k=kmax)
    indexes["IANA ranges"] = peers.iana_index(vocab, k=kmax)
    fam = families[families[C.PORT].astype(np.int64).isin(vocab)]
    quality = {name: peers.neighbor_quality(idx, fam, k=config.quality_k) for name, idx in indexes.items()}
    with timings.step("read_replay"):
        frame, replay_counts = _replay_probes(files, replay_days, thresholds)
        events = replay.replay_events(frame)
    names = _campaign_names(campaigns)
    kinds = dict(zip(campaigns[C.CAMPAIGN].astype(int), campaigns["kind"], strict=True))
    family_of = dict(zip(campaigns[C.CAMPAIGN].astype(int), campaigns["family"], strict=True))
    rows, by_campaign = [], []
    runs = [(name, idx, k) for name, idx in indexes.items() for k in config.ks]
    with (
        timings.step("replay"),
        Progress("portdist peers: replay", total=len(runs) * len(events), unit="events") as bar,
    ):
        for run, (name, idx, k) in enumerate(runs):
            bar.note(f"{run + 1}/{len(runs)}: {name} k={k}")
            base = run * len(events)
            per_source = replay.replay_blocking(
                events, index=idx, k=k, progress=lambda done, _n, _totals, base=base: bar.update(base + done)
            )
            per_source["kind"] = [kinds.get(int(c), "") for c in per_source[C.CAMPAIGN]]
            camp = replay.summarize_replay(per_source)
            camp.insert(0, "metric", name)
            camp.insert(1, "k", k)
            camp.insert(3, "name", [names.get(int(c), str(c)) for c in camp[C.CAMPAIGN]])
            camp.insert(4, "kind", [kinds.get(int(c), "") for c in camp[C.CAMPAIGN]])
            camp.insert(5, "family", [family_of.get(int(c), "") for c in camp[C.CAMPAIGN]])
            by_campaign.append(camp)
            tailored = replay.summarize_replay(per_source, by="kind")
            for _, r in tailored.iterrows():
                rows.append(
                    {"metric": name, "k": k, "kind": r["kind"], **{c: r[c] for c in tailored.columns[1:]}}
                )
    by_k = pd.DataFrame(rows)
    campaign_table = pd.concat(by_campaign, ignore_index=True)
    main = by_k[(by_k["k"] == config.k) & (by_k["kind"] == "tailored")].set_index("metric")
    table_rows = []
    for name in indexes:
        q = quality[name]
        r = main.loc[name] if name in main.index else None
        table_rows.append(
            {
                "metric": name,
                f"quality@{config.quality_k}": float(q["quality"].mean()) if len(q) else 0.0,
                "new ports blocked": float(r["new_ports_blocked"]) if r is not None else 0.0,
                "later probes blocked": float(r["later_probes_blocked"]) if r is not None else 0.0,
                "FP ports/source": float(r["fp_ports_per_source"]) if r is not None else 0.0,
                "FP share": float(r["fp_share"]) if r is not None else 0.0,
            }
        )
    table = pd.DataFrame(table_rows)
    pct = (f"quality@{config.quality_k}", "new ports blocked", "later probes blocked", "FP share")
    md = _markdown(table, percent=pct)
    family_quality = pd.concat(
        [q.groupby("family")["quality"].mean().rename(name) for name, q in quality.items()], axis=1
    ).reset_index()
    note = (
        f"Window {stored.info['first_day']}..{stored.info['last_day']} ({stored.info['ports']:,} ports); "
        "replayed "
        f"{store.day_name(replay_days[0])}..{store.day_name(replay_days[-1])}"
        f"{' (in-sample: no later day)' if in_sample else ' (held out)'}; "
        f"{replay_counts['replayed_sources']:,} sources; blocking k={config.k}, tailored campaigns."
    )
    with atomic_dir(output) as tmp:
        (tmp / "peers.md").write_text(
            f"{note}\n\n{md}\n\nNeighbour quality@{config.quality_k} by family:\n\n"
            f"{_markdown(family_quality, percent=tuple(quality))}\n",
            encoding="utf-8",
        )
        table.to_csv(tmp / "peers.csv", index=False)
        by_k.to_csv(tmp / "peers_by_k.csv", index=False)
        campaign_table.to_csv(tmp / "peers_by_campaign.csv", index=False)
        family_quality.to_csv(tmp / "quality_by_family.csv", index=False)
        _plot(by_k, table, config, tmp / "peers.png")
        metadata = build_metadata(
            command="portdist peers",
            config=as_dict(config),
            inputs={"probes": str(probes), "dist": str(dist), "window": window},
            backend="cpu",
            counts={
                **replay_counts,
                "events": len(events),
                "vocabulary": int(vocab.size),
                "in_sample": in_sample,
            },
            timings=timings,
        )
        write_metadata(tmp / "metadata.json", metadata)
    print(note)
    print()
    print(md)
    _say(
        f"peers: {len(indexes)} metrics x {len(config.ks)} k on {len(events):,} replayed first probes "
        f"in {time.perf_counter() - started:.1f} s (word2vec {timings['word2vec']:.1f} s, replay "
        f"{timings['replay']:.1f} s) -> {output}"
    )
    return {"table": table, "by_k": by_k, "campaigns": campaign_table, "quality": family_quality}


def _plot(by_k: pd.DataFrame, table: pd.DataFrame, config: PortdistPeersConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    tailored = by_k[by_k["kind"] == "tailored"]
    for name, rows in tailored.groupby("metric", sort=False):
        rows = rows.sort_values("k")
        left.plot(rows["fp_ports_per_source"], 100 * rows["new_ports_blocked"], marker="o", label=name)
        for _, r in rows.iterrows():
            left.annotate(
                f"k={int(r['k'])}", (r["fp_ports_per_source"], 100 * r["new_ports_blocked"]), fontsize=7
            )
    left.set_xlabel("false positives: predicted ports never probed, per source")
    left.set_ylabel("new ports blocked before first probe (%)")
    left.set_title("Predictive blocking of tailored scans (held-out day)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    quality_col = f"quality@{config.quality_k}"
    right.barh(table["metric"], 100 * table[quality_col], color="tab:blue", alpha=0.8, label=quality_col)
    right.barh(
        table["metric"],
        100 * table["new ports blocked"],
        color="tab:orange",
        alpha=0.6,
        height=0.4,
        label=f"new ports blocked (k={config.k})",
    )
    right.set_xlabel("%")
    right.set_xlim(0, 100)
    right.invert_yaxis()
    right.set_title("Neighbour quality and blocking")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""``DIST/``: what ``gpsgpu portdist build`` writes and the query commands read.

Layout (Parquet, zstd; every file and window folder written atomically)::

    DIST/metadata.json                      the last build: config, inputs, counts, timings
    DIST/daily/YYYY-MM-DD.parquet           a uint16, b uint16, n int64, sources int64 (one UTC day)
    DIST/daily/YYYY-MM-DD.json              that day's probes and sequences by scan class
    DIST/<source>/<window>/edges.parquet    a, b (a < b), weight, sources, length
    DIST/<source>/<window>/neighbors.parquet  port, rank, neighbor, distance (k per port)
    DIST/<source>/<window>/window.json      source, window, first/last day, parameters, sizes

``<source>`` is ``darknet`` (windows ``day``, ``week``, ``month``, ``year``) or ``model``
(window ``seed``: co-location in a GPS seed scan). Daily counts are the additive state: a window
is rebuilt from them without reading probes again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from gpsgpu.errors import InputError
from gpsgpu.io.atomic import atomic_dir, atomic_open
from gpsgpu.io.parquet import read_table, write_table
from gpsgpu.portdist import columns as C

DAILY = "daily"
WINDOW_INFO = "window.json"
EDGES_FILE = "edges.parquet"
NEIGHBORS_FILE = "neighbors.parquet"
#: Bumped whenever the files of DIST/ change meaning; readers refuse other formats.
DIST_FORMAT = 1

_EPOCH = dt.date(1970, 1, 1)


def day_name(day: int) -> str:
    """Days since 1970-01-01 -> ``YYYY-MM-DD``."""
    return (_EPOCH + dt.timedelta(days=int(day))).isoformat()


def day_number(name: str) -> int:
    """``YYYY-MM-DD`` -> days since 1970-01-01."""
    return (dt.date.fromisoformat(name) - _EPOCH).days


def _to_table(frame: Any, schema: pa.Schema) -> pa.Table:
    if type(frame).__module__.startswith("cudf"):
        frame = frame.to_pandas()
    return (
        pa.Table.from_pandas(frame[schema.names], preserve_index=False)
        .cast(schema)
        .replace_schema_metadata(None)
    )


def write_daily(dist: Path, day: int, counts: Any, stats: dict[str, Any]) -> Path:
    """Write one day's transition counts (``a, b, n, sources``) and its statistics."""
    folder = Path(dist) / DAILY
    path = write_table(_to_table(counts, C.COUNTS_SCHEMA), folder / f"{day_name(day)}.parquet")
    with atomic_open(folder / f"{day_name(day)}.json", "w", encoding="utf-8") as handle:
        json.dump({"day": day_name(day), "dist_format": DIST_FORMAT, **stats}, handle, indent=2)
        handle.write("\n")
    return path


def daily_days(dist: Path) -> list[int]:
    """Days (since the epoch) that have stored counts, ascending."""
    folder = Path(dist) / DAILY
    if not folder.is_dir():
        return []
    days = []
    for f in folder.glob("*.parquet"):
        try:
            days.append(day_number(f.stem))
        except ValueError:
            continue
    return sorted(days)


def read_daily(dist: Path, days: list[int]) -> pd.DataFrame:
    """The stored counts of ``days`` (missing days count as empty), one frame with ``day int32``."""
    parts = []
    for day in days:
        path = Path(dist) / DAILY / f"{day_name(day)}.parquet"
        if path.is_file():
            frame = read_table(path).cast(C.COUNTS_SCHEMA).to_pandas()
            frame.insert(0, C.DAY, np.int32(day))
            parts.append(frame)
    if not parts:
        frame = C.COUNTS_SCHEMA.empty_table().to_pandas()
        frame.insert(0, C.DAY, np.zeros(0, np.int32))
        return frame
    return pd.concat(parts, ignore_index=True)


def read_daily_stats(dist: Path, days: list[int]) -> dict[str, dict[str, Any]]:
    out = {}
    for day in days:
        path = Path(dist) / DAILY / f"{day_name(day)}.json"
        if path.is_file():
            out[day_name(day)] = _read_json(path)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object written by this module; a truncated or corrupt one is one line naming it."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InputError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(document, dict):
        raise InputError(f"{path}: not a JSON object")
    return document


def write_window(
    dist: Path, source: str, window: str, edges: Any, neighbors: pd.DataFrame, info: dict[str, Any]
) -> Path:
    """Write one window of one source as its own folder (replacing it atomically)."""
    target = Path(dist) / source / window
    with atomic_dir(target) as tmp:
        write_table(_to_table(edges, C.EDGES_SCHEMA), tmp / EDGES_FILE)
        write_table(_to_table(neighbors, C.NEIGHBORS_SCHEMA), tmp / NEIGHBORS_FILE)
        with open(tmp / WINDOW_INFO, "w", encoding="utf-8") as handle:
            json.dump(
                {"dist_format": DIST_FORMAT, "source": source, "window": window, **info}, handle, indent=2
            )
            handle.write("\n")
    return target


@dataclass(frozen=True)
class StoredWindow:
    """A window read back: ``edges`` and ``neighbors`` frames (pandas) and its ``info``."""

    source: str
    window: str
    edges: pd.DataFrame
    neighbors: pd.DataFrame
    info: dict[str, Any]


def list_windows(dist: Path) -> list[tuple[str, str]]:
    """``(source, window)`` of every window stored in ``dist``."""
    dist = Path(dist)
    return [(info.parent.parent.name, info.parent.name) for info in sorted(dist.glob(f"*/*/{WINDOW_INFO}"))]


def check_dist(dist: Path) -> None:
    dist = Path(dist)
    if not dist.is_dir():
        raise InputError(
            f"{dist}: not a distances folder (make one with 'gpsgpu portdist build PROBES -o {dist}')"
        )


def pick_window(dist: Path, source: str | None, window: str | None) -> tuple[str, str]:
    """The ``(source, window)`` a query means: as given, else the darknet's longest window built."""
    check_dist(dist)
    available = list_windows(dist)
    if not available:
        raise InputError(f"{dist}: no windows built yet (run 'gpsgpu portdist build')")
    source = source or (C.DARKNET if any(s == C.DARKNET for s, _ in available) else available[0][0])
    windows = [w for s, w in available if s == source]
    if not windows:
        have = ", ".join(sorted({s for s, _ in available}))
        raise InputError(f"{dist}: no {source!r} distances (have: {have})")
    if window is None:
        order = [*C.WINDOWS, C.SEED_WINDOW]
        window = max(windows, key=lambda w: order.index(w) if w in order else -1)
    if window not in windows:
        raise InputError(
            f"{dist}: window {window!r} of {source} is not built (built: {', '.join(sorted(windows))})"
        )
    return source, window


def read_window(dist: Path, source: str, window: str) -> StoredWindow:
    folder = Path(dist) / source / window
    if not (folder / WINDOW_INFO).is_file():
        raise InputError(f"{folder}: not a built window")
    info = _read_json(folder / WINDOW_INFO)
    if info.get("dist_format") != DIST_FORMAT:
        raise InputError(
            f"{folder}: distances format {info.get('dist_format')}; this gpsgpu reads {DIST_FORMAT}"
        )
    edges = read_table(folder / EDGES_FILE).to_pandas()
    neighbors = read_table(folder / NEIGHBORS_FILE).to_pandas()
    return StoredWindow(source, window, edges, neighbors, info)


# --- GPS model (co-location) ----------------------------------------------------------------------


def read_model_colocation(model: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Pair and host counts of a GPS model folder.

    Uses the model's additive counts when ``gpsgpu learn --save-counts`` kept them (the rows of the
    ``L4`` feature: ``count_p2(a, L4, b)`` hosts with both, ``cp_server(a, L4)`` hosts with ``a``);
    otherwise counts host co-occurrence in the model's ``seed.parquet`` (``ip, port``).

    Returns
    -------
    (pairs, hosts, description)
        ``a uint16, b uint16, n int64`` and ``port uint16, n int64`` (pandas), and what was read.
    """
    import xxhash

    from gpsgpu.portdist.colocation import L4_FEATURE, colocation_counts

    model = Path(model)
    if not model.is_dir() or not (model / "metadata.json").is_file():
        raise InputError(
            f"--from-model {model}: not a model folder (make one with 'gpsgpu learn SEED -o {model}')"
        )
    count_p2, cp_server, seed = (
        model / "count_p2.parquet",
        model / "cp_server.parquet",
        model / "seed.parquet",
    )
    if count_p2.is_file() and cp_server.is_file():
        l4 = np.uint64(xxhash.xxh64_intdigest(L4_FEATURE.encode("utf-8"), seed=0))
        pairs = read_table(count_p2, columns=["p1", "fkey", "p2", "count_p2"]).to_pandas()
        pairs = pairs[pairs["fkey"].to_numpy(np.uint64) == l4]
        hosts = read_table(cp_server, columns=["p1", "fkey", "cp_server"]).to_pandas()
        hosts = hosts[hosts["fkey"].to_numpy(np.uint64) == l4]
        pairs = pd.DataFrame(
            {
                C.A: pairs["p1"].to_numpy(np.uint16),
                C.B: pairs["p2"].to_numpy(np.uint16),
                C.N: pairs["count_p2"].to_numpy(np.int64),
            }
        )
        hosts = pd.DataFrame(
            {C.PORT: hosts["p1"].to_numpy(np.uint16), C.N: hosts["cp_server"].to_numpy(np.int64)}
        )
        return pairs, hosts, {"model": str(model), "from": "count_p2/cp_server (L4 feature)"}
    if seed.is_file():
        services = read_table(seed, columns=["ip", "port"]).to_pandas()
        pairs, hosts = colocation_counts(services)
        return pairs, hosts, {"model": str(model), "from": "seed.parquet host co-occurrence"}
    raise InputError(
        f"--from-model {model}: neither count_p2.parquet/cp_server.parquet nor seed.parquet is there"
    )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")


def read_campaigns(path: str | os.PathLike[str]) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Ground truth beside simulated probes: ``campaigns.parquet`` and ``families.parquet`` of the
    simulation folder holding ``path`` (None when there is none)."""
    path = Path(path)
    for folder in (path, path.parent, path.parent.parent):
        camp, fam = folder / "campaigns.parquet", folder / "families.parquet"
        if camp.is_file() and fam.is_file():
            return read_table(camp).to_pandas(), read_table(fam).to_pandas()
    return None, None

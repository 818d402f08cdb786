"""``gpsgpu portdist``: simulate -> build -> query/export -> block -> peers, through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpsgpu.config import PortdistBuildConfig, PortdistSimulateConfig
from gpsgpu.io import portdist as store
from gpsgpu.pipelines.portdist import run_portdist_build, run_portdist_simulate
from gpsgpu.portdist import columns as C


def gpsgpu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def darknet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("darknet") / "sim"
    run_portdist_simulate(folder, PortdistSimulateConfig(probes_per_day=40_000, days=4, seed=1))
    return folder


@pytest.fixture(scope="module")
def dist(darknet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "dist"
    run_portdist_build(
        [str(darknet)], out, PortdistBuildConfig(windows=("day", "week"), end="2026-01-03", backend="cpu")
    )
    return out


def test_simulate_is_deterministic(darknet: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    run_portdist_simulate(again, PortdistSimulateConfig(probes_per_day=40_000, days=4, seed=1))
    for f in sorted((darknet / "probes").glob("*.parquet")):
        assert pq.read_table(f).equals(pq.read_table(again / "probes" / f.name))
    camp = pq.read_table(darknet / "campaigns.parquet").to_pandas()
    assert {"tailored", "context", "generic", "vertical", "horizontal", "noise"} <= set(camp["kind"])
    probes = pq.read_table(darknet / "probes" / "2026-01-01.parquet").to_pandas()
    assert probes[C.TS].is_monotonic_increasing
    assert (probes[C.DST].to_numpy() >> 12 == 0x64400000 >> 12).all()  # inside 100.64.0.0/20
    assert set(probes[C.CAMPAIGN]) == set(camp[C.CAMPAIGN])


def test_windows_from_daily_counts_equal_a_direct_build(darknet: Path, dist: Path, tmp_path: Path) -> None:
    # Day by day, as a service would run: each day's probes added to DIST, then the week rebuilt.
    daily = tmp_path / "daily"
    for f in sorted((darknet / "probes").glob("*.parquet"))[:3]:
        run_portdist_build([str(f)], daily, PortdistBuildConfig(windows=(), backend="cpu"))
    run_portdist_build([], daily, PortdistBuildConfig(windows=("week",), backend="cpu"))
    direct = store.read_window(dist, C.DARKNET, "week")
    rebuilt = store.read_window(daily, C.DARKNET, "week")
    pd.testing.assert_frame_equal(direct.edges, rebuilt.edges)
    pd.testing.assert_frame_equal(direct.neighbors, rebuilt.neighbors)
    # The week ending on day 3 does not see day 4, although its counts are stored.
    assert direct.info["last_day"] == "2026-01-03" and store.daily_days(dist)[-1] == store.day_number(
        "2026-01-04"
    )
    # A window is the sum of its days: the day window is the last day alone.
    day = store.read_window(dist, C.DARKNET, "day")
    counts = store.read_daily(dist, [store.day_number("2026-01-03")])
    from gpsgpu.portdist.graph import sum_counts, symmetrize

    expected = symmetrize(sum_counts(counts), min_sources=2)
    pd.testing.assert_frame_equal(day.edges[[C.A, C.B, C.WEIGHT, C.SOURCES]], expected)


def test_queries(dist: Path) -> None:
    done = gpsgpu("portdist", "neighbors", str(dist), "80", "-k", "3")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["window"] == "week" and got["observed"]
    assert len(got["neighbors"]) == 3
    assert [n["distance"] for n in got["neighbors"]] == sorted(n["distance"] for n in got["neighbors"])
    assert {n["port"] for n in got["neighbors"]} & {443, 8080, 8443}
    many = json.loads(gpsgpu("portdist", "neighbors", str(dist), "80", "-k", "100", "-w", "day").stdout)
    assert many["window"] == "day" and len(many["neighbors"]) >= 3  # k beyond the stored 64: on demand
    assert [n["distance"] for n in many["neighbors"]] == sorted(n["distance"] for n in many["neighbors"])
    first = got["neighbors"][0]
    pair = json.loads(gpsgpu("portdist", "distance", str(dist), "80", str(first["port"])).stdout)
    assert pair["distance"] == pytest.approx(first["distance"], rel=1e-6)
    far = json.loads(gpsgpu("portdist", "distance", str(dist), "80", "23").stdout)
    assert far["distance"] is None or far["distance"] > first["distance"]
    unseen = json.loads(gpsgpu("portdist", "distance", str(dist), "80", "61999").stdout)
    assert unseen["distance"] is None and unseen["observed"]["61999"] is False
    bad = gpsgpu("portdist", "distance", str(dist), "80", "70000")
    assert bad.returncode == 2 and "0..65535" in bad.stderr
    missing = gpsgpu("portdist", "neighbors", str(dist), "80", "-w", "year")
    assert missing.returncode == 3 and "not built" in missing.stderr and "Traceback" not in missing.stderr


def test_export(dist: Path, tmp_path: Path) -> None:
    done = gpsgpu("portdist", "export", str(dist), "-w", "day")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "a,b,distance"
    window = store.read_window(dist, C.DARKNET, "day")
    ports = set(window.edges[C.A]) | set(window.edges[C.B])
    assert len(lines) - 1 <= len(ports) * (len(ports) - 1) // 2
    out = tmp_path / "week.parquet"
    done = gpsgpu("portdist", "export", str(dist), "-o", str(out), "-k", "5")
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out).to_pandas()
    neighbors = store.read_window(dist, C.DARKNET, "week").neighbors
    top5 = neighbors[neighbors[C.RANK] < 5]
    assert len(table) == len(top5)
    np.testing.assert_allclose(np.sort(table[C.DISTANCE]), np.sort(top5[C.DISTANCE]), rtol=1e-6)


def test_block(darknet: Path, dist: Path, tmp_path: Path) -> None:
    report = tmp_path / "block.json"
    done = gpsgpu("portdist", "block", str(darknet), "--dist", str(dist), "-k", "5", "-o", str(report))
    assert done.returncode == 0, done.stderr
    assert "| mirai | tailored |" in done.stdout
    got = json.loads(report.read_text())
    by_name = {c["name"]: c for c in got["campaigns"]}
    assert by_name["web-common"]["new_ports_blocked"] > 0.5
    assert 0.0 <= got["overall"]["fp_share"] <= 1.0
    assert "vertical" not in by_name  # full scans are set aside, as in the build


def test_peers(darknet: Path, dist: Path, tmp_path: Path) -> None:
    out = tmp_path / "peers"
    done = gpsgpu("portdist", "peers", str(darknet), "--dist", str(dist), "-o", str(out), "-k", "5")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out / "peers.csv").set_index("metric")
    assert list(table.index) == ["port2dist", "word2vec", "numeric distance", "IANA ranges"]
    assert (out / "peers.png").stat().st_size > 10_000
    assert "(held out)" in (out / "peers.md").read_text()
    # On the simulated darknet port2dist beats the naive metrics on both scores.
    for rival in ("numeric distance", "IANA ranges"):
        assert table.loc["port2dist", "quality@5"] > table.loc[rival, "quality@5"]
        assert table.loc["port2dist", "new ports blocked"] > table.loc[rival, "new ports blocked"]


def fake_model(folder: Path, with_counts: bool) -> Path:
    import xxhash

    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({"tool": "gpsgpu", "command": "learn"}))
    ips = np.repeat(np.arange(1, 61, dtype=np.uint32), 2)
    ports = np.tile(np.array([80, 443], np.uint16), 60)
    ips = np.concatenate([ips, np.arange(100, 130, dtype=np.uint32).repeat(2)])
    ports = np.concatenate([ports, np.tile(np.array([22, 2222], np.uint16), 30)])
    ips = np.concatenate([ips, np.array([1, 2, 3, 100], np.uint32)])
    ports = np.concatenate([ports, np.array([3306, 3306, 3306, 3306], np.uint16)])
    pq.write_table(pa.table({"ip": ips, "port": ports}), folder / "seed.parquet")
    if with_counts:
        l4 = xxhash.xxh64_intdigest(b"L4", seed=0)
        other = xxhash.xxh64_intdigest(b"fingerprint: http", seed=0)
        pq.write_table(
            pa.table(
                {
                    "p1": pa.array([80, 443, 80, 443], pa.uint16()),
                    "fkey": pa.array([l4, l4, other, other], pa.uint64()),
                    "p2": pa.array([443, 80, 443, 80], pa.uint16()),
                    "count_p2": pa.array([60, 60, 5, 5], pa.int64()),
                }
            ),
            folder / "count_p2.parquet",
        )
        pq.write_table(
            pa.table(
                {
                    "p1": pa.array([80, 443], pa.uint16()),
                    "fkey": pa.array([l4, l4], pa.uint64()),
                    "cp_server": pa.array([60, 60], pa.int64()),
                }
            ),
            folder / "cp_server.parquet",
        )
    return folder


@pytest.mark.parametrize("with_counts", [False, True])
def test_from_model(tmp_path: Path, with_counts: bool) -> None:
    model = fake_model(tmp_path / "model", with_counts)
    out = tmp_path / "dist"
    done = gpsgpu("portdist", "build", "-o", str(out), "--from-model", str(model))
    assert done.returncode == 0, done.stderr
    got = json.loads(gpsgpu("portdist", "neighbors", str(out), "80", "--source", "model").stdout)
    assert got["window"] == "seed" and got["neighbors"][0]["port"] == 443
    info = store.read_window(out, C.MODEL, C.SEED_WINDOW).info
    assert info["from"].startswith("count_p2" if with_counts else "seed.parquet")


def test_usage_errors(tmp_path: Path) -> None:
    done = gpsgpu("portdist", "build", "-o", str(tmp_path / "d"))
    assert done.returncode == 2 and "nothing to build" in done.stderr
    done = gpsgpu(
        "portdist", "build", str(tmp_path / "nope.parquet"), "-o", str(tmp_path / "d"), "-w", "decade"
    )
    assert done.returncode == 2 and "--window" in done.stderr
    done = gpsgpu("portdist", "neighbors", str(tmp_path / "nothing"), "80")
    assert done.returncode == 3 and "not a distances folder" in done.stderr

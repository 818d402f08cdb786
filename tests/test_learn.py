"""Phase 1a against the DuckDB oracle of the reference's queries (GPS_REFERENCE.md §3)."""

from __future__ import annotations

import numpy as np
import oracle_gps
import pandas as pd
import pytest
from gps_data import make_services

from gpsgpu import schema
from gpsgpu.backend import Backend, to_backend
from gpsgpu.learn import learn_patterns

COLUMNS = ["ip", "p", "neededP", "count_p2", "hitrate", "cp_server", "server"]


def pattern_rows(frame: pd.DataFrame) -> list[tuple]:
    """Patterns as sorted plain tuples (None for nulls), so that the engine and DuckDB compare."""
    out = [
        tuple(
            None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v
            for v in (int(x) if isinstance(x, np.integer) else x for x in row)
        )
        for row in frame[COLUMNS].astype(object).itertuples(index=False)
    ]
    return sorted(out, key=lambda t: (t[0], -1 if t[1] is None else t[1]))


@pytest.fixture(scope="module")
def seed() -> pd.DataFrame:
    return make_services(700, seed=3)


@pytest.fixture(scope="module")
def oracle_patterns(seed: pd.DataFrame) -> dict[bool, list[tuple]]:
    con = oracle_gps.connect()
    return {
        use_asn: pattern_rows(oracle_gps.learn(con, seed, hitrate=1e-5, use_asn=use_asn))
        for use_asn in (True, False)
    }


@pytest.mark.parametrize("n_partitions", [1, 2, 7])
def test_patterns_equal_the_oracle(
    seed: pd.DataFrame, oracle_patterns: dict[bool, list[tuple]], backend: Backend, n_partitions: int
) -> None:
    result = learn_patterns(
        to_backend(seed, backend), hitrate=1e-5, n_partitions=n_partitions, chunk_pairs=4096
    )
    assert pattern_rows(result.patterns) == oracle_patterns[True]


def test_patterns_without_asn_equal_the_oracle(
    seed: pd.DataFrame, oracle_patterns: dict[bool, list[tuple]]
) -> None:
    result = learn_patterns(seed, hitrate=1e-5, use_asn=False)
    assert pattern_rows(result.patterns) == oracle_patterns[False]


def test_a_higher_hitrate_threshold_equals_the_oracle(seed: pd.DataFrame) -> None:
    expected = pattern_rows(oracle_gps.learn(oracle_gps.connect(), seed, hitrate=0.6))
    assert pattern_rows(learn_patterns(seed, hitrate=0.6, n_partitions=2).patterns) == expected


def test_the_seed_exercises_the_tie_break(seed: pd.DataFrame) -> None:
    """Best predictors tied on hitrate and port exist, so the feature-string order decides them."""
    con = oracle_gps.connect()
    oracle_gps.learn(con, seed, hitrate=1e-5)
    (n_tied,) = con.execute(
        """
        WITH c AS (
            SELECT b.ip, b.p, a.p AS p1, hr.hitrate,
                   max(hr.hitrate) OVER (PARTITION BY b.ip, b.p) AS top
            FROM fh a JOIN sp b ON a.ip = b.ip AND a.p <> b.p
                 JOIN hr ON hr.p1 = a.p AND hr.f = a.f AND hr.p2 = b.p),
        t AS (SELECT ip, p, p1, count(*) AS n FROM c WHERE hitrate = top GROUP BY ALL)
        SELECT count(*) FROM (SELECT ip, p, min(p1) AS p1 FROM t GROUP BY ip, p) m JOIN t USING (ip, p, p1)
        WHERE n > 1
        """
    ).fetchone()
    assert n_tied > 0
    (n_single,) = con.execute("SELECT count(*) FROM hosts WHERE c = 1").fetchone()
    (n_over,) = con.execute("SELECT count(*) FROM hosts WHERE c > 10").fetchone()
    assert n_single > 0 and n_over > 0


def test_counts_do_not_depend_on_partitions_or_chunks(seed: pd.DataFrame) -> None:
    one = learn_patterns(seed, n_partitions=1, keep_counts=True)
    many = learn_patterns(seed, n_partitions=7, chunk_pairs=1024, keep_counts=True)
    for name in ("count_p2", "cp_server"):
        a = getattr(one, name).sort_values(list(getattr(one, name).columns)).reset_index(drop=True)
        b = getattr(many, name).sort_values(list(getattr(many, name).columns)).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
    assert one.rules.equals(many.rules)


def test_hosts_over_ten_ports_add_nothing_and_single_hosts_add_their_port() -> None:
    rows = [{"ip": 1, "port": port} for port in range(1000, 1011)]  # 11 ports: a pseudo-service host
    rows.append({"ip": 2, "port": 443})
    frame = pd.DataFrame(rows).assign(asn=0, protocol="http", window=0, banner="x")
    frame = frame.astype({"ip": np.uint32, "port": np.uint16, "asn": np.uint32, "window": np.int32})
    result = learn_patterns(frame)
    assert pattern_rows(result.patterns) == [(2, None, 443, None, None, None, None)]
    assert len(result.rules) == 0
    assert result.counts["n_hosts_over"] == 1
    assert len(result.seed) == 12  # predict must still drop every seed service


def test_hitrate_needs_more_than_two_hosts() -> None:
    """Three identical hosts give count_p2 = 3 > 2; two would give none."""
    rows = [{"ip": ip, "port": port} for ip in (10, 11, 12) for port in (22, 80)]
    frame = pd.DataFrame(rows).assign(asn=0, protocol="http", window=0, banner="same")
    frame = frame.astype({"ip": np.uint32, "port": np.uint16, "asn": np.uint32, "window": np.int32})
    patterns = learn_patterns(frame).patterns
    assert (
        len(patterns) == 6
        and patterns[schema.HITRATE].eq(1.0).all()
        and patterns[schema.COUNT_P2].eq(3).all()
    )
    # Every feature ties at hitrate 1 from port 22 toward 80: the smallest string wins.
    to_80 = patterns[patterns[schema.P] == 80]
    assert set(to_80[schema.NEEDED_P]) == {22}
    assert set(to_80[schema.SERVER]) == {"16:fingerprint: http-00000000"}
    assert learn_patterns(frame[frame["ip"] != 12]).patterns[schema.P].notna().sum() == 0

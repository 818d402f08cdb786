"""An independent oracle of GPS compatible mode: the reference's queries, in SQL, run by DuckDB.

It restates ``GPS_REFERENCE.md`` as directly as SQL allows (features with ``string_split`` and
``printf``, the pair self-join, ``row_number()`` for the best predictor), sharing no code with the
engine. The one thing not written in SQL is reading a certificate out of a TLS banner; a small
parser of its own (:func:`cert_hex`) does that here.

The benchmark (``bench/bench_engine.py``) times these same queries as the "DuckDB SQL" baseline.
"""

from __future__ import annotations

import re
import struct

import duckdb
import pandas as pd

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


def cert_hex(banner: str | None) -> str | None:
    """Leaf certificate (lower-case hex DER) of the first Certificate message of a TLS banner."""
    if banner is None:
        return None
    if _HEX.fullmatch(banner):
        raw = bytes.fromhex(banner)
    else:
        try:
            raw = banner.encode("latin-1")
        except UnicodeEncodeError:
            raw = banner.encode("utf-8", "surrogatepass")
    handshake = b""
    while len(raw) >= 5 and 20 <= raw[0] <= 24:
        (length,) = struct.unpack(">H", raw[3:5])
        if raw[0] == 22:
            handshake += raw[5 : 5 + length]
        raw = raw[5 + length :]
    while len(handshake) >= 4:
        kind, length = handshake[0], int.from_bytes(handshake[1:4], "big")
        if kind == 11:
            body = handshake[4 : 4 + length]
            if len(body) < 6:
                return None
            n = int.from_bytes(body[3:6], "big")
            cert = body[6 : 6 + n]
            return cert.hex() if n and len(cert) == n else None
        handshake = handshake[4 + length :]
    return None


def with_tls_hex(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus ``tls_hex``: the ``tls_cert`` column, else the certificate in the banner."""
    frame = frame.copy()
    given = frame["tls_cert"] if "tls_cert" in frame.columns else pd.Series([None] * len(frame), dtype=object)
    tls = frame["protocol"] == "tls"
    hexes = [
        (g if isinstance(g, str) else cert_hex(b)) if t else None
        for g, b, t in zip(given.astype(object).where(given.notna(), None), frame["banner"], tls, strict=True)
    ]
    frame["tls_hex"] = pd.array(hexes, dtype="string")
    return frame


def _services_view(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> None:
    """Register ``frame`` as table ``name`` (ip, p, asn, fp, w, data, tls_hex)."""
    if "tls_hex" not in frame.columns:
        frame = with_tls_hex(frame)
    con.register(f"{name}_df", frame)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {name} AS
        SELECT ip::UBIGINT AS ip, port::INTEGER AS p, asn::UBIGINT AS asn, protocol::VARCHAR AS fp,
               "window"::INTEGER AS w, banner::VARCHAR AS data, tls_hex::VARCHAR AS tls_hex
        FROM {name}_df"""
    )
    con.unregister(f"{name}_df")


def _features_sql(source: str, target: str, use_asn: bool) -> str:
    asn_on = "TRUE" if use_asn else "FALSE"
    return f"""
    CREATE OR REPLACE TEMP TABLE {target}_d AS
        SELECT ip, p, asn, 'http line: ' || unnest(string_split(data, chr(10))) AS f FROM {source}
        UNION ALL SELECT ip, p, asn, 'fingerprint: ' || fp FROM {source}
        UNION ALL SELECT ip, p, asn, 'window: ' || w::VARCHAR FROM {source}
        UNION ALL SELECT ip, p, asn, 'ssh banner: ' || data FROM {source} WHERE fp = 'ssh'
        UNION ALL SELECT ip, p, asn, 'tls cert: ' || tls_hex FROM {source}
            WHERE fp = 'tls' AND tls_hex IS NOT NULL
        UNION ALL SELECT ip, p, asn, 'tls oid: ' || frag FROM (
            SELECT ip, p, asn, unnest(string_split(tls_hex, '30')) AS frag FROM {source}
            WHERE fp = 'tls' AND tls_hex IS NOT NULL) WHERE length(frag) > 7;
    CREATE OR REPLACE TEMP TABLE {target} AS SELECT DISTINCT ip, p, f FROM (
        SELECT ip, p, f FROM {target}_d
        UNION ALL SELECT ip, p, '16:' || f || '-' || printf('%08x', (ip // 65536) * 65536) FROM {target}_d
        UNION ALL SELECT ip, p, 'asn:' || f || '-asn: ' || asn::VARCHAR FROM {target}_d
            WHERE {asn_on} AND asn <> 0
        UNION ALL SELECT ip, p, 's' || l::VARCHAR || ': ' || printf('%08x', (ip // (1::UBIGINT << (32 - l)))
            * (1::UBIGINT << (32 - l))) FROM {source}, range(16, 23) t(l)
        UNION ALL SELECT ip, p, 'L4' FROM {source}
        UNION ALL SELECT ip, p, 'asn: ' || asn::VARCHAR FROM {source} WHERE {asn_on} AND asn <> 0);
    DROP TABLE {target}_d;
    """


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def learn(
    con: duckdb.DuckDBPyConnection, services: pd.DataFrame, *, hitrate: float, use_asn: bool = True
) -> pd.DataFrame:
    """Patterns per §3: ``ip, p, neededP, count_p2, hitrate, cp_server, server`` (ip as integer)."""
    _services_view(con, "svc", services)
    con.execute(_features_sql("svc", "feat", use_asn))
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE hosts AS SELECT ip, count(DISTINCT p) AS c FROM svc GROUP BY ip;
        CREATE OR REPLACE TEMP TABLE fh AS
            SELECT f.ip, f.p, f.f FROM feat f JOIN hosts h USING (ip) WHERE h.c BETWEEN 2 AND 10;
        CREATE OR REPLACE TEMP TABLE sp AS
            SELECT DISTINCT s.ip, s.p FROM svc s JOIN hosts h USING (ip) WHERE h.c BETWEEN 2 AND 10;
        CREATE OR REPLACE TEMP TABLE cp AS SELECT p AS p1, f, count(*) AS cp_server FROM fh GROUP BY p, f;
        CREATE OR REPLACE TEMP TABLE c2 AS
            SELECT a.p AS p1, a.f, b.p AS p2, count(*) AS count_p2
            FROM fh a JOIN sp b ON a.ip = b.ip AND a.p <> b.p GROUP BY a.p, a.f, b.p;
        CREATE OR REPLACE TEMP TABLE hr AS
            SELECT c2.p1, c2.f, c2.p2, c2.count_p2, cp.cp_server, c2.count_p2 / cp.cp_server AS hitrate
            FROM c2 JOIN cp USING (p1, f) WHERE c2.count_p2 > 2;
        CREATE OR REPLACE TEMP TABLE best AS
            SELECT b.ip, b.p, a.p AS neededP, hr.count_p2, hr.hitrate, hr.cp_server, a.f AS server
            FROM fh a JOIN sp b ON a.ip = b.ip AND a.p <> b.p
                 JOIN hr ON hr.p1 = a.p AND hr.f = a.f AND hr.p2 = b.p
            QUALIFY row_number() OVER (PARTITION BY b.ip, b.p ORDER BY hr.hitrate DESC, a.p, a.f) = 1;
        """
    )
    return con.execute(
        """
        SELECT ip, p, neededP, count_p2, hitrate, cp_server, server FROM best WHERE hitrate > ?
        UNION ALL
        SELECT s.ip, NULL, s.p, NULL, NULL, NULL, NULL
        FROM (SELECT DISTINCT ip, p FROM svc) s JOIN hosts h USING (ip) WHERE h.c = 1
        ORDER BY ip, p
        """,
        [hitrate],
    ).df()


def plan(
    con: duckdb.DuckDBPyConnection, patterns: pd.DataFrame, *, step: int, hitrate: float
) -> pd.DataFrame:
    """Plan rows per §4: ``neededP, prefix, c`` ordered by ``c`` desc, then port, then prefix."""
    con.register("patterns_df", patterns[["ip", "neededP"]])
    size = 1 << (32 - step)
    out = con.execute(
        f"""
        SELECT neededP::INTEGER AS neededP, (ip::UBIGINT // {size}) * {size} AS prefix, count(*) AS c
        FROM patterns_df GROUP BY ALL HAVING count(*) / {float(size)} > ?
        ORDER BY c DESC, neededP, prefix
        """,
        [hitrate],
    ).df()
    con.unregister("patterns_df")
    return out


def predict(
    con: duckdb.DuckDBPyConnection,
    patterns: pd.DataFrame,
    priors: pd.DataFrame,
    seed: pd.DataFrame,
    *,
    step: int,
    hitrate: float,
    blocklist: list[tuple[int, int]] = (),  # type: ignore[assignment]
) -> pd.DataFrame:
    """Predictions per §5: distinct ``ip, port`` with ``score`` (the best hitrate of its rules)."""
    plan_rows = plan(con, patterns, step=step, hitrate=hitrate)
    _services_view(con, "pri", priors)
    con.execute(_features_sql("pri", "pfeat", True))
    con.register("patterns_df", patterns[["neededP", "server", "p", "hitrate"]])
    con.register("plan_df", plan_rows)
    con.register("seed_df", seed[["ip", "port"]])
    con.register("bl_df", pd.DataFrame(list(blocklist), columns=["s", "e"], dtype="int64"))
    size = 1 << (32 - step)
    out = con.execute(
        f"""
        WITH rules AS (
            SELECT neededP::INTEGER AS q, server, p::INTEGER AS p, max(hitrate) AS score
            FROM patterns_df WHERE p IS NOT NULL GROUP BY ALL),
        hits AS (
            SELECT pf.ip, r.p AS port, max(r.score) AS score
            FROM pfeat pf JOIN rules r ON r.q = pf.p AND r.server = pf.f GROUP BY ALL)
        SELECT ip, port, score FROM hits h
        WHERE NOT EXISTS (SELECT 1 FROM plan_df pl
                          WHERE pl.neededP = h.port AND pl.prefix = (h.ip // {size}) * {size})
          AND NOT EXISTS (SELECT 1 FROM seed_df s WHERE s.ip = h.ip AND s.port = h.port)
          AND NOT EXISTS (SELECT 1 FROM bl_df b WHERE h.ip BETWEEN b.s AND b.e)
        ORDER BY ip, port
        """
    ).df()
    for name in ("patterns_df", "plan_df", "seed_df", "bl_df"):
        con.unregister(name)
    return out

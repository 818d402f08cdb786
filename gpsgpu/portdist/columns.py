"""Column names, dtypes and constants of the port2dist tables.

**probes** (what ``gpsgpu portdist ingest`` and ``simulate`` write; one row per TCP SYN that reached
the darknet): ``ts int64`` (microseconds since the Unix epoch, UTC), ``src uint32`` and ``dst
uint32`` (host-order IPv4), ``dport uint16``; simulated probes add ``campaign int32`` (the ground
truth label, an index into ``campaigns.parquet``).

**daily counts** (``DIST/daily/YYYY-MM-DD.parquet``): ``a uint16, b uint16, n int64, sources
int64``: the number of times a tailored sequence moved from port ``a`` to port ``b`` (``a != b``)
that UTC day, and the number of distinct sources that did.

**edges** (one window of one source): ``a uint16, b uint16`` with ``a < b``, ``weight float64``
(symmetrised count or co-location probability), ``sources int64`` (source-days that made the
transition, either direction; the co-location source stores its host count), ``length float32``
(rescaled and inverted).

**neighbors**: ``port uint16, rank int16`` (0 = nearest), ``neighbor uint16, distance float32``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

TS = "ts"
SRC = "src"
DST = "dst"
DPORT = "dport"
CAMPAIGN = "campaign"
DAY = "day"
SCAN = "scan"

A = "a"
B = "b"
N = "n"
SOURCES = "sources"
WEIGHT = "weight"
LENGTH = "length"

PORT = "port"
RANK = "rank"
NEIGHBOR = "neighbor"
DISTANCE = "distance"

#: Microseconds in one UTC day: the unit of additivity (daily counts).
DAY_US = 86_400 * 1_000_000

#: Scan classes of a (day, source) sequence, in the ``scan`` column.
TAILORED, VERTICAL, HORIZONTAL, SHORT = 0, 1, 2, 3
SCAN_NAMES = {TAILORED: "tailored", VERTICAL: "vertical", HORIZONTAL: "horizontal", SHORT: "single_port"}

PROBES_SCHEMA = pa.schema(
    [
        pa.field(TS, pa.int64(), nullable=False),
        pa.field(SRC, pa.uint32(), nullable=False),
        pa.field(DST, pa.uint32(), nullable=False),
        pa.field(DPORT, pa.uint16(), nullable=False),
    ]
)
LABELLED_PROBES_SCHEMA = PROBES_SCHEMA.append(pa.field(CAMPAIGN, pa.int32(), nullable=False))

COUNTS_SCHEMA = pa.schema(
    [
        pa.field(A, pa.uint16(), False),
        pa.field(B, pa.uint16(), False),
        pa.field(N, pa.int64(), False),
        pa.field(SOURCES, pa.int64(), False),
    ]
)
EDGES_SCHEMA = pa.schema(
    [
        pa.field(A, pa.uint16(), False),
        pa.field(B, pa.uint16(), False),
        pa.field(WEIGHT, pa.float64(), False),
        pa.field(SOURCES, pa.int64(), False),
        pa.field(LENGTH, pa.float32(), False),
    ]
)
NEIGHBORS_SCHEMA = pa.schema(
    [
        pa.field(PORT, pa.uint16(), False),
        pa.field(RANK, pa.int16(), False),
        pa.field(NEIGHBOR, pa.uint16(), False),
        pa.field(DISTANCE, pa.float32(), False),
    ]
)

NUMPY_DTYPES = {
    TS: np.int64,
    SRC: np.uint32,
    DST: np.uint32,
    DPORT: np.uint16,
    CAMPAIGN: np.int32,
    A: np.uint16,
    B: np.uint16,
    N: np.int64,
}

#: Window name -> number of UTC days it sums (ending at the window's last day).
WINDOWS = {"day": 1, "week": 7, "month": 30, "year": 365}

#: Distance sources stored side by side in DIST/.
DARKNET = "darknet"
MODEL = "model"
#: The window name of the co-location source (a seed scan has no time window).
SEED_WINDOW = "seed"

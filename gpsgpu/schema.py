"""Table names, columns, dtypes and key layouts shared by every stage.

The **services** table is the canonical input of the whole engine: one row per ``(ip, port)``,
``ip`` as a host-order ``uint32`` (1.2.3.4 is ``0x01020304``), ``port`` as ``uint16``, ``asn`` as
``uint32`` (0 when unknown). Optional structured application-layer columns come from ZGrab2 or
Censys records and are null where a source has nothing to say.

Keys are explicit 64-bit values defined here, never a dataframe library's default hash (pandas and
cuDF hash differently): a feature key is ``XXH64(utf8(canonical string), seed 0)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1

# --- services -----------------------------------------------------------------------------------

IP = "ip"
PORT = "port"
ASN = "asn"
PROTOCOL = "protocol"
WINDOW = "window"
BANNER = "banner"

#: Required columns, in order, with their Arrow types.
SERVICES_CORE: tuple[tuple[str, pa.DataType], ...] = (
    (IP, pa.uint32()),
    (PORT, pa.uint16()),
    (ASN, pa.uint32()),
    (PROTOCOL, pa.string()),  # LZR fingerprint / ZGrab2 module / Censys service name, lower case
    (WINDOW, pa.int32()),  # TCP window of the SYN-ACK; 0 when the source does not record it
    (BANNER, pa.string()),  # the L7 bytes the server sent, as text (LZR `data`, GPS `data`)
)

#: Optional structured L7 columns (nullable), filled from ZGrab2/Censys structure where present.
SERVICES_OPTIONAL: tuple[tuple[str, pa.DataType], ...] = (
    ("http_status", pa.int16()),
    ("http_server", pa.string()),
    ("http_title", pa.string()),
    ("http_body_sha256", pa.string()),
    ("http_headers", pa.string()),  # "name: value" lines, names lower-case, sorted, "\n"-joined
    ("tls_cert", pa.string()),  # leaf certificate DER, lower-case hex
    ("tls_cert_sha256", pa.string()),
    ("tls_subject", pa.string()),
    ("tls_issuer", pa.string()),
    ("tls_org", pa.string()),
    ("ssh_banner", pa.string()),
    ("ssh_hostkey_sha256", pa.string()),
    # Other structured fields the extended features use, as "<feature name>: <value>" lines
    # ("mysql version: 8.0.36", "vnc desktop: ..."; gpsgpu.features.extended.APP_FIELD_NAMES).
    ("app_fields", pa.string()),
)

SERVICES_COLUMNS: tuple[str, ...] = tuple(name for name, _ in SERVICES_CORE)
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(name for name, _ in SERVICES_OPTIONAL)
_ARROW_TYPES: dict[str, pa.DataType] = dict(SERVICES_CORE + SERVICES_OPTIONAL)

NUMPY_DTYPES: dict[str, Any] = {
    IP: np.uint32,
    PORT: np.uint16,
    ASN: np.uint32,
    WINDOW: np.int32,
}


def services_arrow_schema(optional: tuple[str, ...] | list[str] = ()) -> pa.Schema:
    """The Arrow schema of a services table with the given optional columns (in canonical order)."""
    wanted = set(optional)
    unknown = wanted - set(OPTIONAL_COLUMNS)
    if unknown:
        raise ValueError(f"unknown optional services columns: {sorted(unknown)}")
    fields = [pa.field(n, t, nullable=False) for n, t in SERVICES_CORE]
    fields += [pa.field(n, t) for n, t in SERVICES_OPTIONAL if n in wanted]
    return pa.schema(fields)


def optional_columns_of(columns: Any) -> tuple[str, ...]:
    present = set(columns)
    return tuple(n for n in OPTIONAL_COLUMNS if n in present)


def empty_services(xdf: Any, optional: tuple[str, ...] = ()) -> Any:
    """An empty services frame of the right dtypes in the namespace ``xdf`` (pandas or cudf)."""
    return frame_from_arrow(services_arrow_schema(optional).empty_table(), xdf)


def services_to_arrow(frame: Any) -> pa.Table:
    """A services frame (pandas or cuDF) as an Arrow table with the canonical schema."""
    optional = optional_columns_of(frame.columns)
    schema = services_arrow_schema(optional)
    table = frame_to_arrow(frame[list(schema.names)])
    return table.select(schema.names).cast(schema)


def services_arrow_table(table: pa.Table) -> pa.Table:
    """Select and cast an Arrow table's services columns to the canonical schema."""
    missing = [c for c in SERVICES_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"not a services table: missing columns {missing}")
    schema = services_arrow_schema(optional_columns_of(table.column_names))
    return table.select(schema.names).cast(schema)


def services_from_arrow(table: pa.Table, xdf: Any) -> Any:
    """An Arrow table with services columns as a frame of ``xdf`` with canonical dtypes."""
    return frame_from_arrow(services_arrow_table(table), xdf)


def frame_from_arrow(table: pa.Table, xdf: Any) -> Any:
    """An Arrow table as a frame of ``xdf`` (pandas or cudf), dtypes kept (uint32 stays uint32)."""
    if xdf.__name__ == "cudf":
        return xdf.DataFrame.from_arrow(table)
    return table.to_pandas()


def frame_to_arrow(frame: Any) -> pa.Table:
    """A pandas or cuDF frame as an Arrow table, without the index."""
    if type(frame).__module__.startswith("cudf"):
        return frame.to_arrow(preserve_index=False)
    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


# --- keys ---------------------------------------------------------------------------------------

#: Seed of every XXH64 feature key.
FKEY_SEED = 0

#: A (port, port) pair packed into one uint32: ``p1 << 16 | p2``.
PORT_BITS = 16
PORT_MASK = (1 << PORT_BITS) - 1


def pack_ports(p1: Any, p2: Any) -> Any:
    """Pack two uint16 port arrays into one uint32 key (``p1 << 16 | p2``); works on NumPy and CuPy."""
    return (p1.astype("uint32") << PORT_BITS) | p2.astype("uint32")


def unpack_ports(key: Any) -> tuple[Any, Any]:
    return (key >> PORT_BITS).astype("uint16"), (key & PORT_MASK).astype("uint16")


# --- addresses ----------------------------------------------------------------------------------


def prefix_of(ip: Any, length: int) -> Any:
    """The network address of ``ip`` (uint32 array) truncated to ``/length``."""
    if not 0 <= length <= 32:
        raise ValueError(f"prefix length must be 0..32, not {length}")
    if length == 0:
        return ip & 0
    mask = np.uint32((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF)
    return ip & mask


def ip_to_str(ip: Any) -> Any:
    """Dotted-quad strings from a host-order uint32 NumPy array (vectorized)."""
    ip = np.asarray(ip, dtype=np.uint32)
    octets = [((ip >> shift) & 0xFF).astype(str) for shift in (24, 16, 8, 0)]
    out = octets[0]
    for part in octets[1:]:
        out = np.char.add(np.char.add(out, "."), part)
    return out


# --- GPS engine (features, learn, plan, predict) ------------------------------------------------

#: Columns of the features long table (``ip, port, fid, fkey``) and of its dictionary
#: (``fid, fkey, feature``). ``fid`` is a dense uint32 id local to one features table; ``fkey`` is
#: the global key ``XXH64(utf8(feature), FKEY_SEED)``.
FID = "fid"
FKEY = "fkey"
FEATURE = "feature"

#: Count tables: ``count_p2`` keyed by ``(p1, fkey, p2)``, ``cp_server`` keyed by ``(p1, fkey)``.
P1 = "p1"
P2 = "p2"
COUNT_P2 = "count_p2"
CP_SERVER = "cp_server"
HITRATE = "hitrate"

#: The reference's patterns table (``MODEL/patterns.parquet``): ``ip`` dotted string, ``p``
#: (nullable), ``neededP``, ``count_p2``, ``hitrate``, ``cp_server``, ``server`` (feature string).
P = "p"
NEEDED_P = "neededP"
SERVER = "server"
PATTERNS_COLUMNS: tuple[str, ...] = (IP, P, NEEDED_P, COUNT_P2, HITRATE, CP_SERVER, SERVER)

#: Plan rows and predictions.
PREFIX = "prefix"
N_PATTERNS = "c"
SCORE = "score"

#: Improved mode: a rule's support (seed services with its feature on its port, any host size),
#: the rules behind a prediction, the probing round that made it, a plan row's prefix length and
#: its expected services per probe.
SUPPORT = "support"
N_RULES = "n_rules"
ROUND = "round"
LENGTH = "length"
VALUE = "value"
#: Probes a plan row costs where it is not its whole prefix (a tail /24 skips its known live hosts).
PROBES = "probes"

#: A pair key of the learn kernels: ``fid << 32 | p1 << 16 | p2`` (uint64).
PAIR_FID_SHIFT = 32

#: A service key ``ip << 16 | port`` (uint64): one sortable integer per ``(ip, port)``.
SERVICE_IP_SHIFT = 16


def pack_service(ip: Any, port: Any) -> Any:
    """``ip << 16 | port`` as uint64 (NumPy or CuPy arrays)."""
    return (ip.astype("uint64") << SERVICE_IP_SHIFT) | port.astype("uint64")


def unpack_service(key: Any) -> tuple[Any, Any]:
    return (key >> SERVICE_IP_SHIFT).astype("uint32"), (key & PORT_MASK).astype("uint16")


def ip_from_str(dotted: Any) -> np.ndarray:
    """Host-order uint32 addresses from dotted-quad strings (an Arrow or NumPy string array)."""
    import pyarrow.compute as pc

    if not isinstance(dotted, pa.Array):
        dotted = pa.array(dotted, type=pa.string())
    parts = pc.split_pattern(dotted, ".")
    flat = np.asarray(pc.cast(pc.list_flatten(parts), pa.uint32())).reshape(-1, 4)
    return (flat[:, 0] << 24) | (flat[:, 1] << 16) | (flat[:, 2] << 8) | flat[:, 3]

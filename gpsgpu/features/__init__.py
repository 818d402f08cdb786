"""Service -> canonical feature strings -> 64-bit keys (``XXH64(utf8(string), 0)``), by preset.

:data:`PRESETS` names the presets a model may be built with (a model of an unknown preset is
refused when it is read):

- ``gps2022``: the GPS reference's features (:mod:`gpsgpu.features.gps2022`), compatible mode;
- ``extended``: ``gps2022`` plus the application-layer fields of the GPS talk, /23 and /24 and
  their crosses (:mod:`gpsgpu.features.extended`).

Callers pick a preset by name with :func:`feature_arrays_of_table`, :func:`feature_arrays_of_frame`
or :func:`extract_features`; :func:`feature_columns` says which columns a preset reads.
"""

from __future__ import annotations

import logging
from typing import Any

from gpsgpu import schema
from gpsgpu.backend import Backend, backend_of
from gpsgpu.errors import UsageError
from gpsgpu.features import extended, gps2022
from gpsgpu.features.gps2022 import FeatureArrays, FeatureTable, feature_arrays
from gpsgpu.features.strings import FeatureStrings
from gpsgpu.ops import ops_for

log = logging.getLogger(__name__)

PRESETS: tuple[str, ...] = ("gps2022", "extended")
DEFAULT_PRESET = "gps2022"

_CORE = (schema.IP, schema.PORT, schema.ASN, schema.PROTOCOL, schema.WINDOW, schema.BANNER)


def _check(preset: str) -> None:
    if preset not in PRESETS:
        raise UsageError(f"unknown feature preset {preset!r} (one of {', '.join(PRESETS)})")


def feature_columns(columns: Any, preset: str = DEFAULT_PRESET) -> list[str]:
    """The columns of a services table (named by ``columns``) that ``preset`` reads, in order."""
    _check(preset)
    present = set(columns)
    optional = ("tls_cert",) if preset == "gps2022" else extended.INPUT_COLUMNS
    return [*_CORE, *(c for c in optional if c in present)]


def feature_arrays_of_table(
    table: Any,
    *,
    use_asn: bool = True,
    preset: str = DEFAULT_PRESET,
    chunk_rows: int = gps2022.DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
    rows: Any | None = None,
) -> FeatureArrays:
    """The ``preset`` features of every row (or of the ``rows`` given) of a services table.

    Parameters
    ----------
    table : pyarrow.Table, or cuDF frame (device)
        ``ip uint32, asn uint32, protocol str, window int32, banner str`` (``port uint16`` too for
        ``extended``), plus the optional columns :func:`feature_columns` names, where present.
    use_asn : bool
        Whether to emit ``asn: <asn>`` and the ASN crosses.
    preset : str
        One of :data:`PRESETS`.
    chunk_rows, workers : int
        Rows per chunk and threads (see :func:`gpsgpu.features.gps2022.feature_arrays`).
    """
    _check(preset)
    if preset == "extended":
        if backend_of(table) is Backend.GPU:
            if rows is not None:
                table = ops_for(Backend.GPU).table_take(table, rows)
            return _extended_on_host(table, use_asn=use_asn)
        return extended.feature_arrays(
            table, use_asn=use_asn, chunk_rows=chunk_rows, workers=workers, rows=rows
        )
    return gps2022.feature_arrays_of_table(
        table, use_asn=use_asn, chunk_rows=chunk_rows, workers=workers, rows=rows
    )


def _extended_on_host(table: Any, *, use_asn: bool) -> FeatureArrays:
    """``extended`` features of a cuDF table: its protocol parsers are Arrow and Python code, so the
    table goes to the host and the features come back to the device (said once per process)."""
    global _WARNED_EXTENDED_HOST
    if not _WARNED_EXTENDED_HOST:
        log.warning("extended features are computed on the host: their parsers are not GPU code yet")
        _WARNED_EXTENDED_HOST = True
    from gpsgpu.ops import gpu

    arrays = extended.feature_arrays(gpu.table_to_arrow(table), use_asn=use_asn)
    return FeatureArrays(
        row=gpu.asarray(arrays.row),
        fid=gpu.asarray(arrays.fid),
        strings=FeatureStrings([gpu.text_from_arrow(arrays.strings.materialize())], Backend.GPU),
        fkeys=gpu.asarray(arrays.fkeys),
    )


_WARNED_EXTENDED_HOST = False


def feature_arrays_of_frame(
    services: Any, *, use_asn: bool = True, preset: str = DEFAULT_PRESET
) -> FeatureArrays:
    """:func:`feature_arrays_of_table` of a services frame (pandas, or cuDF: built on the device)."""
    if preset == "gps2022":
        return gps2022.feature_arrays_of_frame(services, use_asn=use_asn)
    table = ops_for(backend_of(services)).table_of(services, feature_columns(services.columns, preset))
    return feature_arrays_of_table(table, use_asn=use_asn, preset=preset)


def extract_features(services: Any, /, *, use_asn: bool = True, preset: str = DEFAULT_PRESET) -> FeatureTable:
    """The ``preset`` features of a services frame: long table plus dictionary.

    See :func:`gpsgpu.features.gps2022.extract_features` for the frames (``preset="gps2022"`` is it).
    """
    _check(preset)
    arrays = feature_arrays_of_frame(services, use_asn=use_asn, preset=preset)
    return gps2022.feature_table(services, arrays)


__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "FeatureArrays",
    "FeatureTable",
    "extract_features",
    "feature_arrays",
    "feature_arrays_of_frame",
    "feature_arrays_of_table",
    "feature_columns",
]

"""``MODEL/``: what ``gpsgpu learn`` writes and ``plan``/``predict`` read.

Files (Parquet, zstd):

- ``patterns.parquet``: the reference's patterns table with its own column names and types
  (``ip`` dotted string, ``p`` int64 or null, ``neededP`` int64, ``count_p2`` int64, ``hitrate``
  float64, ``cp_server`` int64, ``server`` string), so existing GPS tooling reads it as is;
- ``rules.parquet``: ``neededP uint16, fkey uint64, p uint16, score float64, server string``;
- ``seed.parquet``: ``ip uint32, port uint16``, the seed's services (predict drops them);
- ``host_rules.parquet`` (improved models): ``asn uint32, p uint16, score float64, count_p2 int64,
  support int64``, what a live host of an AS runs (:func:`gpsgpu.learn.ranked.learn_host_rules`);
- ``count_p2.parquet``, ``cp_server.parquet`` (only with ``--save-counts``): the additive counts;
- ``metadata.json``: ``model_format``, ``preset``, ``params`` (hitrate, step, use_asn), counts,
  timings. A model of another ``model_format`` or an unknown preset is refused with one line.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from gpsgpu import __version__, schema
from gpsgpu.errors import InputError
from gpsgpu.io.metadata import read_metadata, write_metadata
from gpsgpu.io.parquet import read_table, write_table

log = logging.getLogger(__name__)

#: Bumped whenever the files of MODEL/ change meaning; readers refuse other formats.
MODEL_FORMAT = 1

PATTERNS_FILE = "patterns.parquet"
RULES_FILE = "rules.parquet"
SEED_FILE = "seed.parquet"
HOST_RULES_FILE = "host_rules.parquet"
COUNT_P2_FILE = "count_p2.parquet"
CP_SERVER_FILE = "cp_server.parquet"
METADATA_FILE = "metadata.json"

PATTERNS_SCHEMA = pa.schema(
    [
        (schema.IP, pa.string()),
        (schema.P, pa.int64()),
        (schema.NEEDED_P, pa.int64()),
        (schema.COUNT_P2, pa.int64()),
        (schema.HITRATE, pa.float64()),
        (schema.CP_SERVER, pa.int64()),
        (schema.SERVER, pa.string()),
    ]
)


@dataclass(frozen=True)
class Model:
    """A model read back from ``MODEL/``.

    Attributes
    ----------
    patterns : pandas.DataFrame
        ``ip uint32, neededP uint16`` (what planning needs).
    rules : pandas.DataFrame
        ``neededP uint16, fkey uint64, p uint16, score float64``.
    seed : pandas.DataFrame
        ``ip uint32, port uint16``.
    metadata : dict
    host_rules : pandas.DataFrame or None
        ``asn uint32, p uint16, score float64`` (improved models learned with host rules).
    """

    patterns: pd.DataFrame
    rules: pd.DataFrame
    seed: pd.DataFrame
    metadata: dict[str, Any]
    host_rules: pd.DataFrame | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.metadata.get("params", {}))


def patterns_to_arrow(patterns: pd.DataFrame) -> pa.Table:
    """The reference's patterns table from :class:`gpsgpu.learn.LearnResult.patterns`."""
    ip = pa.array(schema.ip_to_str(patterns[schema.IP].to_numpy(np.uint32)), type=pa.string())
    columns = [ip] + [
        pa.array(patterns[name], type=PATTERNS_SCHEMA.field(name).type, from_pandas=True)
        for name in PATTERNS_SCHEMA.names[1:]
    ]
    return pa.Table.from_arrays(columns, schema=PATTERNS_SCHEMA)


def write_model(
    result: Any, directory: str | os.PathLike[str], metadata: dict[str, Any], *, counts: bool
) -> None:
    """Write a :class:`gpsgpu.learn.LearnResult` into ``directory`` (an existing folder): the tables
    :func:`write_model_tables` has not written yet, then ``metadata.json``."""
    directory = Path(directory)
    write_model_tables(result, directory, counts=counts)
    write_metadata(directory / METADATA_FILE, {**metadata, "model_format": MODEL_FORMAT})


def write_model_tables(
    result: Any, directory: str | os.PathLike[str], *, counts: bool, only: tuple[str, ...] | None = None
) -> None:
    """Write the tables ``result`` still holds (those named in ``only``, or all) into ``directory``
    and drop them from it (set to ``None``): a table final before the end of ``learn`` is written
    then, and its memory goes. ``counts``: the count tables too."""
    directory = Path(directory)
    files = {
        "patterns": (PATTERNS_FILE, patterns_to_arrow),
        "rules": (RULES_FILE, schema.frame_to_arrow),
        "seed": (SEED_FILE, schema.frame_to_arrow),
        "host_rules": (HOST_RULES_FILE, schema.frame_to_arrow),
    }
    if counts:
        files.update(
            count_p2=(COUNT_P2_FILE, schema.frame_to_arrow), cp_server=(CP_SERVER_FILE, schema.frame_to_arrow)
        )
    for name, (file, to_arrow) in files.items():
        table = getattr(result, name, None)
        if table is None or (only is not None and name not in only):
            continue
        write_table(to_arrow(table), directory / file)
        setattr(result, name, None)


def read_model_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``MODEL/metadata.json``, checked: written by ``gpsgpu learn``, this model format, a known preset."""
    from gpsgpu.features import PRESETS

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(
            f"{directory}: not a model folder (make one with 'gpsgpu learn SEED -o {directory}')"
        )
    path = directory / METADATA_FILE
    try:
        metadata = read_metadata(path)
    except FileNotFoundError:
        raise InputError(
            f"{directory}: not a gpsgpu model (no {METADATA_FILE}); make one with 'gpsgpu learn'"
        ) from None
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
    if (
        not isinstance(metadata, dict)
        or metadata.get("tool") != "gpsgpu"
        or metadata.get("command") != "learn"
    ):
        raise InputError(f"{directory}: not a model written by 'gpsgpu learn'")
    found = metadata.get("model_format")
    if found != MODEL_FORMAT:
        raise InputError(
            f"{directory}: model format {found} (gpsgpu {metadata.get('version', '?')}); "
            f"gpsgpu {__version__} reads format {MODEL_FORMAT}: run 'gpsgpu learn' again"
        )
    preset = metadata.get("params", {}).get("preset")
    if preset not in PRESETS:
        raise InputError(
            f"{directory}: feature preset {preset!r} is not one this gpsgpu knows ({', '.join(PRESETS)})"
        )
    if metadata.get("version") != __version__:
        log.info(
            "model written by gpsgpu %s (this is %s; same model format)", metadata.get("version"), __version__
        )
    return metadata


def read_model(directory: str | os.PathLike[str], *, rules: bool = True, seed: bool = True) -> Model:
    """Read and check ``MODEL/`` (``rules``/``seed``: whether to load those tables too)."""
    directory = Path(directory)
    metadata = read_model_metadata(directory)
    for name in [PATTERNS_FILE] + [RULES_FILE] * rules + [SEED_FILE] * seed:
        if not (directory / name).is_file():
            raise InputError(f"{directory}: incomplete model, {name} is missing; run 'gpsgpu learn' again")
    patterns_table = _read_columns(directory / PATTERNS_FILE, [schema.IP, schema.NEEDED_P])
    needed = _checked(patterns_table, directory / PATTERNS_FILE, {schema.NEEDED_P: pa.uint16()})
    patterns = pd.DataFrame(
        {
            schema.IP: _addresses(patterns_table, directory / PATTERNS_FILE),
            schema.NEEDED_P: np.asarray(needed[schema.NEEDED_P]),
        }
    )
    rule_types = {
        schema.NEEDED_P: pa.uint16(),
        schema.FKEY: pa.uint64(),
        schema.P: pa.uint16(),
        schema.SCORE: pa.float64(),
    }
    if rules:
        rules_frame = _checked(
            _read_columns(directory / RULES_FILE, list(rule_types)), directory / RULES_FILE, rule_types
        ).to_pandas()
    else:
        rules_frame = pa.schema(list(rule_types.items())).empty_table().to_pandas()
    seed_types = {schema.IP: pa.uint32(), schema.PORT: pa.uint16()}
    seed_frame = (
        _checked(
            _read_columns(directory / SEED_FILE, list(seed_types)), directory / SEED_FILE, seed_types
        ).to_pandas()
        if seed
        else pa.schema(list(seed_types.items())).empty_table().to_pandas()
    )
    host_rules = None
    if rules and (directory / HOST_RULES_FILE).is_file():
        host_types = {schema.ASN: pa.uint32(), schema.P: pa.uint16(), schema.SCORE: pa.float64()}
        host_rules = _checked(
            _read_columns(directory / HOST_RULES_FILE, list(host_types)),
            directory / HOST_RULES_FILE,
            host_types,
        ).to_pandas()
    _check_params(directory, metadata)
    return Model(
        patterns=patterns, rules=rules_frame, seed=seed_frame, metadata=metadata, host_rules=host_rules
    )


def _read_columns(path: Path, names: list[str]) -> pa.Table:
    """Only ``names`` of a model table (its footer read first): a missing column is one line."""
    import pyarrow.parquet as pq

    try:
        present = set(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet table ({' '.join(str(exc).split())})") from None
    missing = [name for name in names if name not in present]
    if missing:
        raise InputError(
            f"{path}: not a gpsgpu model table (no column {', '.join(missing)}); run 'gpsgpu learn' again"
        )
    return read_table(path, columns=names)


def _checked(table: pa.Table, path: Path, types: dict[str, pa.DataType]) -> pa.Table:
    """``types``' columns of a model table (:func:`_read_columns`), cast without loss: a null or a
    value its type cannot hold (port 70000) is one line naming the file, never a silent wrap."""
    columns = {}
    for name, kind in types.items():
        column = table[name]
        if column.null_count:
            raise InputError(
                f"{path}: column {name} has {column.null_count} empty values; run 'gpsgpu learn' again"
            )
        try:
            columns[name] = column.cast(kind, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise InputError(
                f"{path}: column {name} holds values that are not {kind} (corrupt or edited model); "
                "run 'gpsgpu learn' again"
            ) from None
    if schema.SCORE in columns:
        score = np.asarray(columns[schema.SCORE])
        if len(score) and not bool(np.all(np.isfinite(score) & (score >= 0) & (score <= 1))):
            raise InputError(
                f"{path}: column {schema.SCORE} holds values outside 0..1; run 'gpsgpu learn' again"
            )
    return pa.table(columns)


def _addresses(table: pa.Table, path: Path) -> np.ndarray:
    """The patterns' dotted addresses (:func:`_read_columns`) as uint32, every one valid IPv4."""
    import pyarrow.compute as pc

    column = table[schema.IP].combine_chunks()
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        raise InputError(f"{path}: column {schema.IP} is not dotted addresses; run 'gpsgpu learn' again")
    valid = pc.match_substring_regex(
        column,
        r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$",
    )
    bad = len(column) - pc.sum(pc.fill_null(valid, False)).as_py() if len(column) else 0
    if bad:
        raise InputError(
            f"{path}: {bad} values of column {schema.IP} are not IPv4 addresses; run 'gpsgpu learn' again"
        )
    return schema.ip_from_str(column)


def _check_params(directory: Path, metadata: dict[str, Any]) -> None:
    params = metadata.get("params")
    if not isinstance(params, dict):
        raise InputError(f"{directory / METADATA_FILE}: no params; run 'gpsgpu learn' again")
    step, hitrate = params.get("step"), params.get("hitrate")
    if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= 32:
        raise InputError(f"{directory / METADATA_FILE}: step {step!r} is not a prefix length 1..32")
    if not isinstance(hitrate, int | float) or isinstance(hitrate, bool) or not 0 <= hitrate < 1:
        raise InputError(f"{directory / METADATA_FILE}: hitrate {hitrate!r} is not a number in 0..1")


def read_plan_params(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``step`` and ``hitrate`` of a ``PLAN/`` folder written by ``gpsgpu plan``."""
    path = Path(directory) / METADATA_FILE
    try:
        metadata = read_metadata(path)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(
            f"--plan {directory}: not a plan folder (no {METADATA_FILE}); make one with 'gpsgpu plan'"
        ) from None
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
    params = metadata.get("params") if isinstance(metadata, dict) else None
    if (
        metadata.get("command") != "plan"
        or not isinstance(params, dict)
        or not {"step", "hitrate"} <= set(params)
    ):
        raise InputError(f"--plan {directory}: not a plan written by 'gpsgpu plan'")
    return {"step": int(params["step"]), "hitrate": float(params["hitrate"])}

"""Configuration: frozen dataclasses, filled from defaults < TOML file < environment < flags.

A TOML file (``--config FILE``) has one table per command (``[ingest]``, ``[learn]``, ...) whose keys
are the dataclass's field names; the environment overrides with ``GPSGPU_<FIELD>`` (upper case);
flags given on the command line win. The effective config is written into ``metadata.json``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from gpsgpu.errors import UsageError

T = TypeVar("T")

ENV_PREFIX = "GPSGPU_"

#: Default cap on one banner, in UTF-8 bytes; longer records are rejected (configurable).
DEFAULT_MAX_BANNER_BYTES = 64 * 1024
#: Default share of input records that may be rejected before ingest refuses the input.
DEFAULT_MAX_REJECT_RATE = 0.01


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """``gpsgpu ingest``: scan records of any supported format -> services table."""

    format: str = "auto"
    backend: str = "auto"
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE
    max_banner_bytes: int = DEFAULT_MAX_BANNER_BYTES
    asn_file: str | None = None
    default_port: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_reject_rate <= 1.0:
            raise UsageError(f"--max-reject-rate must be within 0..1, not {self.max_reject_rate}")
        if self.max_banner_bytes <= 0:
            raise UsageError(f"--max-banner-bytes must be positive, not {self.max_banner_bytes}")
        _check_default_port(self.default_port)


def _check_default_port(port: int | None) -> None:
    if port is not None and not 0 <= port <= 65535:
        raise UsageError(f"--default-port must be within 0..65535, not {port}")


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Coerce a TOML/env value to a dataclass field's (string) annotation."""
    hint = annotation if not isinstance(annotation, str) else eval(annotation, vars(typing) | vars(types))
    args = typing.get_args(hint)
    if value is None or (
        isinstance(value, str) and value.lower() in ("", "none", "null") and type(None) in args
    ):
        return None
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if float in args and str in args and isinstance(value, str):
        try:  # a number, or one of the field's words (checked by the config class)
            return float(value)
        except ValueError:
            return value
    try:
        if base is bool and isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes", "on")
        if base in (int, float, str, bool):
            return base(value)
        if typing.get_origin(base) in (tuple, list) and isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value
    except (TypeError, ValueError):
        raise UsageError(
            f"config value {name}={value!r} is not a valid {getattr(base, '__name__', base)}"
        ) from None


def load_config(
    cls: type[T],
    section: str,
    *,
    file: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Build ``cls`` from defaults < ``[section]`` of a TOML ``file`` < environment < ``flags``.

    ``flags`` whose value is ``None`` count as "not given" and do not override.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    if file is not None:
        path = Path(file)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"--config {path}: no such file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"--config {path}: not valid TOML ({exc})") from None
        table = document.get(section, {})
        if not isinstance(table, dict):
            raise UsageError(f"--config {path}: [{section}] must be a table")
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise UsageError(f"--config {path}: unknown key(s) in [{section}]: {', '.join(unknown)}")
        values.update({k: _coerce(v, fields[k].type, k) for k, v in table.items()})
    env = os.environ if environ is None else environ
    for name, field in fields.items():
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = _coerce(env[key], field.type, key)
    for name, value in (flags or {}).items():
        if value is not None:
            if name not in fields:
                raise KeyError(f"{cls.__name__} has no field {name!r}")
            values[name] = value
    for name, value in values.items():
        _check_number(name, value)
    return cls(**values)


#: Larger integers than any count, port, size or seed gpsgpu takes (and than JSON keeps exactly).
MAX_INT = 1 << 53


def _check_number(name: str, value: Any) -> None:
    """Numbers no setting can mean: NaN, infinities, integers past :data:`MAX_INT` (a usage error,
    not an overflow deep in NumPy)."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise UsageError(f"{flag} {value}: too large (at most {MAX_INT:,})")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{flag} {value}: not a finite number")
    if isinstance(value, tuple | list):
        for item in value:
            _check_number(name, item)


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


# --- GPS engine: learn, plan, predict (compatible mode) -------------------------------------------

#: The reference's defaults (GPS_REFERENCE.md): Hitrate and Step_Size.
DEFAULT_HITRATE = 0.00001
DEFAULT_STEP = 16
#: Upper bound on the pairs the learn step expands at once (about 16 bytes each while counting).
DEFAULT_CHUNK_PAIRS = 1 << 24
#: Probes per second written into PLAN/commands.sh (zmap -r).
DEFAULT_ZMAP_RATE = 10_000
#: Rows of the priors scan handled per predict partition (predictions of one are held at once), by
#: mode: an improved partition's candidates are several times a compatible one's (top-k rules,
#: host rules, every score kept for the ranking).
DEFAULT_PRIORS_PER_PARTITION = {"compatible": 1_000_000, "improved": 1 << 18}
EXPORT_CHOICES = ("gps", "lzr", "zgrab2")


def _check_step(step: int | None) -> None:
    if step is not None and not 0 <= step <= 32:
        raise UsageError(f"--step must be within 0..32, not {step}")


def _check_hitrate(hitrate: float | None) -> None:
    if hitrate is not None and not 0.0 <= hitrate <= 1.0:
        raise UsageError(f"--hitrate must be within 0..1, not {hitrate}")


MODES = ("compatible", "improved")
COMBINE_CHOICES = ("noisy-or", "max")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")


def _check_budget(budget: int | None) -> None:
    if budget is not None and budget < 0:
        raise UsageError(f"--budget must be 0 or more probes, not {budget}")


def _check_cluster(cluster: str, workers: int) -> None:
    from gpsgpu.distributed import check_cluster

    check_cluster(cluster)
    if workers < 0:
        raise UsageError(f"--workers must be 0 (every core or GPU) or more, not {workers}")


@dataclasses.dataclass(frozen=True)
class LearnConfig:
    """``gpsgpu learn``: seed services -> MODEL/ (counts, hitrates, patterns, rules)."""

    hitrate: float = DEFAULT_HITRATE
    step: int = DEFAULT_STEP
    preset: str | None = None  # None: the mode's (gps2022 for compatible, extended for improved)
    use_asn: bool = True
    backend: str = "auto"
    partitions: int = 1
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS
    threads: int = 0  # 0: every core
    save_counts: bool = False
    cluster: str = "none"  # none | local | local-cuda | tcp://host:port
    workers: int = 0  # workers of a local cluster (0: every core or GPU)
    mode: str = "compatible"  # compatible (GPS exactly) | improved (scored top-k rules)
    top_k: int = 4  # improved: predictors kept per seed service
    min_count: int = 2  # improved: hosts a rule needs (GPS: 3)
    max_host_ports: int = 32  # improved: largest real host learned from (GPS: 10)
    seed_fraction: float = 0.01  # improved: share of addresses the seed covers (plan scores)
    host_rules: bool = True  # improved: also learn what a live host of each AS runs
    default_port: int | None = None  # port of seed records that carry none

    def __post_init__(self) -> None:
        _check_cluster(self.cluster, self.workers)
        _check_default_port(self.default_port)
        _check_hitrate(self.hitrate)
        _check_mode(self.mode)
        if self.preset is None:
            # The mode's defaults are decided here, whether the mode came from a flag, the
            # environment or a TOML file.
            object.__setattr__(self, "preset", "extended" if self.mode == "improved" else "gps2022")
        if self.top_k < 1:
            raise UsageError(f"--top-k must be at least 1, not {self.top_k}")
        if self.min_count < 1:
            raise UsageError(f"--min-count must be at least 1, not {self.min_count}")
        if not 10 <= self.max_host_ports <= 1024:
            raise UsageError(f"--max-host-ports must be within 10..1024, not {self.max_host_ports}")
        _check_fraction("--seed-fraction", self.seed_fraction)
        if self.threads < 0:
            raise UsageError(f"--threads must be 0 (every core) or more, not {self.threads}")
        _check_step(self.step)
        from gpsgpu.features import PRESETS

        if self.preset not in PRESETS:
            raise UsageError(f"--preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        if self.partitions < 1:
            raise UsageError(f"--partitions must be at least 1, not {self.partitions}")
        if self.chunk_pairs < 1024:
            raise UsageError(f"--chunk-pairs must be at least 1024, not {self.chunk_pairs}")


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """``gpsgpu plan``: MODEL/ -> PLAN/ (priors_scan_<step>.csv, ZMap allowlists, commands.sh)."""

    step: int | None = None  # None: the model's
    hitrate: float | None = None  # None: the model's
    blocklist: tuple[str, ...] = ()
    rate: int = DEFAULT_ZMAP_RATE
    zmap: str = "zmap"
    budget: int | None = None  # probes: keep the best rows within it (improved models)

    def __post_init__(self) -> None:
        _check_step(self.step)
        _check_hitrate(self.hitrate)
        _check_budget(self.budget)
        if self.rate <= 0:
            raise UsageError(f"--rate must be positive, not {self.rate}")


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """``gpsgpu predict``: MODEL/ + priors scan -> PRED/ (sharded Parquet, optional target list)."""

    format: str = "auto"
    export: str | None = None
    plan: str | None = None  # a PLAN/ folder whose step and hitrate to use
    step: int | None = None  # None: the plan's, else the model's
    hitrate: float | None = None  # None: the plan's, else the model's
    blocklist: tuple[str, ...] = ()
    backend: str = "auto"
    priors_per_partition: int | None = None  # None: the model's mode's (DEFAULT_PRIORS_PER_PARTITION)
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE
    cluster: str = "none"  # none | local | local-cuda | tcp://host:port
    workers: int = 0  # workers of a local cluster (0: every core or GPU)
    # Improved models only:
    budget: int | None = None  # probes: keep the best predictions within it
    min_score: float = 0.0  # keep predictions scoring at least this
    combine: str = "noisy-or"  # how rules predicting one ip:port combine: noisy-or | max
    default_port: int | None = None  # port of priors records that carry none

    def partition_rows(self, mode: str) -> int:
        """Priors services per partition for a model of ``mode``: the flag's, else the mode's."""
        return self.priors_per_partition or DEFAULT_PRIORS_PER_PARTITION[mode]

    def __post_init__(self) -> None:
        _check_cluster(self.cluster, self.workers)
        _check_step(self.step)
        _check_hitrate(self.hitrate)
        _check_budget(self.budget)
        if not 0.0 <= self.min_score <= 1.0:
            raise UsageError(f"--min-score must be within 0..1, not {self.min_score}")
        if self.combine not in COMBINE_CHOICES:
            raise UsageError(f"--combine must be one of {', '.join(COMBINE_CHOICES)}, not {self.combine!r}")
        if self.export is not None and self.export not in EXPORT_CHOICES:
            raise UsageError(f"--export must be one of {', '.join(EXPORT_CHOICES)}, not {self.export!r}")
        _check_default_port(self.default_port)
        if self.priors_per_partition is not None and self.priors_per_partition < 1:
            raise UsageError(f"--priors-per-partition must be positive, not {self.priors_per_partition}")
        if not 0.0 <= self.max_reject_rate <= 1.0:
            raise UsageError(f"--max-reject-rate must be within 0..1, not {self.max_reject_rate}")


# --- simulation and evaluation (gpsgpu simulate, evaluate, demo) --------------------------------


def _check_fraction(name: str, value: float) -> None:
    import math

    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 < value <= 1.0):
        raise UsageError(f"{name} must be within (0, 1] (more than 0, at most 1), not {value}")


def _check_hosts(value: float) -> int:
    import math

    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"--hosts must be a positive whole number, not {value!r}")
    if value < 1 or float(value) != int(value):
        raise UsageError(f"--hosts must be a positive whole number, not {value}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class SimulateConfig:
    """``gpsgpu simulate``: a simulated Internet, its seed scan, statistics and ground truth."""

    hosts: int = 1_000_000
    seed_fraction: float = 0.01
    seed: int = 0
    day: int = 0
    export: str | None = None  # "gps": also write the seed scan as GPS-schema JSON Lines (zstd)
    truth: str = "auto"  # auto: write truth.parquet when it has at most truth_max_services rows
    truth_max_services: int = 5_000_000
    backend: str = "auto"
    cluster: str = "none"  # none | local | local-cuda | tcp://host:port
    workers: int = 0  # workers of a local cluster (0: every core or GPU)
    port_spread: float | str = 1.0  # 1..100, "default" (1.0) or "talk" (gpsgpu.sim.params)

    def __post_init__(self) -> None:
        from gpsgpu.sim.params import parse_port_spread

        _check_cluster(self.cluster, self.workers)
        object.__setattr__(self, "hosts", _check_hosts(self.hosts))
        _check_fraction("--seed-fraction", self.seed_fraction)
        object.__setattr__(self, "port_spread", parse_port_spread(self.port_spread))
        if self.day < 0:
            raise UsageError(f"--day must be 0 or more, not {self.day}")
        if not 0 <= self.seed < 2**63:
            raise UsageError(f"--seed must be within 0..2**63-1, not {self.seed}")
        if self.export not in (None, "gps"):
            raise UsageError(f"--export must be 'gps', not {self.export!r}")
        if self.truth not in ("auto", "always", "never"):
            raise UsageError(f"--truth must be auto, always or never, not {self.truth!r}")
        if self.truth_max_services < 0:
            raise UsageError(f"truth_max_services must be 0 or more, not {self.truth_max_services}")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """``gpsgpu evaluate``: a GPS run (plan + predictions) against a simulated ground truth."""

    truth: str | None = None  # NET/ folder written by gpsgpu simulate
    plan: str | None = None  # PLAN/ folder (default: the one recorded in the predictions' metadata)
    include_pseudo: bool = False  # count services of hosts answering on more than 10 ports
    baselines: tuple[str, ...] = ("port-order", "xgboost")
    xgb_ports: int = 10
    xgb_sample: int = 400_000
    backend: str = "auto"
    cluster: str = "none"  # none | local | local-cuda | tcp://host:port (regenerates the truth)
    workers: int = 0  # workers of a local cluster (0: every core or GPU)
    ablation: bool = False  # compatible vs improved mode step by step (no predictions needed)
    top_k: int = 4  # ablation: predictors per seed service of the top-k steps
    rounds: int = 3  # ablation: rounds of the last step
    preset: str = "extended"  # ablation: feature preset of the extended-features steps

    def __post_init__(self) -> None:
        _check_cluster(self.cluster, self.workers)
        if self.top_k < 1:
            raise UsageError(f"--top-k must be at least 1, not {self.top_k}")
        if not 1 <= self.rounds <= 20:
            raise UsageError(f"--rounds must be within 1..20, not {self.rounds}")
        unknown = sorted(set(self.baselines) - {"port-order", "xgboost", "none"})
        if unknown:
            raise UsageError(f"--baselines: unknown {', '.join(unknown)} (choose port-order, xgboost, none)")
        if not 1 <= self.xgb_ports <= 64:
            raise UsageError(f"--xgb-ports must be within 1..64, not {self.xgb_ports}")
        if self.xgb_sample < 1000:
            raise UsageError(f"--xgb-sample must be at least 1000 addresses, not {self.xgb_sample}")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """``gpsgpu demo``: simulate, learn, plan, scan, predict, probe, evaluate on a small Internet."""

    hosts: int = 150_000
    seed_fraction: float = 0.02
    seed: int = 0
    xgboost: bool = True
    xgb_ports: int = 8
    xgb_sample: int = 150_000
    backend: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", _check_hosts(self.hosts))
        _check_fraction("--seed-fraction", self.seed_fraction)
        if not 0 <= self.seed < 2**63:
            raise UsageError(f"--seed must be within 0..2**63-1, not {self.seed}")
        if not 1 <= self.xgb_ports <= 64:
            raise UsageError(f"--xgb-ports must be within 1..64, not {self.xgb_ports}")


# --- port2dist ------------------------------------------------------------------------------------

#: Windows ``gpsgpu portdist build`` knows, with their length in UTC days.
PORTDIST_WINDOWS = {"day": 1, "week": 7, "month": 30, "year": 365}
PORTDIST_RESCALES = ("assoc", "log", "linear")
PORTDIST_ENGINES = ("auto", "scipy", "minplus", "gpu")


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise UsageError(f"--max-reject-rate must be within 0..1, not {rate}")


@dataclasses.dataclass(frozen=True)
class PortdistIngestConfig:
    """``gpsgpu portdist ingest``: pcap/pcapng captures, CSV/Parquet flow records -> probes table."""

    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE
    allow_truncated: bool = False

    def __post_init__(self) -> None:
        _check_rate(self.max_reject_rate)


@dataclasses.dataclass(frozen=True)
class PortdistSimulateConfig:
    """``gpsgpu portdist simulate``: a /20 darknet with labelled scanner campaigns."""

    probes_per_day: int = 50_000_000
    days: int = 1
    start: str = "2026-01-01"
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class PortdistBuildConfig:
    """``gpsgpu portdist build``: probes -> daily transition counts -> distances per window.

    Sequences (one source, one UTC day) are set aside as full vertical scans when they probe at
    least ``vertical_min_ports`` distinct ports, and as full horizontal scans when they probe at most
    ``horizontal_max_ports`` ports on at least ``horizontal_min_dsts`` darknet addresses; an edge
    needs ``min_sources`` source-days. ``--from-model`` co-location edges need ``min_sources`` shared
    hosts, and each conditional probability is shrunk toward 0 by ``colocation_prior`` pseudo-hosts
    (``gpsgpu.portdist.colocation``).
    """

    windows: tuple[str, ...] = ("week",)
    end: str | None = None  # last day of the windows (YYYY-MM-DD); default: the latest day counted
    backend: str = "auto"
    vertical_min_ports: int = 100
    horizontal_max_ports: int = 1
    horizontal_min_dsts: int = 256
    min_sources: int = 2
    rescale: str = "assoc"
    store_k: int = 64
    apsp: str = "auto"
    from_model: str | None = None
    colocation_prior: float = 10.0
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE

    def __post_init__(self) -> None:
        unknown = [w for w in self.windows if w not in PORTDIST_WINDOWS]
        if unknown:
            raise UsageError(f"--window: unknown {', '.join(unknown)} (choose {', '.join(PORTDIST_WINDOWS)})")
        if self.end is not None:
            import datetime as dt

            try:
                dt.date.fromisoformat(self.end)
            except ValueError:
                raise UsageError(f"--end must be a date (YYYY-MM-DD), not {self.end!r}") from None
        if self.vertical_min_ports < 2:
            raise UsageError(f"--vertical-min-ports must be at least 2, not {self.vertical_min_ports}")
        if not 1 <= self.horizontal_max_ports < self.vertical_min_ports:
            raise UsageError("--horizontal-max-ports must be at least 1 and below --vertical-min-ports")
        if self.horizontal_min_dsts < 1:
            raise UsageError(f"--horizontal-min-dsts must be positive, not {self.horizontal_min_dsts}")
        if self.min_sources < 1:
            raise UsageError(f"--min-sources must be at least 1, not {self.min_sources}")
        if not self.colocation_prior >= 0:
            raise UsageError(f"colocation_prior must be >= 0 (pseudo-hosts), not {self.colocation_prior}")
        if self.rescale not in PORTDIST_RESCALES:
            raise UsageError(f"--rescale must be one of {', '.join(PORTDIST_RESCALES)}, not {self.rescale!r}")
        if not 1 <= self.store_k <= 1024:
            raise UsageError(f"--store-k must be within 1..1024, not {self.store_k}")
        if self.apsp not in PORTDIST_ENGINES:
            raise UsageError(f"--apsp must be one of {', '.join(PORTDIST_ENGINES)}, not {self.apsp!r}")
        _check_rate(self.max_reject_rate)


@dataclasses.dataclass(frozen=True)
class PortdistBlockConfig:
    """``gpsgpu portdist block``: replay probes under k-nearest-port blocking."""

    k: int = 10
    source: str | None = None  # darknet | model (default darknet)
    window: str | None = None  # default: the longest built
    output: str | None = None  # report file (.csv or .json)
    vertical_min_ports: int = 100
    horizontal_max_ports: int = 1
    horizontal_min_dsts: int = 256

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 1000:
            raise UsageError(f"-k must be within 1..1000, not {self.k}")


@dataclasses.dataclass(frozen=True)
class PortdistPeersConfig:
    """``gpsgpu portdist peers``: port2dist vs numeric, IANA ranges and Word2Vec."""

    k: int = 10
    ks: tuple[int, ...] = (1, 2, 3, 5, 10, 20)
    quality_k: int = 5
    window: str | None = None
    replay_days: int = 1  # days after the window replayed (0: all of them)
    w2v_dim: int = 32
    w2v_epochs: int = 10
    w2v_min_count: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        ks = tuple(sorted({int(k) for k in (*self.ks, self.k)}))
        if ks[0] < 1:
            raise UsageError("-k values must be at least 1")
        object.__setattr__(self, "ks", ks)
        if not 1 <= self.quality_k <= 100:
            raise UsageError(f"--quality-k must be within 1..100, not {self.quality_k}")
        if self.replay_days < 0:
            raise UsageError(f"--replay-days must be 0 (all) or more, not {self.replay_days}")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """``gpsgpu serve``: the read-only REST API and web page over stores read once."""

    dist: tuple[str, ...] = ()
    model: str | None = None
    plan: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    log_level: str = "warning"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dist", tuple(self.dist))
        if not 0 <= self.port <= 65_535:
            raise UsageError(f"--port must be within 0..65535, not {self.port}")
        if not 1 <= self.workers <= 64:
            raise UsageError(f"--workers must be within 1..64, not {self.workers}")
        if not self.host:
            raise UsageError("--host must not be empty")
        levels = ("critical", "error", "warning", "info", "debug", "trace")
        if self.log_level not in levels:
            raise UsageError(f"--log-level must be one of {'|'.join(levels)}, not {self.log_level!r}")
        if not (self.dist or self.model or self.plan):
            raise UsageError("nothing to serve: give --dist DIST/, --model MODEL/ and/or --plan PLAN/")

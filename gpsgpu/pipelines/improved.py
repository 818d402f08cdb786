"""Improved mode of ``gpsgpu learn``, ``plan`` and ``predict`` (compatible mode is untouched).

- ``learn --mode improved``: GPS's patterns (``gps2022`` features, whatever the preset: the plan is
  GPS's plan, ranked and budgeted), plus scored top-k
  rules (:mod:`gpsgpu.learn.ranked`) in ``MODEL/rules.parquet`` (``score, count_p2, support,
  hitrate``), and host rules (what a live host of each AS runs) in ``MODEL/host_rules.parquet``
  (``--no-host-rules``: none); the model's metadata records ``mode: improved`` and the knobs, and
  plan and predict follow it.
- ``plan`` of an improved model: rows ranked by expected services per probe
  (:mod:`gpsgpu.plan.budget`), cut by ``--budget``; ``PLAN/plan_rows.parquet`` keeps their scores.
- ``predict`` of an improved model: one round of ranked predictions (:mod:`gpsgpu.predict.ranked`),
  best first, with a ``score``, ``n_rules`` and ``round`` (1) column; those scoring under
  ``--min-score`` are not written, nor those past the first ``--budget``. Host partitions of the
  priors are predicted and sorted on ``--cluster``'s workers (``--workers``), as compatible
  predict's are; the ranking is the same for any cluster.

The loop of plans, scans and prediction rounds (what was found feeding the next round) is a
campaign: ``gpsgpu campaign`` (:mod:`gpsgpu.campaign`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu import schema
from gpsgpu.blocklist import Blocklist
from gpsgpu.config import LearnConfig, PredictConfig, as_dict
from gpsgpu.distributed import SERIAL, Mapper, free_device_pools, open_cluster, retry_on_oom
from gpsgpu.errors import UsageError
from gpsgpu.io.atomic import atomic_dir
from gpsgpu.io.metadata import Timings, build_metadata, write_metadata
from gpsgpu.io.model import HOST_RULES_FILE, Model
from gpsgpu.io.parquet import read_table, write_table
from gpsgpu.io.partitions import ParquetHostPartitions
from gpsgpu.io.predictions import EXPORT_FILE, PredictionWriter
from gpsgpu.io.runs import RunStore
from gpsgpu.learn.ranked import learn_host_rules, learn_ranked_rules, real_hosts
from gpsgpu.ops import cpu
from gpsgpu.pipelines.engine_io import engine_backend, whole_frame
from gpsgpu.plan.budget import cut_budget, rank_plan_rows
from gpsgpu.predict.ranked import (
    empty_predictions,
    known_keys,
    merge_ranked,
    rank_partitions,
    scanned_keys,
)
from gpsgpu.progress import Progress
from gpsgpu.progress import current as current_progress

log = logging.getLogger(__name__)

IMPROVED = "improved"
PLAN_ROWS_FILE = "plan_rows.parquet"
#: The sorted runs of the ranking, inside the output's temporary folder.
RUNS_DIR = ".runs"


def model_mode(model: Model) -> str:
    return str(model.params.get("mode", "compatible"))


def improved_params(config: LearnConfig) -> dict[str, Any]:
    """What an improved model records of its knobs (``metadata.json`` ``params``)."""
    return {
        "mode": config.mode,
        "top_k": config.top_k,
        "min_count": config.min_count,
        "max_host_ports": config.max_host_ports,
        "seed_fraction": config.seed_fraction,
        "host_rules": config.host_rules,
    }


def improve_rules(
    services: Any, result: Any, config: LearnConfig, *, mapper: Mapper = SERIAL, workers: int | None = None
) -> dict[str, int]:
    """Replace ``result.rules`` by the scored top-k rules of the seed (the one engine, with improved
    mode's knobs, on the seed's backend and partitions); add its host rules and real services.
    Returns their counts."""
    # Host rules and the real services first: reading the seed's columns whole is this step's
    # largest transient, best met before the ranked learn's tables exist. Host rules and the real
    # services are per-host tables of a few columns: on the host.
    frame = whole_frame(services, [schema.IP, schema.PORT, schema.ASN, schema.PROTOCOL, schema.BANNER])
    if config.host_rules:
        result.host_rules = learn_host_rules(frame, max_host_ports=config.max_host_ports)
    real = frame[real_hosts(frame, max_host_ports=config.max_host_ports)]
    result.seed_real = pd.DataFrame(
        {
            schema.IP: np.asarray(real[schema.IP], np.uint32),
            schema.PORT: np.asarray(real[schema.PORT], np.uint16),
            schema.ASN: np.asarray(real[schema.ASN], np.uint32),
        }
    )
    del frame, real
    cpu.release_memory()
    result.rules = None  # compatible mode's rules: replaced by the scored ones below
    ranked = retry_on_oom(
        lambda n_partitions: learn_ranked_rules(
            services,
            hitrate=config.hitrate,
            use_asn=config.use_asn,
            preset=config.preset,
            top_k=config.top_k,
            min_count=config.min_count,
            max_host_ports=config.max_host_ports,
            n_partitions=n_partitions,
            workers=workers,
            mapper=mapper,
        ),
        config.partitions,
        what="learn (improved rules)",
        on_retry=free_device_pools,
    )
    result.rules = ranked.rules
    counts = {f"improved_{k}": v for k, v in ranked.counts.items()}
    if config.host_rules:
        counts["improved_n_host_rules"] = len(result.host_rules)
    return counts


def has_host_rules(model_dir: str | os.PathLike[str]) -> bool:
    """Whether the model in ``model_dir`` has host rules (``learn --no-host-rules`` writes none)."""
    return (Path(model_dir) / HOST_RULES_FILE).is_file()


def improved_plan(
    model_dir: str | os.PathLike[str], model: Model, *, step: int, hitrate: float
) -> pd.DataFrame:
    """Plan rows of an improved model, ranked by expected services per probe (best first); with the
    model's host rules, the rows they suggest and the values they shrink (:mod:`gpsgpu.plan.budget`)."""
    path = Path(model_dir) / "seed_real.parquet"
    seed = read_table(path).to_pandas() if path.is_file() else model.seed
    rules_path = Path(model_dir) / HOST_RULES_FILE
    host_rules = read_table(rules_path).to_pandas() if has_host_rules(model_dir) else None
    return rank_plan_rows(
        seed,
        model.patterns,
        step=step,
        hitrate=hitrate,
        seed_fraction=float(model.params.get("seed_fraction", 0.01)),
        host_rules=host_rules,
    )


def hosts_in_rows(ips: np.ndarray, rows: pd.DataFrame, /, *, length: int) -> np.ndarray:
    """The addresses of ``ips`` (sorted uint32) inside the ``/length`` rows' networks."""
    nets = np.unique(rows[schema.PREFIX].to_numpy(np.uint32))
    return ips[cpu.sorted_isin(schema.prefix_of(ips, length), nets)]


def cut_plan(plan: pd.DataFrame, budget: int | None) -> pd.DataFrame:
    """The best rows within ``budget`` probes (rows of one length, in plan order)."""
    if budget is None:
        return plan
    if schema.LENGTH not in plan.columns:
        return cut_budget(plan.assign(**{schema.LENGTH: 16}), budget=budget).drop(columns=[schema.LENGTH])
    return cut_budget(plan, budget=budget)


def check_compatible_flags(config: PredictConfig) -> None:
    """Improved-mode flags given with a compatible model: a usage error (nothing would honour them)."""
    given = [
        name
        for name, on in (
            ("--budget", config.budget is not None),
            ("--min-score", config.min_score != 0),
            ("--combine", config.combine != "noisy-or"),
        )
        if on
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)} need a model learned with 'gpsgpu learn --mode improved' "
            "(this model is compatible mode: one unranked GPS prediction list)"
        )


def _empty_round() -> pd.DataFrame:
    return empty_predictions().assign(**{schema.ROUND: np.zeros(0, np.uint16)})


def _ranked_runs(
    directory: Path,
    scan: Any,
    rules: pd.DataFrame,
    n_partitions: int,
    /,
    *,
    mapper: Mapper,
    bar: Progress,
    **ranking: Any,
) -> RunStore:
    """The sorted runs of ``scan``'s predictions (:func:`rank_partitions` with ``ranking``'s
    arguments, in about ``n_partitions`` host partitions) in a new store in ``directory``: a stage of
    :func:`retry_on_oom` (a retry starts over, with smaller partitions)."""
    bar.update(0)
    store = RunStore(directory)
    try:
        rows = max(1, math.ceil(len(scan) / n_partitions))
        for part in rank_partitions(scan, rules, partition_rows=rows, mapper=mapper, **ranking):
            store.add(part)
            del part  # before the next partition is predicted
    except BaseException:
        store.close()
        raise
    return store


def run_predict_improved(
    model_dir: str | os.PathLike[str],
    model: Model,
    opened: tuple[Any, list[dict[str, Any]]],
    output: str | os.PathLike[str],
    config: PredictConfig,
    *,
    step: int,
    hitrate: float,
    blocklist: Blocklist,
    timings: Timings,
) -> dict[str, Any]:
    """``gpsgpu predict`` of an improved model (module docstring).

    The ranked predictions never sit in memory whole: a host partition at a time is ranked into
    sorted runs on disk (in the output's temporary folder), which are merged best first into the
    shard, down to ``--min-score`` and up to ``--budget``.
    """
    output = Path(output)
    started = time.perf_counter() - timings["read"]
    backend = engine_backend(config.backend, config.cluster)
    preset = str(model.params.get("preset", "gps2022"))
    # The priors scan as ``gpsgpu predict`` opened it (a services table is read a host partition
    # at a time), read once for either mode.
    scan, described = opened
    with atomic_dir(output) as tmp:
        with timings.step("predict"):
            # The rows the priors scan covered: PLAN/plan_rows.parquet (cut by its budget), else all.
            rows_file = Path(config.plan) / PLAN_ROWS_FILE if config.plan else None
            if rows_file is not None and rows_file.is_file():
                plan = read_table(rows_file).to_pandas()
            else:
                plan = improved_plan(model_dir, model, step=step, hitrate=hitrate)
            scanned = scanned_keys(
                plan[schema.NEEDED_P].to_numpy(),
                plan[schema.PREFIX].to_numpy(),
                plan[schema.LENGTH].to_numpy(),
            )
            # Of a services table read by partitions, only the addresses and ports are read whole.
            observed = (
                read_table(scan.path, columns=[schema.IP, schema.PORT]).to_pandas()
                if isinstance(scan, ParquetHostPartitions)
                else scan
            )
            observed = observed.to_pandas() if hasattr(observed, "to_pandas") else observed
            known = known_keys(model.seed, observed)
            del observed
            n_scan = len(scan)
            # The seed's hosts were scanned on every port: host rules predict nothing there.
            seed_hosts = np.unique(np.asarray(model.seed[schema.IP], np.uint32))
            floor = np.float32(config.min_score)
            room = None if config.budget is None else max(int(config.budget), 0)
            n_out = 0
            with (
                PredictionWriter(tmp, export=config.export) as writer,
                Progress("predict (improved)", total=n_scan, unit="services", heartbeat=True) as bar,
                current_progress(bar),
            ):
                writer.append(_empty_round(), empty=_empty_round())
                bar.note("predicting and ranking")
                # Host partitions of the priors are predicted and sorted on the cluster's workers
                # (in this process with --cluster none) and come back in order: the same runs.
                with open_cluster(config.cluster, workers=config.workers) as mapper:
                    store = retry_on_oom(
                        functools.partial(
                            _ranked_runs, tmp / RUNS_DIR, scan, model.rules, mapper=mapper, bar=bar,
                            known=known, scanned=scanned, blocklist=blocklist, combine=config.combine,
                            preset=preset, host_rules=model.host_rules, skip_hosts=seed_hosts,
                        ),
                        max(1, math.ceil(n_scan / config.partition_rows(IMPROVED))),
                        what="predict (improved)",
                        on_retry=free_device_pools,
                    )  # fmt: skip
                del scan, known
                with store:  # the runs are removed once merged
                    n_ranked = store.n_rows
                    bar.note(f"{n_ranked:,} predictions: merging them best first")
                    for block in merge_ranked(store.readers()):
                        # Best first: the rows kept are a prefix of each block, and of the whole.
                        n_keep = int((block[schema.SCORE].to_numpy() >= floor).sum())
                        if room is not None:
                            n_keep = min(n_keep, room - n_out)
                        if n_keep > 0:
                            now = block.iloc[:n_keep]
                            writer.append(
                                now.assign(**{schema.ROUND: np.ones(n_keep, np.uint16)}), empty=_empty_round()
                            )
                            n_out += n_keep
                        if n_keep < len(block):
                            break
            n_predictions = writer.n_predictions
        counts = {
            "n_priors_services": n_scan,
            "n_rules": len(model.rules),
            "n_plan_rows": len(plan),
            "n_ranked": n_ranked,
            "n_predictions": n_predictions,
            "min_score": float(config.min_score),
        }
        metadata = build_metadata(
            command="predict",
            config=as_dict(config),
            inputs={"model": str(model_dir), "plan": config.plan, "priors": described},
            backend=backend.value,
            counts=counts,
            timings=timings,
            extra={
                "params": {"step": step, "hitrate": hitrate, "mode": IMPROVED, "preset": preset},
                "outputs": {"shards": writer.n_shards, "export": EXPORT_FILE if config.export else None},
            },
        )
        write_metadata(tmp / "metadata.json", metadata)
    print(
        f"gpsgpu: predict (improved): {n_scan:,} priors services x {len(model.rules):,} scored rules -> "
        f"{n_predictions:,} ranked predictions (of {n_ranked:,}) "
        f"in {time.perf_counter() - started:.2f} s -> {output}",
        file=sys.stderr,
    )
    return metadata


def write_plan_rows(plan: pd.DataFrame, directory: Path) -> str:
    """``PLAN/plan_rows.parquet``: the rows with their value and score (expected services per probe)."""
    columns = [
        c
        for c in (
            schema.NEEDED_P,
            schema.PREFIX,
            schema.N_PATTERNS,
            schema.VALUE,
            schema.SCORE,
            schema.LENGTH,
            schema.PROBES,
        )
        if c in plan.columns
    ]
    write_table(schema.frame_to_arrow(plan[columns].reset_index(drop=True)), directory / PLAN_ROWS_FILE)
    return PLAN_ROWS_FILE


__all__ = [
    "IMPROVED",
    "PLAN_ROWS_FILE",
    "check_compatible_flags",
    "cut_plan",
    "has_host_rules",
    "hosts_in_rows",
    "improve_rules",
    "improved_params",
    "improved_plan",
    "model_mode",
    "run_predict_improved",
    "write_plan_rows",
]

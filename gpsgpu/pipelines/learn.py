"""``gpsgpu learn``: seed scan -> MODEL/ (phase 1a)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from gpsgpu import schema
from gpsgpu.backend import Backend
from gpsgpu.config import LearnConfig, as_dict
from gpsgpu.distributed import free_device_pools, open_cluster, retry_on_oom
from gpsgpu.io.atomic import atomic_dir
from gpsgpu.io.metadata import Timings, build_metadata
from gpsgpu.io.model import write_model, write_model_tables
from gpsgpu.io.parquet import write_table
from gpsgpu.learn import learn_patterns
from gpsgpu.learn.patterns import LearnResult
from gpsgpu.ops.cpu import release_memory
from gpsgpu.pipelines.engine_io import bytes_to_device, engine_backend, open_scan
from gpsgpu.pipelines.improved import improved_params
from gpsgpu.progress import Progress

log = logging.getLogger(__name__)

#: The steps named in the summary line (the whole command's time comes first).
_STEPS = ("read", "learn", "learn_ranked", "write")


def run_learn(seed: list[str], output: str | os.PathLike[str], config: LearnConfig) -> dict[str, Any]:
    """Learn patterns and rules from ``seed`` (a services table or scan records) into ``output``."""
    output = Path(output)
    started = time.perf_counter()
    backend = engine_backend(config.backend, config.cluster)
    timings = Timings()
    with timings.step("read"):
        # One services Parquet file is read host partition by host partition (out of core).
        services, described = open_scan(seed, backend=backend, what="seed", default_port=config.default_port)
    improved = config.mode == "improved"
    # The model's folder is made first: improved mode writes GPS's patterns and seed there before
    # it learns its scored rules, so that they leave memory (the folder replaces OUTPUT at the end).
    with open_cluster(config.cluster, workers=config.workers) as mapper, atomic_dir(output) as tmp:
        workers = (config.threads or 1) if mapper.distributed else (config.threads or None)

        def stage(n_partitions: int) -> LearnResult:
            # GPS's patterns: the plan is GPS's in either mode (improved mode's rules come next).
            return learn_patterns(
                services,
                hitrate=config.hitrate,
                use_asn=config.use_asn,
                preset="gps2022" if improved else config.preset,
                n_partitions=n_partitions,
                chunk_pairs=config.chunk_pairs,
                workers=workers,
                mapper=mapper,
                keep_counts=config.save_counts,
            )

        with timings.step("learn"), Progress("learn: patterns and rules", heartbeat=True):
            result = retry_on_oom(stage, config.partitions, what="learn", on_retry=free_device_pools)
        counts = result.counts
        release_memory()  # the learn's last temporaries, freed on its return, before the next step
        if improved:
            from gpsgpu.pipelines.improved import improve_rules

            with timings.step("write"):
                write_model_tables(result, tmp, counts=config.save_counts, only=("patterns", "seed"))
            with timings.step("learn_ranked"), Progress("learn: scored and host rules", heartbeat=True):
                counts.update(improve_rules(services, result, config, mapper=mapper, workers=workers))
                counts["n_rules"] = len(result.rules)
            release_memory()  # the scored rules' temporaries, before the model is written
        if backend is Backend.GPU and (copied := bytes_to_device(services)) is not None:
            counts["bytes_host_to_device"] = copied
        timings.update({f"learn.{step}": seconds for step, seconds in result.timings.items()})
        if counts["n_hosts_counted"] == 0:
            log.warning(
                "the seed has no host with 2..10 ports: nothing to learn from; the model holds only the "
                "%d single-port rows and no rules (predict will predict nothing)",
                counts["n_patterns_single"],
            )
        metadata = build_metadata(
            command="learn",
            config=as_dict(config),
            inputs={"seed": described},
            backend=backend.value,
            counts=counts,
            timings=timings,
            extra={
                "params": {
                    "preset": config.preset,
                    "hitrate": config.hitrate,
                    "step": config.step,
                    "use_asn": config.use_asn,
                    **(improved_params(config) if improved else {}),
                }
            },
        )
        with timings.step("write"), Progress("learn: writing the model", heartbeat=True):
            write_model(result, tmp, metadata, counts=config.save_counts)
            if improved:
                write_table(schema.frame_to_arrow(result.seed_real), tmp / "seed_real.parquet")
    steps = ", ".join(f"{k} {timings[k]:.1f} s" for k in _STEPS if k in timings)
    print(
        f"gpsgpu: learn: {counts['n_services']:,} services on {counts['n_hosts']:,} hosts "
        f"({counts['n_hosts_counted']:,} with 2..10 ports) -> {counts['n_patterns']:,} patterns "
        f"({counts['n_patterns_single']:,} single-port), {counts['n_rules']:,} rules "
        f"in {time.perf_counter() - started:.2f} s ({steps}) -> {output}",
        file=sys.stderr,
    )
    return metadata

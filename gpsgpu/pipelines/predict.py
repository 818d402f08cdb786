"""``gpsgpu predict``: MODEL/ + priors scan -> PRED/ (phase 2)."""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from gpsgpu.backend import Backend
from gpsgpu.config import PredictConfig, as_dict
from gpsgpu.distributed import free_device_pools, open_cluster, retry_on_oom
from gpsgpu.io.atomic import atomic_dir
from gpsgpu.io.metadata import Timings, build_metadata, write_metadata
from gpsgpu.io.model import read_model, read_plan_params
from gpsgpu.io.predictions import EXPORT_FILE, PredictionWriter
from gpsgpu.pipelines.engine_io import blocklist_for, bytes_to_device, engine_backend, open_scan
from gpsgpu.pipelines.improved import IMPROVED, check_compatible_flags, model_mode, run_predict_improved
from gpsgpu.plan import plan_priors
from gpsgpu.predict import PredictTables, predict_services, prepare_predict
from gpsgpu.progress import Progress, current

log = logging.getLogger(__name__)


def _predict_partition(
    part: Any, *, tables: PredictTables, preset: str, workers: int | None
) -> tuple[Any, int]:
    """Predictions of one priors partition and its rows (a :class:`~gpsgpu.distributed.Mapper`
    task)."""
    return predict_services(part, tables, preset=preset, workers=workers), len(part)


def _clear(folder: Path) -> None:
    """Empty ``folder`` (the shards of a failed attempt) and free device memory pools."""
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    free_device_pools()


def run_predict(
    model_dir: str | os.PathLike[str],
    priors: list[str],
    output: str | os.PathLike[str],
    config: PredictConfig,
) -> dict[str, Any]:
    """Predict services from the priors scan ``priors`` with the model in ``model_dir``."""
    output = Path(output)
    timings = Timings()
    backend = engine_backend(config.backend, config.cluster)
    with timings.step("read"):
        model = read_model(model_dir)
        blocklist = blocklist_for(config.blocklist, plans=[config.plan])
        # One services Parquet file is read host partition by host partition (out of core).
        scan, described = open_scan(
            priors,
            backend=backend,
            fmt=config.format,
            max_reject_rate=config.max_reject_rate,
            what="priors scan",
            default_port=config.default_port,
        )
    params = dict(model.params)
    if config.plan is not None:
        params.update(read_plan_params(config.plan))
    step = config.step if config.step is not None else int(params["step"])
    hitrate = config.hitrate if config.hitrate is not None else float(params["hitrate"])
    if model_mode(model) == IMPROVED:
        return run_predict_improved(
            model_dir,
            model,
            (scan, described),
            output,
            config,
            step=step,
            hitrate=hitrate,
            blocklist=blocklist,
            timings=timings,
        )
    check_compatible_flags(config)
    if len(model.rules) == 0:
        log.warning("the model has no rules (its seed had no usable host): no predictions")
    first_partitions = max(1, math.ceil(len(scan) / config.partition_rows("compatible")))
    with (
        timings.step("predict"),
        open_cluster(config.cluster, workers=config.workers) as mapper,
        atomic_dir(output) as tmp,
    ):
        plan = plan_priors(model.patterns, step=step, hitrate=hitrate)
        tables = prepare_predict(model.rules, plan=plan, seed=model.seed, step=step, blocklist=blocklist)
        # The keyed rules, plan, seed and blocklist go to every worker once (to the device once in
        # this process); priors partitions are mapped.
        shared = {
            "tables": mapper.broadcast(tables if mapper.distributed else tables.on(backend)),
            "workers": 1 if mapper.distributed else None,
            # Priors features are those the model was learned with (its recorded preset).
            "preset": str(model.params.get("preset", "gps2022")),
        }

        def stage(n: int) -> tuple[int, PredictionWriter]:
            with (
                PredictionWriter(tmp, export=config.export) as writer,
                Progress("predict", total=len(scan), unit="services") as bar,
                current(bar),  # this process's partitions advance it chunk by chunk
            ):
                parts = mapper.partitions(scan, n)  # read one at a time (by a local cluster's workers)
                for predicted, n_rows in mapper.imap(_predict_partition, parts, **shared):
                    writer.write(predicted)
                    if mapper.distributed:  # a worker's chunks advance no bar here
                        bar.advance(n_rows)
            return n, writer

        n_partitions, writer = retry_on_oom(
            stage, first_partitions, what="predict", on_retry=lambda: _clear(tmp)
        )
        counts = {
            "n_priors_services": len(scan),
            "n_rules": len(model.rules),
            "n_plan_rows": len(plan),
            "n_partitions": n_partitions,
            "n_predictions": writer.n_predictions,
        }
        if backend is Backend.GPU:
            # The priors come to the device when read; only the predictions (ip, port, score) leave.
            if (copied := bytes_to_device(scan)) is not None:
                counts["bytes_host_to_device"] = copied
            counts["bytes_device_to_host"] = writer.n_predictions * 10
        metadata = build_metadata(
            command="predict",
            config=as_dict(config),
            inputs={"model": str(model_dir), "plan": config.plan, "priors": described},
            backend=backend.value,
            counts=counts,
            timings=timings,
            extra={
                "params": {"step": step, "hitrate": hitrate},
                "outputs": {"shards": writer.n_shards, "export": EXPORT_FILE if config.export else None},
            },
        )
        write_metadata(tmp / "metadata.json", metadata)
    print(
        f"gpsgpu: predict: {len(scan):,} priors services x {len(model.rules):,} rules -> "
        f"{counts['n_predictions']:,} predicted services in {timings['predict']:.2f} s -> {output}",
        file=sys.stderr,
    )
    return metadata

"""Improved mode of ``gpsgpu learn``, ``plan`` and ``predict`` (compatible mode is untouched).

- ``learn --mode improved``: GPS's patterns (``gps2022`` features, whatever the preset: the plan is
  GPS's plan, ranked and budgeted), plus scored top-k
  rules (:mod:`gpsgpu.learn.ranked`) in ``MODEL/rules.parquet`` (``score, count_p2, support,
  hitrate``); the model's metadata records ``mode: improved`` and the knobs, and plan and predict
  follow it.
- ``plan`` of an improved model: rows ranked by expected services per probe
  (:mod:`gpsgpu.plan.budget`), cut by ``--budget``; ``PLAN/plan_rows.parquet`` keeps their scores.
- ``predict`` of an improved model: ranked predictions (:mod:`gpsgpu.predict.ranked`) with a
  ``score``, ``n_rules`` and ``round`` column, cut by ``--budget``/``--min-score``. Rounds:

  * on a simulated Internet, ``--rounds R --sim NET/`` probes each round's predictions there and
    feeds the services found back as observations of the next round;
  * on a real scan, one round per call: probe ``PRED1/predictions.txt``, ingest the results, and run
    ``predict MODEL PRIORS -o PRED2 --found round1.parquet --after PRED1`` (the found services are
    observations, PRED1's targets are not predicted again; ``round`` counts the ``--after`` folders).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from gpsgpu import schema
from gpsgpu.backend import Backend, resolve, to_numpy
from gpsgpu.config import LearnConfig, PredictConfig, as_dict
from gpsgpu.errors import InputError, UsageError
from gpsgpu.io.atomic import atomic_dir
from gpsgpu.io.metadata import Timings, build_metadata, write_metadata
from gpsgpu.io.model import Model
from gpsgpu.io.parquet import read_table, write_table
from gpsgpu.io.predictions import EXPORT_FILE, PredictionWriter
from gpsgpu.learn.ranked import learn_ranked_rules, real_hosts
from gpsgpu.pipelines.engine_io import blocklist_for, read_scan
from gpsgpu.plan.budget import cut_budget, rank_plan_rows
from gpsgpu.predict.ranked import known_keys, rank_predictions, scanned_keys

log = logging.getLogger(__name__)

IMPROVED = "improved"
PLAN_ROWS_FILE = "plan_rows.parquet"


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
    }


def improve_rules(seed: list[str], result: Any, config: LearnConfig, backend: Backend) -> dict[str, int]:
    """Replace ``result.rules`` by the scored top-k rules of the seed; returns their counts."""
    services, _ = read_scan(seed, backend=backend, what="seed")
    ranked = learn_ranked_rules(
        services,
        hitrate=config.hitrate,
        use_asn=config.use_asn,
        preset=config.preset,
        top_k=config.top_k,
        min_count=config.min_count,
        max_host_ports=config.max_host_ports,
    )
    result.rules = ranked.rules
    if config.preset != "gps2022":
        # The plan is GPS's whatever the rules' preset: patterns.parquet holds GPS's patterns.
        from gpsgpu.learn import learn_patterns

        result.patterns = learn_patterns(services, hitrate=config.hitrate, use_asn=config.use_asn).patterns
    frame = services.to_pandas() if hasattr(services, "to_pandas") else services
    real = frame[real_hosts(frame, max_host_ports=config.max_host_ports)]
    result.seed_real = pd.DataFrame(
        {
            schema.IP: np.asarray(real[schema.IP], np.uint32),
            schema.PORT: np.asarray(real[schema.PORT], np.uint16),
        }
    )
    return {f"improved_{k}": v for k, v in ranked.counts.items()}


def improved_plan(
    model_dir: str | os.PathLike[str], model: Model, *, step: int, hitrate: float
) -> pd.DataFrame:
    """Plan rows of an improved model, ranked by expected services per probe (best first)."""
    path = Path(model_dir) / "seed_real.parquet"
    seed = read_table(path).to_pandas() if path.is_file() else model.seed
    return rank_plan_rows(
        seed,
        model.patterns,
        step=step,
        hitrate=hitrate,
        seed_fraction=float(model.params.get("seed_fraction", 0.01)),
    )


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
            ("--min-score", config.min_score > 0),
            ("--rounds", config.rounds > 1),
            ("--found", bool(config.found)),
            ("--after", bool(config.after)),
            ("--sim", config.sim is not None),
            ("--combine", config.combine != "noisy-or"),
        )
        if on
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)} need a model learned with 'gpsgpu learn --mode improved' "
            "(this model is compatible mode: one unranked GPS prediction list)"
        )


def _previous_targets(folders: tuple[str, ...]) -> np.ndarray:
    parts = []
    for folder in folders:
        shards = Path(folder) / "parts"
        if not shards.is_dir():
            raise InputError(
                f"--after {folder}: no parts/ folder; is this a folder written by 'gpsgpu predict'?"
            )
        for f in sorted(shards.glob("*.parquet")):
            t = pq.read_table(f, columns=[schema.IP, schema.PORT])
            parts.append(
                schema.pack_service(
                    np.asarray(t[schema.IP]).astype(np.uint32), np.asarray(t[schema.PORT]).astype(np.uint16)
                )
            )
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def run_predict_improved(
    model_dir: str | os.PathLike[str],
    model: Model,
    priors: list[str],
    output: str | os.PathLike[str],
    config: PredictConfig,
    *,
    step: int,
    hitrate: float,
) -> dict[str, Any]:
    """``gpsgpu predict`` of an improved model (module docstring)."""
    output = Path(output)
    timings = Timings()
    backend = resolve(config.backend)
    preset = str(model.params.get("preset", "gps2022"))
    with timings.step("read"):
        blocklist = blocklist_for(config.blocklist)
        scan, described = read_scan(
            priors,
            backend=backend,
            fmt=config.format,
            max_reject_rate=config.max_reject_rate,
            what="priors scan",
        )
        observed = [scan]
        for path in config.found:
            found, _ = read_scan([path], backend=backend, what="--found")
            observed.append(found)
        previous = _previous_targets(config.after)
    with timings.step("predict"):
        # The rows the priors scan covered: PLAN/plan_rows.parquet (cut by its budget), else all.
        rows_file = Path(config.plan) / PLAN_ROWS_FILE if config.plan else None
        if rows_file is not None and rows_file.is_file():
            plan = read_table(rows_file).to_pandas()
        else:
            plan = improved_plan(model_dir, model, step=step, hitrate=hitrate)
        scanned = scanned_keys(
            plan[schema.NEEDED_P].to_numpy(), plan[schema.PREFIX].to_numpy(), plan[schema.LENGTH].to_numpy()
        )
        frames = [o.to_pandas() if hasattr(o, "to_pandas") else o for o in observed]
        known = np.union1d(known_keys(model.seed, *frames), previous)
        current = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        scanner = None
        if config.sim is not None:
            from gpsgpu.evaluate.ablation import services_at
            from gpsgpu.pipelines.simulate import open_net
            from gpsgpu.sim.scanner import SimScanner

            internet, _ = open_net(config.sim, backend)
            scanner = SimScanner(internet)
        first_round = 1 + len(config.after)
        budget = config.budget
        rounds = []
        for r in range(first_round, first_round + config.rounds):
            preds = rank_predictions(
                current, model.rules, known=known, scanned=scanned, blocklist=blocklist,
                combine=config.combine, min_score=config.min_score, budget=budget, preset=preset,
            )  # fmt: skip
            preds[schema.ROUND] = np.full(len(preds), r, np.uint16)
            rounds.append(preds)
            targets = known_keys(preds)
            known = np.union1d(known, targets)
            if budget is not None:
                budget -= len(preds)
            if scanner is None or len(preds) == 0 or (budget is not None and budget <= 0):
                break
            ip, port = preds[schema.IP].to_numpy(np.uint32), preds[schema.PORT].to_numpy(np.uint16)
            hit = np.asarray(to_numpy(scanner.probe(ip, port)), bool)
            current = services_at(
                scanner.internet, targets[np.isin(targets, schema.pack_service(ip[hit], port[hit]))]
            )
            log.info(
                "round %d: %d predictions, %d found on the simulated Internet", r, len(preds), int(hit.sum())
            )
            if len(current) == 0:
                break
        predictions = pd.concat(rounds, ignore_index=True)
    with atomic_dir(output) as tmp:
        with PredictionWriter(tmp, export=config.export) as writer:
            writer.write(predictions)
        counts = {
            "n_priors_services": len(scan),
            "n_found_services": int(sum(len(f) for f in frames[1:])),
            "n_rules": len(model.rules),
            "n_plan_rows": len(plan),
            "n_predictions": len(predictions),
            "n_rounds": len(rounds),
            "n_predictions_per_round": [len(p) for p in rounds],
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
        f"gpsgpu: predict (improved): {len(scan):,} priors services x {len(model.rules):,} scored rules -> "
        f"{len(predictions):,} ranked predictions in {len(rounds)} round(s) -> {output}",
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
        )
        if c in plan.columns
    ]
    write_table(schema.frame_to_arrow(plan[columns].reset_index(drop=True)), directory / PLAN_ROWS_FILE)
    return PLAN_ROWS_FILE


__all__ = [
    "IMPROVED",
    "check_compatible_flags",
    "cut_plan",
    "improve_rules",
    "improved_params",
    "improved_plan",
    "model_mode",
    "run_predict_improved",
    "write_plan_rows",
]

"""Improved mode of ``gpsgpu learn``, ``plan`` and ``predict`` (compatible mode is untouched).

- ``learn --mode improved``: GPS's patterns (``gps2022`` features, whatever the preset: the plan is
  GPS's plan, ranked and budgeted), plus scored top-k
  rules (:mod:`gpsgpu.learn.ranked`) in ``MODEL/rules.parquet`` (``score, count_p2, support,
  hitrate``), and host rules (what a live host of each AS runs) in ``MODEL/host_rules.parquet``
  (``--no-host-rules``: none); the model's metadata records ``mode: improved`` and the knobs, and
  plan and predict follow it.
- ``plan`` of an improved model: rows ranked by expected services per probe
  (:mod:`gpsgpu.plan.budget`), cut by ``--budget``; ``PLAN/plan_rows.parquet`` keeps their scores.
- ``predict`` of an improved model: ranked predictions (:mod:`gpsgpu.predict.ranked`) with a
  ``score``, ``n_rules`` and ``round`` column, cut by ``--budget``/``--min-score``. Rounds:

  * on a simulated Internet, ``--rounds R --sim NET/`` probes each round's predictions there and
    feeds the services found back as observations of the next round;
  * on a real scan, one round per call: probe ``PRED1/predictions.txt``, ingest the results, and run
    ``predict MODEL PRIORS -o PRED2 --found round1.parquet --after PRED1`` (the found services are
    observations, PRED1's targets are not predicted again; ``round`` counts the ``--after`` folders).
  ``--min-score S`` writes the predictions it held back to ``PRED/held.parquet`` (with what its own
  ``--after`` folders held and it did not probe); the next call with ``--after PRED`` ranks them
  again with its own (a target predicted again takes the new score; one probed or scanned since
  goes).
- The ablation's improved schedule, step by step (:func:`staged_plan`; ``tests/test_improved_cli.py``
  checks that it finds exactly the ablation's services with exactly its probes):

  1. for K in 1..N (N = 16): ``plan MODEL -o NARROWK --stage head-live --part K/N --live
     HEAD1.parquet ..`` (K > 1): the rows of the K-th of N parts of GPS's rows with at least 3
     patterns whose network earlier parts scanned on 2 ports, only in the /24s found live so far;
     scan it;
     then ``plan MODEL -o HEADK --stage head --part K/N``: the part's other rows; scan them whole;
  2. ``predict MODEL HEAD1.parquet NARROW2.parquet .. -o PRED1 --plan HEAD --min-score 0.003``
     (``HEAD``: ``plan --stage head`` without ``--part``; predictions inside head rows are never
     made); probe PRED1;
  3. for K in 1..N (N = 16): ``plan MODEL -o TAILK --stage tail --part K/N --live HEAD1.parquet ..
     --live FOUND1.parquet --scanned TAIL1 .. --found TAIL1.parquet ..`` (the K-1 earlier parts and
     what their scans found): the other rows (and those the host rules suggest), narrowed to the
     /24s where the seed or those scans found a host, skipping the hosts found (in the plan's
     ``blocklist.txt``), by value re-ranked by what the earlier parts found, the next of N parts of
     equal probes; scan it; unless K = N, ``predict MODEL PREV.parquet --found TAILK.parquet -o
     PREDK' --plan HEAD --scanned TAIL1 .. --scanned TAILK --after PRED1 .. --min-score yield``
     (PREV: what the previous predictions found) and probe it;
  4. the next round without ``--min-score`` (it takes the backlog held back so far), with the last
     tail part as ``--found`` and every prediction folder as ``--after``; probe; one more round
     likewise.

  On the simulated Internet, ``gpsgpu sim-scan NET/ PLAN_OR_PRED/`` does each scan or probe.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu import schema
from gpsgpu.backend import Backend, resolve, to_numpy
from gpsgpu.config import MIN_SCORE_YIELD, LearnConfig, PredictConfig, as_dict
from gpsgpu.distributed import SERIAL, Mapper, free_device_pools, retry_on_oom
from gpsgpu.errors import InputError, UsageError
from gpsgpu.io.atomic import atomic_dir
from gpsgpu.io.metadata import Timings, build_metadata, write_metadata
from gpsgpu.io.model import HOST_RULES_FILE, Model
from gpsgpu.io.parquet import read_table, write_table
from gpsgpu.io.partitions import ParquetHostPartitions
from gpsgpu.io.predictions import (
    EXPORT_FILE,
    HELD_FILE,
    PredictionWriter,
    held_path,
    held_stream,
    read_calibration,
    read_held_batches,
    read_held_keys,
    read_scores,
    read_targets,
    write_calibration,
)
from gpsgpu.io.runs import RunStore
from gpsgpu.learn.ranked import learn_host_rules, learn_ranked_rules, real_hosts
from gpsgpu.ops import cpu
from gpsgpu.pipelines.engine_io import blocklist_for, open_scan, read_scan, whole_frame
from gpsgpu.plan.budget import (
    DEFAULT_HEAD_PATTERNS,
    TAIL_LENGTH,
    cut_budget,
    found_per_row,
    head_part,
    live_rows,
    live_tail,
    next_tail_part,
    rank_plan_rows,
    row_probes,
    split_head,
)
from gpsgpu.predict.ranked import (
    add_calibration,
    calibration_counts,
    empty_predictions,
    held_keep,
    known_keys,
    merge_ranked,
    part_yield,
    rank_partitions,
    release_score,
    scanned_keys,
    sort_ranked,
    union_sorted_keys,
)
from gpsgpu.progress import Progress
from gpsgpu.progress import current as current_progress

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
        "host_rules": config.host_rules,
    }


def improve_rules(
    services: Any, result: Any, config: LearnConfig, *, mapper: Mapper = SERIAL, workers: int | None = None
) -> dict[str, int]:
    """Replace ``result.rules`` by the scored top-k rules of the seed (the one engine, with improved
    mode's knobs, on the seed's backend and partitions); add its host rules and real services.
    Returns their counts."""
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
    # Host rules and the real services are per-host tables of a few columns: on the host.
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


def staged_plan(
    plan: pd.DataFrame,
    stage: str,
    *,
    live_ips: np.ndarray,
    part: tuple[int, int] | None = None,
    scanned: tuple[str, ...] = (),
    found: tuple[str, ...] = (),
    skip_live: bool = True,
) -> pd.DataFrame:
    """``plan --stage head|head-live|tail``: head rows (of one part: to scan whole, or narrowed to the
    live /24s), or the tail rows narrowed to the live /24s.

    The schedule of the ablation's "+ rounds" (:mod:`gpsgpu.plan.budget`): scan the head part by
    part, each part's rows only in the /24s found live where earlier parts scanned their network on
    two ports (``head-live``), the others whole (``head``); probe the predictions scoring at least 0.003
    (``predict --min-score``); then the tail, where ``live_ips`` (:func:`read_live`: the seed's hosts
    and what the head scan and those predictions found) are live, skipping those addresses when
    ``skip_live`` (the model has host rules: :func:`gpsgpu.plan.budget.live_tail`).
    """
    head, tail = split_head(plan, head_patterns=DEFAULT_HEAD_PATTERNS)
    if stage == "head":
        return head if part is None else head_part(head, part=part[0] - 1, parts=part[1])[0]
    if stage == "head-live":
        assert part is not None  # PlanConfig checks it
        swept = head_part(head, part=part[0] - 1, parts=part[1])[1]
        return live_rows(swept, live_ips, length=TAIL_LENGTH).drop(columns="row")
    narrow = live_tail(tail, live_ips, length=TAIL_LENGTH, skip_live=skip_live)
    if part is None:
        return narrow
    # What the earlier parts scanned and found there re-ranks the rows left.
    done = [read_table(Path(d) / PLAN_ROWS_FILE).to_pandas() for d in _plan_rows_dirs(scanned)]
    # The tail rows scanned: those holding an earlier part's row (its /24's first address).
    firsts = [
        schema.pack_service(d[schema.PREFIX].to_numpy(np.uint32), d[schema.NEEDED_P].to_numpy(np.uint16))
        for d in done
    ]
    was_scanned = found_per_row(narrow, np.concatenate([np.zeros(0, np.uint64), *firsts])) > 0
    frames = [read_scan([path], backend=Backend.CPU, what="--found", allow_empty=True)[0] for path in found]
    found_there = np.where(was_scanned, found_per_row(narrow, known_keys(*frames)), 0.0)
    take = next_tail_part(narrow, was_scanned, found_there, part=part[0] - 1, parts=part[1])
    return narrow.iloc[take].reset_index(drop=True)


def read_live(model: Model, live: tuple[str, ...]) -> np.ndarray:
    """The addresses known live (sorted uint32): the seed's hosts and every ``--live`` scan's."""
    ips = [np.asarray(model.seed[schema.IP], np.uint32)]
    for path in live:
        found, _ = read_scan([path], backend=Backend.CPU, what="--live", allow_empty=True)
        ips.append(np.asarray(to_numpy(found[schema.IP]), np.uint32))
    return np.unique(np.concatenate(ips))


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
            ("--rounds", config.rounds > 1),
            ("--found", bool(config.found)),
            ("--after", bool(config.after)),
            ("--sim", config.sim is not None),
            ("--combine", config.combine != "noisy-or"),
            ("--scanned", bool(config.scanned)),
        )
        if on
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)} need a model learned with 'gpsgpu learn --mode improved' "
            "(this model is compatible mode: one unranked GPS prediction list)"
        )


def _previous_targets(folders: tuple[str, ...]) -> np.ndarray:
    parts = [schema.pack_service(*read_targets(folder, what="--after ")) for folder in folders]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def _calibration(folders: tuple[str, ...], found: np.ndarray) -> pd.DataFrame:
    """Hit rates per score band of every prediction probed so far: the last ``--after`` folder's
    table plus its own predictions, hit where the priors scan (what probing them found) holds them."""
    if not folders:
        return add_calibration()
    keys, scores = read_scores(folders[-1], what="--after ")
    return add_calibration(
        read_calibration(folders[-1]), calibration_counts(scores, cpu.sorted_isin(keys, found))
    )


def _held(folders: tuple[str, ...]) -> Path | None:
    """What the last ``--after`` folder held back: every ``predict --min-score`` carries forward what
    its own ``--after`` folders held and it did not probe, so the last one's is the whole backlog
    (:func:`merge_held` then drops what has been probed or scanned since)."""
    return held_path(folders[-1]) if folders else None


#: Sorted runs and held-back rows of the rounds, inside the output's temporary folder.
RUNS_DIR = ".runs"


def _empty_round() -> pd.DataFrame:
    return empty_predictions().assign(**{schema.ROUND: np.zeros(0, np.uint16)})


@dataclass
class _Round:
    """What one round of ranked predictions left (the predictions went to the shard as they came)."""

    n_predictions: int
    held: Path  # the rows held back, best first (PRED/held.parquet's format)
    n_held: int
    targets: np.ndarray | None  # sorted keys of the predictions (probed), with a scanner
    found: np.ndarray | None  # sorted keys of those that hit


def _rank_round(
    current: Any,
    model: Model,
    held: Path | None,
    store: RunStore,
    *,
    known: np.ndarray,
    scanned: dict[int, np.ndarray],
    blocklist: Any,
    combine: str,
    preset: str,
    skip_hosts: np.ndarray,
) -> bool:
    """Rank a round's predictions a host partition at a time into sorted runs in ``store``, with the
    held-back rows still wanted (:func:`merge_held`); returns the runs' order (``by_port``: there
    were held-back rows, and ``merge_held`` breaks score ties by port, then ip)."""
    held_keys = cpu.unique_sorted(read_held_keys(held)) if held is not None else np.zeros(0, np.uint64)
    by_port = held_keys.size > 0
    again = np.zeros(held_keys.size, bool)
    for part in rank_partitions(
        current, model.rules, known=known, scanned=scanned, blocklist=blocklist, combine=combine,
        preset=preset, host_rules=model.host_rules, skip_hosts=skip_hosts, by_port=by_port,
    ):  # fmt: skip
        if by_port:  # which held-back targets are predicted again (they take the new score)
            key = schema.pack_service(
                part[schema.IP].to_numpy(np.uint32), part[schema.PORT].to_numpy(np.uint16)
            )
            at = np.minimum(np.searchsorted(held_keys, key), held_keys.size - 1)
            again[at[held_keys[at] == key]] = True
        store.add(part)
        del part  # before the next partition is predicted
    if by_port:
        assert held is not None
        predicted = held_keys[again]
        del held_keys, again
        columns = list(empty_predictions().columns)
        for batch in read_held_batches(held):
            keep = held_keep(batch, predicted=predicted, known=known, scanned=scanned)
            store.add(sort_ranked(batch.loc[keep, columns].reset_index(drop=True), by_port=True))
    return by_port


def _write_round(
    store: RunStore,
    writer: PredictionWriter,
    *,
    by_port: bool,
    round_no: int,
    min_score: float,
    budget: int | None,
    scanner: Any,
    held_dir: Path,
) -> _Round:
    """Merge a round's runs best first; the predictions scoring at least ``min_score`` (the first
    ``budget`` of them) go to the shard (and, with a scanner, are probed), the others are held back
    on disk (:func:`hold_back`)."""
    floor = np.float32(min_score)
    room = None if budget is None else max(int(budget), 0)
    n_out = 0
    targets = np.empty(store.n_rows, np.uint64) if scanner is not None else None
    found = []
    held_name = f"held-{round_no}.parquet"
    with held_stream(held_dir, held_name) as later:
        for block in merge_ranked(store.readers(), by_port=by_port):
            keep = block[schema.SCORE].to_numpy() >= floor
            now = block if bool(keep.all()) else block[keep]
            if not bool(keep.all()):
                later.write(block[~keep])
            if room is not None:
                now = now.iloc[: max(room - n_out, 0)]
            if len(now) == 0:
                continue
            now = now.assign(**{schema.ROUND: np.full(len(now), round_no, np.uint16)})
            writer.append(now, empty=_empty_round())
            if targets is not None:
                ip, port = now[schema.IP].to_numpy(np.uint32), now[schema.PORT].to_numpy(np.uint16)
                key = schema.pack_service(ip, port)
                targets[n_out : n_out + key.size] = key
                found.append(key[np.asarray(to_numpy(scanner.probe(ip, port)), bool)])
            n_out += len(now)
    if targets is not None:
        targets = targets[:n_out]
        targets.sort()
    return _Round(
        n_predictions=n_out,
        held=held_dir / held_name,
        n_held=later.n_rows,
        targets=targets,
        found=None if targets is None else np.sort(np.concatenate([np.zeros(0, np.uint64), *found])),
    )


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
    """``gpsgpu predict`` of an improved model (module docstring).

    The ranked predictions never sit in memory whole: each round ranks a host partition at a time
    into sorted runs on disk (in the output's temporary folder), merges them into the shard and
    holds back the rest on disk; what later rounds must not predict again is sorted keys.
    """
    output = Path(output)
    started = time.perf_counter()
    timings = Timings()
    backend = resolve(config.backend)
    preset = str(model.params.get("preset", "gps2022"))
    with timings.step("read"):
        blocklist = blocklist_for(config.blocklist, plans=[config.plan, *(config.scanned or ())])
        # Alone, a services table is read a host partition at a time (the same partitions).
        scan, described = (open_scan if not config.found else read_scan)(
            priors,
            backend=backend,
            fmt=config.format,
            max_reject_rate=config.max_reject_rate,
            what="priors scan",
        )
        observed = [scan]
        for path in config.found:
            found, _ = read_scan([path], backend=backend, what="--found", allow_empty=True)
            observed.append(found)
        previous = _previous_targets(config.after)
    with atomic_dir(output) as tmp:
        with timings.step("predict"):
            # The rows the priors scan covered: PLAN/plan_rows.parquet (cut by its budget), else all.
            rows_file = Path(config.plan) / PLAN_ROWS_FILE if config.plan else None
            if rows_file is not None and rows_file.is_file():
                plan = read_table(rows_file).to_pandas()
            else:
                plan = improved_plan(model_dir, model, step=step, hitrate=hitrate)
            # Rows scanned besides: --scanned PLAN/ folders (a live tail of /24 rows, say).
            extra = [
                read_table(Path(d) / PLAN_ROWS_FILE).to_pandas() for d in _plan_rows_dirs(config.scanned)
            ]
            rows = pd.concat(
                [plan[[schema.NEEDED_P, schema.PREFIX, schema.LENGTH]], *extra], ignore_index=True
            )
            scanned = scanned_keys(
                rows[schema.NEEDED_P].to_numpy(),
                rows[schema.PREFIX].to_numpy(),
                rows[schema.LENGTH].to_numpy(),
            )
            # Of a services table read by partitions, only the addresses and ports are read whole.
            frames = [
                read_table(o.path, columns=[schema.IP, schema.PORT]).to_pandas()
                if isinstance(o, ParquetHostPartitions)
                else o
                for o in observed
            ]
            frames = [o.to_pandas() if hasattr(o, "to_pandas") else o for o in frames]
            calibration = _calibration(config.after, known_keys(frames[0]))
            min_score = config.min_score
            if min_score == MIN_SCORE_YIELD:
                # The last tail part's yield: what its scan (the last --found) brought that was not
                # known before it, over its probes (the last --scanned plan's rows); the predictions
                # expected to beat it, by what probing the earlier ones found.
                before = cpu.union_sorted(known_keys(model.seed, *frames[:-1]), previous)
                part = part_yield(known_keys(frames[-1]), before, int(row_probes(extra[-1]).sum()))
                min_score = release_score(calibration, part)
            min_score = float(min_score)
            known = cpu.union_sorted(known_keys(model.seed, *frames), previous)
            n_scan, n_found = len(scan), int(sum(len(f) for f in frames[1:]))
            # The observed services stay on their backend: the one predictor joins them there.
            current = observed[0] if len(observed) == 1 else backend.xdf.concat(observed, ignore_index=True)
            del scan, observed, frames, previous  # the priors go once round 1 is ranked
            scanner = None
            if config.sim is not None:
                from gpsgpu.evaluate.ablation import services_at
                from gpsgpu.pipelines.simulate import open_net
                from gpsgpu.sim.scanner import SimScanner

                internet, _ = open_net(config.sim, backend)
                scanner = SimScanner(internet)
            # The seed's hosts were scanned on every port: host rules predict nothing there.
            seed_hosts = np.unique(np.asarray(model.seed[schema.IP], np.uint32))
            first_round = 1 + len(config.after)
            budget = config.budget
            per_round: list[int] = []
            runs_dir = tmp / RUNS_DIR
            runs_dir.mkdir()
            # Predictions held back by --min-score compete again in the next round (as in the ablation).
            held = _held(config.after)
            n_held = 0
            with PredictionWriter(tmp, export=config.export) as writer:
                writer.append(_empty_round(), empty=_empty_round())
                for r in range(first_round, first_round + config.rounds):
                    # One line per round: services predicted from (advanced deep in predict_services),
                    # then what the round does after them, with the elapsed time still moving.
                    with (
                        Progress(
                            f"predict (improved): round {r}",
                            total=len(current),
                            unit="services",
                            heartbeat=True,
                        ) as bar,
                        current_progress(bar),
                        RunStore(runs_dir / f"round-{r}") as store,
                    ):
                        bar.note("predicting and ranking")
                        by_port = _rank_round(
                            current, model, held, store, known=known, scanned=scanned, blocklist=blocklist,
                            combine=config.combine, preset=preset, skip_hosts=seed_hosts,
                        )  # fmt: skip
                        current = None
                        bar.note(f"{store.n_rows:,} predictions: merging them best first")
                        done = _write_round(
                            store, writer, by_port=by_port, round_no=r, min_score=min_score, budget=budget,
                            scanner=scanner, held_dir=runs_dir,
                        )  # fmt: skip
                    if held is not None and held.parent == runs_dir:
                        held.unlink()  # the last round's held rows, merged into this round's
                    held, n_held = done.held, done.n_held
                    per_round.append(done.n_predictions)
                    if budget is not None:
                        budget -= done.n_predictions
                    if scanner is None or done.n_predictions == 0 or (budget is not None and budget <= 0):
                        break
                    assert done.targets is not None and done.found is not None
                    known = union_sorted_keys(known, done.targets)
                    done.targets = None
                    current = services_at(scanner.internet, done.found)
                    log.info(
                        "round %d: %d predictions, %d found on the simulated Internet",
                        r,
                        done.n_predictions,
                        done.found.size,
                    )
                    if len(current) == 0:
                        break
            n_predictions = writer.n_predictions
        held_file = None
        if min_score > 0 and held is not None:
            os.replace(held, tmp / HELD_FILE)
            held_file = HELD_FILE
        shutil.rmtree(runs_dir)
        calibration_file = write_calibration(calibration, tmp) if len(calibration) else None
        counts = {
            "n_priors_services": n_scan,
            "n_found_services": n_found,
            "n_rules": len(model.rules),
            "n_plan_rows": len(plan),
            "n_predictions": n_predictions,
            "n_rounds": len(per_round),
            "n_predictions_per_round": per_round,
            "n_held_back": n_held,
            "min_score": min_score,
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
                "outputs": {
                    "shards": writer.n_shards,
                    "export": EXPORT_FILE if config.export else None,
                    "held": held_file,
                    "calibration": calibration_file,
                },
            },
        )
        write_metadata(tmp / "metadata.json", metadata)
    print(
        f"gpsgpu: predict (improved): {n_scan:,} priors services x {len(model.rules):,} scored rules -> "
        f"{n_predictions:,} ranked predictions in {len(per_round)} round(s) "
        f"in {time.perf_counter() - started:.2f} s -> {output}",
        file=sys.stderr,
    )
    return metadata


def _plan_rows_dirs(folders: tuple[str, ...]) -> list[str]:
    for folder in folders:
        if not (Path(folder) / PLAN_ROWS_FILE).is_file():
            raise InputError(
                f"--scanned {folder}: no {PLAN_ROWS_FILE}; give a folder written by 'gpsgpu plan' of an "
                "improved model"
            )
    return list(folders)


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
    "check_compatible_flags",
    "cut_plan",
    "has_host_rules",
    "hosts_in_rows",
    "improve_rules",
    "improved_params",
    "improved_plan",
    "model_mode",
    "read_live",
    "run_predict_improved",
    "staged_plan",
    "write_plan_rows",
]

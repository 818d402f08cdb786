"""Compatible mode against improved mode on a simulated Internet, step by step (the ablation).

Each configuration runs the whole loop in memory against one :class:`SimScanner` (probing is
checking the simulated Internet) and becomes a coverage-vs-probes :class:`Curve`:

- **compatible**: GPS as the reference runs it (the same stages as ``gpsgpu learn/plan/sim-scan/
  predict/evaluate``): plan rows in GPS's order, then the predictions.
- **+ scores**: the same single best predictor per seed service, but rules scored
  (:mod:`gpsgpu.learn.ranked`), plan rows ranked by expected services per probe
  (:mod:`gpsgpu.plan.budget`) and predictions probed best first (:mod:`gpsgpu.predict.ranked`).
- **+ top-k**: ``top_k`` predictors per seed service, rules from two seed hosts, real hosts with
  more than 10 ports.
- **+ extended features**: the ``extended`` feature preset.
- **+ rounds**: probing in rounds: GPS's rows with at least 3 patterns (the head) are scanned in
  GPS's order in 16 parts, a row whole unless earlier parts scanned its network on two ports, and
  then only in the network's /24s found live (:func:`gpsgpu.plan.budget.head_part`); the
  predictions scoring at least 0.003 are probed; the other rows (the tail) are narrowed to the
  /24s found live so far, each valued by its share of its row's live addresses, and scanned by that
  value in 16 parts of equal probes. After each part come the predictions (new and held back) whose
  expected hit rate beats the new services per probe the part brought: the rate of a score is what
  probing the predictions so far found in its score band (:func:`gpsgpu.predict.ranked.part_yield`,
  :func:`~gpsgpu.predict.ranked.release_score`). Then the held-back predictions and two more
  rounds. The services each round finds are observations for the next round's predictions.
- **+ host rules**: what a live host of each AS runs (:func:`gpsgpu.learn.ranked.learn_host_rules`):
  every host found predicts its AS's ports (a target a service rule names too keeps the higher
  score), the plan gains the rows ``(port, /16)`` the host rules of each network's AS suggest, and
  every row's seed count is shrunk towards its AS's estimate (:func:`gpsgpu.plan.budget.rank_plan_rows`).

The last configuration's schedule runs from the CLI (``plan --stage head|tail --part K/N``,
``predict --min-score/--after/--scanned``, see :mod:`gpsgpu.pipelines.improved`) through the same
functions (:func:`gpsgpu.plan.budget.split_head`, :func:`~gpsgpu.plan.budget.live_tail`,
:func:`~gpsgpu.plan.budget.next_tail_part`, :func:`gpsgpu.predict.ranked.hold_back`, ``merge_held``);
``tests/test_improved_cli.py`` checks that both find the same services with the same probes.

An improved run's events are, in order: the seed (free), plan rows, then prediction chunks, each
costing its probes; a ground-truth service counts at the first event that finds it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu import schema
from gpsgpu.backend import to_numpy
from gpsgpu.evaluate.baselines import gps_curve
from gpsgpu.evaluate.metrics import (
    Curve,
    Truth,
    chunk_ids,
    curve_from_events,
    earliest,
    list_events,
    seed_events,
)
from gpsgpu.learn import learn_patterns
from gpsgpu.learn.ranked import (
    DEFAULT_HOST_PRIOR_HOSTS,
    DEFAULT_MAX_HOST_PORTS,
    DEFAULT_MIN_COUNT,
    DEFAULT_MIN_HOST_SCORE,
    DEFAULT_TOP_K,
    GPS_MAX_HOST_PORTS,
    learn_host_rules,
    learn_ranked_rules,
    real_hosts,
)
from gpsgpu.ops import cpu
from gpsgpu.plan import plan_priors
from gpsgpu.plan.budget import (
    DEFAULT_EARLY_SCORE,
    DEFAULT_HEAD_PARTS,
    DEFAULT_HEAD_PATTERNS,
    DEFAULT_MIN_AS_ROW_SCORE,
    DEFAULT_PATTERN_WEIGHT,
    DEFAULT_SHRINK,
    DEFAULT_TAIL_PARTS,
    TAIL_LENGTH,
    cut_budget,
    found_per_row,
    head_part,
    live_rows,
    live_tail,
    next_tail_part,
    rank_plan_rows,
    row_of,
    row_probes,
    split_head,
)
from gpsgpu.predict import predict_services
from gpsgpu.predict.ranked import (
    add_calibration,
    calibration_counts,
    hold_back,
    known_keys,
    merge_held,
    part_yield,
    rank_predictions,
    release_score,
    scanned_keys,
)
from gpsgpu.sim.internet import SimInternet
from gpsgpu.sim.scanner import SimScanner

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

#: Curve points per round of predictions, compatible mode's included (a curve is linear between
#: points, so both modes are drawn at the same resolution).
PREDICTION_CHUNKS = 1024
# With rounds (the schedule of ``gpsgpu plan --stage head|tail``, see :mod:`gpsgpu.plan.budget`):
# GPS's rows with fewer than DEFAULT_HEAD_PATTERNS patterns, and the rows GPS does not plan, are the
# tail, scanned only in the /24s found live; predictions scoring at least DEFAULT_EARLY_SCORE are
# probed before the tail.


@dataclass(frozen=True)
class Options:
    """One improved-mode configuration."""

    name: str
    top_k: int = 1
    min_count: int = 3
    max_host_ports: int = GPS_MAX_HOST_PORTS
    preset: str = "gps2022"
    rounds: int = 1
    combine: str = "noisy-or"
    head_patterns: int = DEFAULT_HEAD_PATTERNS
    early_score: float = DEFAULT_EARLY_SCORE
    pattern_weight: float = DEFAULT_PATTERN_WEIGHT
    denominator: str = "all"
    host_rules: bool = False
    as_row_score: float = DEFAULT_MIN_AS_ROW_SCORE
    shrink: float = DEFAULT_SHRINK
    min_host_score: float = DEFAULT_MIN_HOST_SCORE
    host_prior: float = DEFAULT_HOST_PRIOR_HOSTS
    tail_parts: int = DEFAULT_TAIL_PARTS
    head_parts: int = DEFAULT_HEAD_PARTS


def ablation_steps(*, top_k: int = DEFAULT_TOP_K, rounds: int = 3, preset: str = "extended") -> list[Options]:
    """The ablation's improved configurations, each adding one thing to the one before."""
    scores = Options("+ scores")
    topk = dataclasses.replace(
        scores,
        name="+ top-k",
        top_k=top_k,
        min_count=DEFAULT_MIN_COUNT,
        max_host_ports=DEFAULT_MAX_HOST_PORTS,
    )
    extended = dataclasses.replace(topk, name="+ extended features", preset=preset)
    with_rounds = dataclasses.replace(extended, name="+ rounds", rounds=rounds)
    return [
        scores,
        topk,
        extended,
        with_rounds,
        dataclasses.replace(with_rounds, name="+ host rules", host_rules=True),
    ]


@dataclass
class Run:
    """The events of one run: what each found, what each cost."""

    name: str
    found: list[np.ndarray] = field(default_factory=list)  # uint64 service keys per event
    cost: list[int] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)

    def add(self, found: np.ndarray, cost: int) -> None:
        self.found.append(np.asarray(found, np.uint64))
        self.cost.append(int(cost))

    def add_many(self, keys: np.ndarray, event: np.ndarray, costs: np.ndarray) -> None:
        """Events ``0..len(costs)-1`` of a batch: ``keys[i]`` found at ``event[i]``."""
        order = np.argsort(event, kind="stable")
        keys, event = keys[order], event[order]
        bounds = np.searchsorted(event, np.arange(costs.size + 1))
        for i, c in enumerate(costs.tolist()):
            self.add(keys[bounds[i] : bounds[i + 1]], c)

    def curve(self, truth: Truth, seed_keys: np.ndarray) -> Curve:
        n = len(self.cost)
        keys = np.concatenate(self.found) if self.found else np.zeros(0, np.uint64)
        event = np.repeat(np.arange(1, n + 1), [f.size for f in self.found])
        ev = earliest(seed_events(truth, seed_keys), list_events(truth, keys, event))
        return curve_from_events(self.name, truth, ev, np.concatenate([[0], np.asarray(self.cost, np.int64)]))


def _keys(arrays: Any) -> np.ndarray:
    return schema.pack_service(
        np.asarray(to_numpy(arrays.ip), np.uint32), np.asarray(to_numpy(arrays.port), np.uint16)
    )


def services_at(internet: SimInternet, keys: np.ndarray) -> Any:
    """The services frame of the given (real) service keys, banners rendered."""
    if keys.size == 0:
        return internet.to_frame(internet.services_of(internet.xp.zeros(0, dtype=internet.xp.uint32)))
    ips = np.unique((keys >> np.uint64(schema.SERVICE_IP_SHIFT)).astype(np.uint32))
    found = internet.services_of(internet.xp.asarray(ips))
    hit = cpu.sorted_isin(_keys(found), cpu.unique_sorted(keys))
    return internet.to_frame(found.take(internet.xp.flatnonzero(internet.xp.asarray(hit))))


def run_compatible(
    internet: SimInternet, scanner: SimScanner, seed: pd.DataFrame, truth: Truth, *, step: int, hitrate: float
) -> tuple[Curve, dict[str, Any]]:
    """GPS as the reference runs it: learn, plan, scan the plan, predict, probe (as ``gpsgpu evaluate``)."""
    learned = learn_patterns(seed, hitrate=hitrate)
    plan = plan_priors(learned.patterns, step=step, hitrate=hitrate)
    found = scanner.scan(plan[schema.NEEDED_P].to_numpy(), plan[schema.PREFIX].to_numpy(), step)
    priors = internet.to_frame(found)
    pred = predict_services(
        priors, learned.rules, plan=plan, seed=learned.seed, step=step, blocklist=scanner.blocklist
    )
    key = schema.pack_service(pred[schema.IP].to_numpy(np.uint32), pred[schema.PORT].to_numpy(np.uint16))
    order = np.lexsort((key, -pred[schema.SCORE].to_numpy(np.float64)))
    ip, port = schema.unpack_service(key[order])
    seed_keys = known_keys(seed)
    curve = gps_curve(
        truth, seed_keys, plan[schema.NEEDED_P].to_numpy(), plan[schema.PREFIX].to_numpy(), step, ip, port,
        blocklist=scanner.blocklist, name="compatible", chunks=PREDICTION_CHUNKS,
    )  # fmt: skip
    probes = int(scanner.row_probes(plan[schema.PREFIX].to_numpy(), step).sum())
    return curve, {
        "plan_rows": len(plan),
        "plan_probes": probes,
        "rules": len(learned.rules),
        "predictions": int(key.size),
    }


class _Probing:
    """What an improved run knows as it probes: targets probed, live addresses, rows scanned; each
    probe or scan adds its events to the run."""

    def __init__(
        self, run: Run, internet: SimInternet, scanner: SimScanner, known: np.ndarray, live: np.ndarray,
        scanned: dict[int, np.ndarray],
    ) -> None:  # fmt: skip
        self.run, self.internet, self.scanner = run, internet, scanner
        self.known, self.live, self.scanned = known, live, scanned
        self.calibration = add_calibration()  # hit rates of the predictions probed, per score band

    def probe(self, preds: pd.DataFrame) -> pd.DataFrame:
        """Probe the predictions in order (in PREDICTION_CHUNKS events); the services found."""
        ip, port = preds[schema.IP].to_numpy(np.uint32), preds[schema.PORT].to_numpy(np.uint16)
        real_hit = np.asarray(to_numpy(self.scanner.probe(ip, port)), bool)
        self.calibration = add_calibration(
            self.calibration, calibration_counts(preds[schema.SCORE].to_numpy(), real_hit)
        )
        targets = schema.pack_service(ip, port)
        chunk = chunk_ids(targets.size, PREDICTION_CHUNKS)
        n_chunks = int(chunk[-1]) + 1 if chunk.size else 0
        allowed = ~np.asarray(self.scanner.blocklist.contains(ip)) if ip.size else np.zeros(0, bool)
        self.run.add_many(targets[real_hit], chunk[real_hit], np.bincount(chunk[allowed], minlength=n_chunks))
        found_keys = targets[real_hit]
        self.known = cpu.union_sorted(self.known, targets)
        found_hosts = (found_keys >> np.uint64(schema.SERVICE_IP_SHIFT)).astype(np.uint32)
        self.live = cpu.union_sorted(self.live, found_hosts)
        return services_at(self.internet, found_keys)

    def scan_rows(
        self, rows: pd.DataFrame, source: np.ndarray, scanner: SimScanner | None = None
    ) -> pd.DataFrame:
        """Scan rows of one length in order, one event per source row (``source``: ascending, one per
        row, e.g. the head row a narrowed row came from), with ``scanner`` (default: the run's; the
        tail's skips known hosts); the services found."""
        scanner = scanner or self.scanner
        length = int(rows[schema.LENGTH].iloc[0]) if len(rows) else TAIL_LENGTH
        found = scanner.scan(rows[schema.NEEDED_P].to_numpy(), rows[schema.PREFIX].to_numpy(), length)
        keys = _keys(found)
        event = np.unique(source, return_inverse=True)[1] if source.size else source
        costs = np.bincount(event, weights=scanner.row_probes(rows[schema.PREFIX].to_numpy(), length))
        costs = costs.astype(np.int64)
        self.run.add_many(keys, event[row_of(rows, keys)] if keys.size else event[:0], costs)
        self.known = cpu.union_sorted(self.known, keys)
        hosts = (keys >> np.uint64(schema.SERVICE_IP_SHIFT)).astype(np.uint32)
        self.live = cpu.union_sorted(self.live, hosts)
        ports, prefixes = rows[schema.NEEDED_P].to_numpy(), rows[schema.PREFIX].to_numpy()
        for size, done in scanned_keys(ports, prefixes, rows[schema.LENGTH].to_numpy()).items():
            self.scanned[size] = cpu.union_sorted(self.scanned.get(size, np.zeros(0, np.uint64)), done)
        return self.internet.to_frame(found)


def run_improved(
    internet: SimInternet,
    scanner: SimScanner,
    seed: pd.DataFrame,
    options: Options,
    *,
    step: int,
    hitrate: float,
    seed_fraction: float,
    plan_budget: int | None = None,
    progress: Progress | None = None,
) -> Run:
    """One improved configuration, probing the simulated Internet round by round."""
    progress = progress or (lambda _: None)
    run = Run(options.name)
    real = seed[real_hosts(seed, max_host_ports=options.max_host_ports)]
    # The plan is GPS's (gps2022 patterns) whatever the rules' preset: its rows and order are GPS's.
    learned = learn_patterns(seed, hitrate=hitrate)
    rules = learn_ranked_rules(
        seed, hitrate=hitrate, preset=options.preset, top_k=options.top_k, min_count=options.min_count,
        max_host_ports=options.max_host_ports, denominator=options.denominator,
    ).rules  # fmt: skip
    host_rules = (
        learn_host_rules(seed, max_host_ports=options.max_host_ports, min_score=options.min_host_score,
                         prior_hosts=options.host_prior)
        if options.host_rules
        else None
    )  # fmt: skip
    seed_hosts = np.unique(np.asarray(seed[schema.IP], np.uint32))
    plan = rank_plan_rows(
        real, learned.patterns, step=step, hitrate=hitrate, seed_fraction=seed_fraction,
        pattern_weight=options.pattern_weight, host_rules=host_rules, min_row_score=options.as_row_score,
        shrink=options.shrink,
    )  # fmt: skip
    tiered = options.rounds > 1
    if tiered:
        # The head: GPS's rows with at least head_patterns patterns (first in the plan's order, which
        # is GPS's for them); every other row joins the narrowed tail.
        head, tail = split_head(plan, head_patterns=options.head_patterns)
    else:
        head, tail = cut_budget(plan, budget=plan_budget), plan.iloc[:0]
    run.counts.update(rules=len(rules), plan_rows=len(plan), head_rows=len(head), tail_rows=len(tail))

    known = known_keys(seed)  # never predicted again: seed, found, probed
    live = np.asarray(seed[schema.IP], np.uint32)
    state = _Probing(run, internet, scanner, known, live, {})
    # The head in parts: a row whose network earlier parts scanned on two ports only in its live /24s
    # (first), the part's other rows whole.
    head_parts = options.head_parts if tiered else 1
    observed = []
    for k in range(head_parts):
        whole, swept = head_part(head, part=k, parts=head_parts)
        narrow = live_rows(swept, state.live, length=TAIL_LENGTH)
        observed.append(state.scan_rows(narrow, narrow["row"].to_numpy(np.int64)))
        observed.append(state.scan_rows(whole, np.arange(len(whole))))
    observed = pd.concat(observed, ignore_index=True)
    # No prediction inside a head row (as ``predict --plan HEAD``): the /24s its part left out were
    # dark when it was scanned, and on the simulated Internet none lights up later.
    for size, done in scanned_keys(
        head[schema.NEEDED_P].to_numpy(), head[schema.PREFIX].to_numpy(), head[schema.LENGTH].to_numpy()
    ).items():
        state.scanned[size] = cpu.union_sorted(state.scanned.get(size, np.zeros(0, np.uint64)), done)
    progress(f"{options.name}: {len(head):,} plan rows found {len(observed):,} services")

    def ranked(frame: Any) -> pd.DataFrame:
        return rank_predictions(
            frame, rules, known=state.known, scanned=state.scanned, blocklist=scanner.blocklist,
            combine=options.combine, preset=options.preset, host_rules=host_rules, skip_hosts=seed_hosts,
        )  # fmt: skip

    pending = None  # predictions held back for later
    for r in range(1, max(options.rounds, 1) + 1):
        preds, pending = merge_held(ranked(observed), pending, known=state.known, scanned=state.scanned), None
        if tiered and r == 1 and len(tail):
            preds, pending = hold_back(preds, min_score=options.early_score)
        observed = state.probe(preds)
        progress(f"{options.name}: round {r}: {len(preds):,} predictions found {len(observed):,} services")
        if tiered and r == 1 and len(tail):
            # The tail: the remaining rows, only in /24s found live so far, by value; in parts, each
            # followed by the predictions (new and held back) expected to beat the part's yield.
            # With host rules the tail looks for hosts not found yet: the known ones are skipped, as
            # the blocklist of ``plan --stage tail`` has them skipped.
            skip_live = host_rules is not None
            narrow = live_tail(tail, state.live, length=TAIL_LENGTH, skip_live=skip_live)
            tail_scanner = scanner.skipping(state.live) if skip_live else scanner
            parts = options.tail_parts
            scanned, found = np.zeros(len(narrow), bool), np.zeros(len(narrow))
            tail_found = 0
            for k in range(parts):
                take = next_tail_part(narrow, scanned, found, part=k, parts=parts)
                if take.size == 0:
                    continue
                rows = narrow.iloc[take].reset_index(drop=True)
                known_before = state.known
                t_found = state.scan_rows(rows, chunk_ids(len(rows), PREDICTION_CHUNKS), tail_scanner)
                scanned[take], found[take] = True, found_per_row(rows, _keys(t_found))
                tail_found += len(t_found)
                observed = pd.concat([observed, t_found], ignore_index=True)
                if k < parts - 1:
                    # Predictions expected (by the hit rates probing found so far) to beat what the
                    # part just scanned brought per probe go before the next part, which will bring
                    # less; the others wait.
                    preds, pending = hold_back(
                        merge_held(ranked(observed), pending, known=state.known, scanned=state.scanned),
                        min_score=release_score(
                            state.calibration,
                            part_yield(_keys(t_found), known_before, int(row_probes(rows).sum())),
                        ),
                    )
                    observed = state.probe(preds)
            run.counts.update(tail_probes=int(row_probes(narrow).sum()), tail_found=tail_found)
            progress(f"{options.name}: tail: {len(narrow):,} live /24 rows found {tail_found:,} services")
        if len(observed) == 0 and (pending is None or len(pending) == 0):
            break
    run.counts["probes"] = int(np.sum(run.cost))
    return run


@dataclass
class Ablation:
    """Curves of compatible mode and of every improved step, and the table's rows."""

    curves: list[Curve]
    rows: list[dict[str, Any]]
    facts: dict[str, Any]


def compare_at(curve: Curve, compatible: Curve) -> dict[str, Any]:
    """A curve's services and normalized services at compatible mode's probe count, and whether it
    lies on or above compatible mode's curve at every budget up to that count."""
    budget = compatible.final_probes
    fraction, normalized = curve.at(budget)
    c_fraction, c_normalized = compatible.at(budget)
    top = budget
    points = np.unique(
        np.concatenate([curve.probes[curve.probes <= top], compatible.probes[compatible.probes <= top]])
    )
    points = points[points > 0]
    mine = np.interp(points, curve.probes, curve.found.astype(np.float64))
    theirs = np.interp(points, compatible.probes, compatible.found.astype(np.float64))
    below = theirs - mine
    return {
        "fraction_at_compatible_probes": fraction,
        "normalized_at_compatible_probes": normalized,
        "gain_pp": 100 * (fraction - c_fraction),
        "normalized_gain_pp": 100 * (normalized - c_normalized),
        "on_or_above_everywhere": bool((below <= 1e-9).all()),
        "worst_shortfall_services": float(max(below.max(initial=0.0), 0.0)),
        "final_probes": curve.final_probes,
        "final_fraction": float(curve.coverage[-1]) if curve.probes.size else 0.0,
        "final_normalized": float(curve.normalized[-1]) if curve.probes.size else 0.0,
    }


def run_ablation(
    internet: SimInternet,
    truth_arrays: Any,
    seed: pd.DataFrame,
    truth: Truth,
    *,
    seed_fraction: float,
    step: int = 16,
    hitrate: float = 0.00001,
    steps: list[Options] | None = None,
    progress: Progress | None = None,
) -> Ablation:
    """Compatible mode and each improved step on one simulated Internet (module docstring)."""
    progress = progress or (lambda _: None)
    steps = ablation_steps() if steps is None else steps
    seed_keys = known_keys(seed)
    scanner = SimScanner(internet, truth=truth_arrays)
    compatible, compat_counts = run_compatible(internet, scanner, seed, truth, step=step, hitrate=hitrate)
    progress(
        f"compatible: {compatible.final_probes:,} probes, {100 * compatible.coverage[-1]:.1f}% of services"
    )
    curves = [compatible]
    rows = [{"configuration": "compatible", **compare_at(compatible, compatible), **compat_counts}]
    for options in steps:
        run = run_improved(
            internet, SimScanner(internet, truth=truth_arrays), seed, options,
            step=step, hitrate=hitrate, seed_fraction=seed_fraction, progress=progress,
            # One round probes the predictions after the whole plan: give it GPS's plan budget.
            plan_budget=compat_counts["plan_probes"] if options.rounds <= 1 else None,
        )  # fmt: skip
        curve = run.curve(truth, seed_keys)
        curves.append(curve)
        rows.append({"configuration": options.name, **compare_at(curve, compatible), **run.counts})
        at = rows[-1]["fraction_at_compatible_probes"] * 100
        progress(f"{options.name}: {at:.1f}% at compatible mode's probes ({rows[-1]['gain_pp']:+.1f} pp)")
    facts = {
        "compatible_probes": compatible.final_probes,
        "services_in_truth": truth.n_services,
        "steps": [dataclasses.asdict(s) for s in steps],
    }
    return Ablation(curves, rows, facts)


def ablation_markdown(ablation: Ablation) -> str:
    """The ablation table (Markdown)."""
    budget = ablation.facts["compatible_probes"]
    lines = [
        f"| configuration | services found at {budget:.3g} probes | normalized | gain (pp) "
        "| normalized gain (pp) | on or above compatible at every budget | probes to the end "
        "| services found at the end |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    lines += [
        f"| {r['configuration']} | {100 * r['fraction_at_compatible_probes']:.1f}% "
        f"| {100 * r['normalized_at_compatible_probes']:.2f}% | {r['gain_pp']:+.1f} "
        f"| {r['normalized_gain_pp']:+.2f} | {'yes' if r['on_or_above_everywhere'] else 'no'} "
        f"| {r['final_probes']:.3g} | {100 * r['final_fraction']:.1f}% |"
        for r in ablation.rows
    ]
    return "\n".join(lines) + "\n"


def ablation_csv(ablation: Ablation) -> str:
    """The ablation rows as CSV."""
    import csv
    import io

    buffer = io.StringIO()
    fields = list(dict.fromkeys(k for r in ablation.rows for k in r))
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(ablation.rows)
    return buffer.getvalue()


def plot_ablation(ablation: Ablation, output: Any) -> Any:
    """Services found against probes (linear axes) of compatible mode and every improved step."""
    from pathlib import Path

    from gpsgpu.evaluate.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    budget = ablation.facts["compatible_probes"]
    for i, curve in enumerate(ablation.curves):
        keep = curve.probes > 0
        # Compatible mode dashed on top: the improved steps share its first rows.
        style = {"lw": 1.8, "color": "black", "ls": "--", "zorder": 5} if i == 0 else {"lw": 1.4}
        if i == len(ablation.curves) - 1 and i > 0:
            style = {"lw": 2.2, "color": "tab:purple"}
        ax.plot(curve.probes[keep] / 1e6, curve.coverage[keep], label=curve.name, **style)
    ax.axvline(budget / 1e6, color="grey", ls=":", lw=1)
    ax.set_xlim(0, 1.3 * budget / 1e6)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("probes (millions)")
    ax.set_ylabel("fraction of services found")
    ax.set_title("Compatible vs improved mode (dotted: compatible mode's probes)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    path = _save(fig, Path(output))
    plt.close(fig)
    return path

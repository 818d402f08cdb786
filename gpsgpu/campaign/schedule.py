"""What a campaign scans or probes next: a pure function of (model, state).

A campaign alternates two kinds of step: **rows** (``(port, network)`` pairs to scan exhaustively,
networks of any prefix length, blocklists cut) and **targets** (``ip:port`` pairs to probe). What a
step's scan found is folded into the state (:func:`observe`); :func:`next_step` then decides the next
step from the model's tables (:class:`Context`) and that state alone: no step needs the ground truth,
and the same state gives the same step.

Schedules:

- ``compatible``: GPS as the reference runs it: the priors plan (``gpsgpu plan``), then one round of
  predictions from what it found (``gpsgpu predict``), probed best first.
- ``improved``: the schedule of :mod:`gpsgpu.plan.budget` (its docstring says why): GPS's rows with
  at least three patterns (the head) in 16 parts, a row narrowed to the /24s found live once earlier
  parts scanned its network on two ports; the predictions of what the head found scoring at least
  0.003; the other rows (the tail) narrowed to live /24s (skipping known hosts when the model has host
  rules) in 16 parts of equal probes, each followed by the predictions, new and held back, expected to
  hit more often than the part found new services; then two more rounds of predictions. With
  ``rounds == 1`` it is the ranked plan (cut to ``plan_budget`` probes) and one round of predictions.

Both stop at ``budget`` probes (a step is cut to the probes left; the last CIDR of a rows step to the
addresses that fit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu import schema
from gpsgpu.blocklist import Blocklist
from gpsgpu.ops import cpu
from gpsgpu.plan.budget import (
    DEFAULT_EARLY_SCORE,
    DEFAULT_HEAD_PARTS,
    DEFAULT_HEAD_PATTERNS,
    DEFAULT_TAIL_PARTS,
    TAIL_LENGTH,
    cut_budget,
    found_per_row,
    head_part,
    live_rows,
    live_tail,
    next_tail_part,
    split_head,
)
from gpsgpu.predict import predict_services
from gpsgpu.predict.ranked import (
    add_calibration,
    calibration_counts,
    empty_predictions,
    hold_back,
    known_keys,
    merge_held,
    part_yield,
    rank_predictions,
    release_score,
    scanned_keys,
    union_sorted_keys,
)

SCHEDULES = ("compatible", "improved")
ROWS, TARGETS, DONE = "rows", "targets", "done"
#: Prediction rounds of the improved schedule (the first before the tail, two after it).
DEFAULT_ROUNDS = 3


@dataclass(frozen=True)
class Options:
    """How a campaign is scheduled (``campaign.json``)."""

    schedule: str = "improved"
    budget: int | None = None  # probes in all; None: until the schedule ends
    rounds: int = DEFAULT_ROUNDS
    plan_budget: int | None = None  # improved, rounds == 1: probes of the one plan step
    head_parts: int = DEFAULT_HEAD_PARTS
    tail_parts: int = DEFAULT_TAIL_PARTS
    head_patterns: int = DEFAULT_HEAD_PATTERNS
    early_score: float = DEFAULT_EARLY_SCORE
    combine: str = "noisy-or"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Options:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class Context:
    """What the schedule reads of the model (built once per campaign command)."""

    options: Options
    step: int  # prefix length of the plan's rows
    hitrate: float
    seed_fraction: float
    blocklist: Blocklist  # the campaign's scope: IANA ranges plus the user's files
    rules: pd.DataFrame
    seed: pd.DataFrame  # ip, port of the seed's services
    plan: pd.DataFrame  # compatible: GPS's plan; improved: rows ranked (gpsgpu.plan.budget)
    preset: str = "gps2022"
    host_rules: pd.DataFrame | None = None
    seed_hosts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))

    @property
    def improved(self) -> bool:
        return self.options.schedule == "improved"

    def head_and_tail(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return split_head(self.plan, head_patterns=self.options.head_patterns)


@dataclass
class State:
    """Everything a campaign knows after its steps so far (persisted with each step)."""

    phase: str = "start"  # where the schedule decides next
    part: int = 0
    n_steps: int = 0
    probes: int = 0  # listed by the steps issued so far
    found: int = 0  # new services the steps' scans found (in their scope)
    outside: int = 0  # records given as found that lay outside their step (counted, not used)
    known: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # never predicted again
    live: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    scanned: dict[int, np.ndarray] = field(default_factory=dict)  # rows scanned (scanned_keys)
    unranked: list[int] = field(default_factory=list)  # steps whose findings no ranking has used
    held: pd.DataFrame = field(default_factory=empty_predictions)  # predictions held back
    calibration: pd.DataFrame = field(default_factory=add_calibration)
    tail: pd.DataFrame | None = None  # the live tail, with 'scanned' and 'found' per row
    last_yield: float = 0.0  # new services per probe of the last tail part
    ingested: list[str] = field(default_factory=list)  # sha256 of the found files counted


@dataclass
class Step:
    """One step: what to scan (``rows``: exactly ``cidrs``) or probe (``targets``), or ``done``."""

    number: int
    kind: str
    phase: str
    part: int
    reason: str
    rows: pd.DataFrame | None = None  # neededP, prefix, length (+ value, score): the logical rows
    cidrs: pd.DataFrame | None = None  # port, network, length, row: exactly what to scan
    targets: pd.DataFrame | None = None  # ip, port, score: best first
    probes: int = 0
    expected_services: float = 0.0
    plan: pd.DataFrame | None = None  # compatible's plan step, as 'gpsgpu plan' writes it

    def summary(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "kind": self.kind,
            "phase": self.phase,
            "part": self.part,
            "probes": int(self.probes),
            "expected_services": round(float(self.expected_services), 1),
            "reason": self.reason,
            "pairs": int(
                len(self.cidrs)
                if self.cidrs is not None
                else len(self.targets)
                if self.targets is not None
                else 0
            ),
        }


def initial_state(ctx: Context) -> State:
    """The state before any step: the seed is known (its hosts were scanned on every port)."""
    return State(known=known_keys(ctx.seed), live=ctx.seed_hosts.copy())


# --- the results of a step ----------------------------------------------------------------------


def in_step(step: Step, ip: np.ndarray, port: np.ndarray) -> np.ndarray:
    """Which found ``(ip, port)`` lie inside what ``step`` listed (the others are counted apart)."""
    return position_in_step(step, ip, port) >= 0


def position_in_step(step: Step, ip: np.ndarray, port: np.ndarray) -> np.ndarray:
    """For each ``(ip, port)``, the row of the step's list holding it (a target, or the CIDR of its
    port holding the address; int64), -1 where the step did not list it."""
    ip, port = np.asarray(ip, np.uint32), np.asarray(port, np.uint16)
    if step.kind == TARGETS and step.targets is not None:
        t = step.targets
        listed = schema.pack_service(t[schema.IP].to_numpy(np.uint32), t[schema.PORT].to_numpy(np.uint16))
        return cpu.lookup(listed, schema.pack_service(ip, port))  # targets are distinct
    if step.kind != ROWS or step.cidrs is None or len(step.cidrs) == 0:
        return np.full(ip.size, -1, np.int64)
    c = step.cidrs
    first = c["network"].to_numpy(np.uint64)
    last = first + cidr_sizes(c).astype(np.uint64) - np.uint64(1)
    start_key = (c["port"].to_numpy(np.uint64) << np.uint64(32)) | first
    end_key = (c["port"].to_numpy(np.uint64) << np.uint64(32)) | last
    order = np.argsort(start_key, kind="stable")
    start_key, reach = start_key[order], np.maximum.accumulate(end_key[order])
    key = (port.astype(np.uint64) << np.uint64(32)) | ip.astype(np.uint64)
    at = np.searchsorted(start_key, key, side="right") - 1
    inside = (at >= 0) & (reach[np.maximum(at, 0)] >= key)
    return np.where(inside, order[np.maximum(at, 0)], -1).astype(np.int64)


def observe(ctx: Context, state: State, step: Step, found: Any) -> State:
    """The state after ``step``'s scan found ``found`` (services frame, inside the step)."""
    state = dataclasses.replace(state)
    keys = known_keys(found)
    ips = cpu.unique_sorted((keys >> np.uint64(schema.SERVICE_IP_SHIFT)).astype(np.uint32))
    known_before = state.known
    if step.kind == ROWS and step.rows is not None:
        rows = step.rows
        scanned = scanned_keys(
            rows[schema.NEEDED_P].to_numpy(), rows[schema.PREFIX].to_numpy(), rows[schema.LENGTH].to_numpy()
        )
        state.scanned = _add_scanned(state.scanned, scanned)
        if step.phase == "tail" and state.tail is not None:
            tail = state.tail.copy()
            found_there = tail["found"].to_numpy(np.float64).copy()
            found_there[rows["tail_row"].to_numpy(np.int64)] = found_per_row(
                rows.reset_index(drop=True), keys
            )
            tail["found"] = found_there
            state.tail = tail
            state.last_yield = part_yield(keys, known_before, step.probes)
    if step.kind == TARGETS and step.targets is not None:
        targets = step.targets
        t_key = schema.pack_service(
            targets[schema.IP].to_numpy(np.uint32), targets[schema.PORT].to_numpy(np.uint16)
        )
        hit = cpu.sorted_isin(t_key, keys)
        state.calibration = add_calibration(
            state.calibration, calibration_counts(targets[schema.SCORE].to_numpy(np.float64), hit)
        )
        state.known = union_sorted_keys(state.known, cpu.unique_sorted(t_key))
    new = keys[~cpu.sorted_isin(keys, known_before)] if keys.size else keys
    state.known = union_sorted_keys(state.known, keys)
    state.live = cpu.union_sorted(state.live, ips)
    state.found += int(new.size)
    state.unranked = [*state.unranked, step.number]
    return state


def _add_scanned(into: dict[int, np.ndarray], more: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    out = dict(into)
    for length, keys in more.items():
        out[length] = cpu.union_sorted(out.get(length, np.zeros(0, np.uint64)), keys)
    return out


# --- the next step --------------------------------------------------------------------------------


def next_step(ctx: Context, state: State, observed: Any) -> tuple[Step, State]:
    """The next step and the state after deciding it.

    ``observed``: the services found by the steps in ``state.unranked`` (one frame), which the next
    round of predictions predicts from.
    """
    state = dataclasses.replace(state)
    number = state.n_steps + 1
    left = None if ctx.options.budget is None else ctx.options.budget - state.probes
    observed = _Observations(observed, state)
    while True:
        if state.phase == "done" or (left is not None and left <= 0):
            why = "the schedule is complete" if state.phase == "done" else "the probe budget is spent"
            state.phase = "done"
            step = Step(number, DONE, "done", 0, why)
            break
        step = (_compatible if not ctx.improved else _improved)(ctx, state, observed, number)
        if step is not None:
            step = _cut(ctx, step, left)
            if (step.kind == ROWS and len(step.cidrs)) or (step.kind == TARGETS and len(step.targets)):
                break
    state.n_steps = number
    state.probes += int(step.probes)
    return step, state


class _Observations:
    """The services found since the last ranking: a ranking takes them once (later ones in the same
    decision get none), and the state then no longer lists their steps."""

    def __init__(self, frame: Any, state: State) -> None:
        self.frame, self.state = frame, state

    def __len__(self) -> int:
        return 0 if self.frame is None else len(self.frame)

    def take(self) -> Any:
        frame, self.frame = self.frame, None
        self.state.unranked = []
        return frame


def _compatible(ctx: Context, state: State, observed: Any, number: int) -> Step | None:
    if state.phase == "start":
        state.phase = "predict"
        return _rows_step(ctx, number, "plan", 0, ctx.plan, "GPS's priors plan (gpsgpu plan)", plan=True)
    if state.phase == "predict":
        state.phase = "done"
        plan = _scanned_plan(ctx, state)
        priors = observed.take()
        if priors is None or len(priors) == 0:
            return None
        preds = predict_services(
            priors, ctx.rules, plan=plan, seed=ctx.seed, step=ctx.step, blocklist=ctx.blocklist
        )
        key = schema.pack_service(
            preds[schema.IP].to_numpy(np.uint32), preds[schema.PORT].to_numpy(np.uint16)
        )
        score = preds[schema.SCORE].to_numpy(np.float64)
        order = np.lexsort((key, -score))
        ip, port = schema.unpack_service(key[order])
        targets = pd.DataFrame(
            {schema.IP: ip, schema.PORT: port, schema.SCORE: score[order].astype(np.float32)}
        )
        return _targets_step(
            number, "predict", 0, targets, "GPS's predictions of what the plan found (gpsgpu predict)"
        )
    raise AssertionError(f"compatible schedule has no phase {state.phase!r}")


def _scanned_plan(ctx: Context, state: State) -> pd.DataFrame:
    """GPS's plan rows the campaign's plan step scanned (a budget may have cut the plan)."""
    plan = ctx.plan
    done = state.scanned.get(ctx.step, np.zeros(0, np.uint64))
    key = (plan[schema.NEEDED_P].to_numpy(np.uint64) << np.uint64(32)) | plan[schema.PREFIX].to_numpy(
        np.uint64
    )
    return plan[cpu.sorted_isin(key, done)].reset_index(drop=True)


def _improved(ctx: Context, state: State, observed: Any, number: int) -> Step | None:
    options = ctx.options
    head, tail = ctx.head_and_tail()
    tiered = options.rounds > 1
    if state.phase == "start":
        if not tiered:
            state.phase = "round"
            state.part = 1
            plan = cut_budget(ctx.plan, budget=options.plan_budget)
            return _rows_step(
                ctx, number, "plan", 0, plan, "the plan's rows ranked by expected services per probe"
            )
        state.phase, state.part = "head", 0
    if state.phase == "head":
        k = state.part
        if k >= options.head_parts:
            # No prediction inside a head row: the /24s its part left out were dark when it was scanned.
            state.scanned = _add_scanned(
                state.scanned,
                scanned_keys(
                    head[schema.NEEDED_P].to_numpy(),
                    head[schema.PREFIX].to_numpy(),
                    head[schema.LENGTH].to_numpy(),
                ),
            )
            state.phase, state.part = "round", 1
            return None
        state.part = k + 1
        whole, swept = head_part(head, part=k, parts=options.head_parts)
        narrow = live_rows(swept, state.live, length=TAIL_LENGTH).drop(columns="row")
        rows = pd.concat([narrow, whole], ignore_index=True)
        return _rows_step(
            ctx, number, "head", k, rows,
            f"head part {k + 1}/{options.head_parts}: GPS's rows with at least {options.head_patterns} "
            f"patterns, {len(narrow):,} of them narrowed to the /24s found live",
        )  # fmt: skip
    if state.phase == "round":
        r = state.part
        if r > 1 and len(observed) == 0 and len(state.held) == 0:
            state.phase, state.part = "done", 0  # nothing new to predict from, nothing held back
            return None
        preds = merge_held(
            _ranked(ctx, state, observed), state.held, known=state.known, scanned=state.scanned
        )
        if tiered and r == 1 and len(tail):
            preds, state.held = hold_back(preds, min_score=options.early_score)
            state.phase, state.part = "tail", 0
            why = f"round 1: the predictions of what the head found scoring at least {options.early_score}"
        else:
            state.held = empty_predictions()
            state.phase, state.part = ("round", r + 1) if r < options.rounds else ("done", 0)
            why = f"round {r}: the predictions of what was found, best first"
        return _targets_step(number, "round", r, preds, why)
    if state.phase == "tail":
        k = state.part
        if state.tail is None:
            skip = ctx.host_rules is not None
            narrow = live_tail(tail, state.live, length=TAIL_LENGTH, skip_live=skip)
            state.tail = narrow.assign(scanned=False, found=0.0)
        narrow = state.tail
        if k >= options.tail_parts:
            state.phase, state.part = "round", 2
            return None
        take = next_tail_part(
            narrow, narrow["scanned"].to_numpy(bool), narrow["found"].to_numpy(np.float64), part=k,
            parts=options.tail_parts,
        )  # fmt: skip
        state.phase, state.part = ("tail-round", k) if k < options.tail_parts - 1 else ("round", 2)
        if take.size == 0:
            state.phase, state.part = "tail", k + 1
            return None
        # Taken rows count as scanned whatever their scan brings (rows left with nothing to scan too).
        was_scanned = narrow["scanned"].to_numpy(bool).copy()
        was_scanned[take] = True
        state.tail = narrow.assign(scanned=was_scanned)
        rows = narrow.iloc[take].assign(tail_row=take).reset_index(drop=True)
        skip = state.live if ctx.host_rules is not None else None
        return _rows_step(
            ctx, number, "tail", k, rows,
            f"tail part {k + 1}/{options.tail_parts}: the other rows in the /24s found live"
            + (", known hosts skipped" if skip is not None else ""),
            skip=skip,
        )  # fmt: skip
    if state.phase == "tail-round":
        k = state.part
        state.phase, state.part = "tail", k + 1
        rate = release_score(state.calibration, state.last_yield)
        merged = merge_held(
            _ranked(ctx, state, observed), state.held, known=state.known, scanned=state.scanned
        )
        preds, state.held = hold_back(merged, min_score=rate)
        return _targets_step(
            number, "tail-round", k, preds,
            f"after tail part {k + 1}: the predictions expected to hit more often than it found new services "
            f"({state.last_yield:.2e} per probe; score >= {rate:.3g})",
        )  # fmt: skip
    raise AssertionError(f"improved schedule has no phase {state.phase!r}")


def _ranked(ctx: Context, state: State, observations: _Observations) -> pd.DataFrame:
    observed = observations.take()
    if observed is None or len(observed) == 0:
        return empty_predictions()
    return rank_predictions(
        observed, ctx.rules, known=state.known, scanned=state.scanned, blocklist=ctx.blocklist,
        combine=ctx.options.combine, preset=ctx.preset, host_rules=ctx.host_rules, skip_hosts=ctx.seed_hosts,
    )  # fmt: skip


# --- building steps -------------------------------------------------------------------------------


def _rows_step(
    ctx: Context, number: int, phase: str, part: int, rows: pd.DataFrame, reason: str, *,
    plan: bool = False, skip: np.ndarray | None = None,
) -> Step:  # fmt: skip
    """A rows step: the logical rows and exactly the CIDRs to scan (scope blocklist, and ``skip``
    addresses, cut)."""
    rows = rows.reset_index(drop=True)
    if schema.LENGTH not in rows.columns:
        rows = rows.assign(**{schema.LENGTH: np.int64(ctx.step)})
    blocklist = (
        ctx.blocklist
        if skip is None or skip.size == 0
        else ctx.blocklist.union(Blocklist.from_addresses(skip))
    )
    first = rows[schema.PREFIX].to_numpy(np.int64)
    width = np.left_shift(np.int64(1), 32 - rows[schema.LENGTH].to_numpy(np.int64))
    first = first & ~(width - 1)
    row, network, length = blocklist.cut_ranges(first, first + width - 1)
    cidrs = pd.DataFrame(
        {
            "port": rows[schema.NEEDED_P].to_numpy(np.uint16)[row],
            "network": network,
            "length": length,
            "row": row,
        }
    )
    # Rows wholly blocklisted (or all known hosts) have nothing to scan: drop them.
    rows = rows.assign(**{schema.LENGTH: rows[schema.LENGTH].to_numpy(np.int64)})
    keep = np.unique(row)
    if keep.size < len(rows):
        renumber = np.full(len(rows), -1, np.int64)
        renumber[keep] = np.arange(keep.size)
        rows = rows.iloc[keep].reset_index(drop=True)
        cidrs["row"] = renumber[cidrs["row"].to_numpy()]
    probes = int(cidr_sizes(cidrs).sum())
    expected = _expected_rows(ctx, rows, cidrs)
    return Step(
        number, ROWS, phase, part, reason, rows=rows, cidrs=cidrs, probes=probes, expected_services=expected,
        plan=rows if plan else None,
    )  # fmt: skip


def cidr_sizes(cidrs: pd.DataFrame) -> np.ndarray:
    """Addresses of each CIDR of a rows step (int64)."""
    return np.left_shift(np.int64(1), 32 - cidrs["length"].to_numpy(np.int64))


def _expected_rows(ctx: Context, rows: pd.DataFrame, cidrs: pd.DataFrame) -> float:
    """Expected services of the rows: their score (services per probe) times the probes they keep;
    rows without one (GPS's plan) are valued as the improved plan values them (seed services per row
    over the seed fraction, plus half a service per pattern)."""
    probes = np.bincount(cidrs["row"].to_numpy(np.int64), weights=cidr_sizes(cidrs), minlength=len(rows))
    if schema.SCORE in rows.columns:
        return float((rows[schema.SCORE].to_numpy(np.float64) * probes).sum())
    seed = ctx.seed
    key = schema.pack_service(
        np.asarray(seed[schema.IP], np.uint32), np.asarray(seed[schema.PORT], np.uint16)
    )
    ip, port = schema.unpack_service(cpu.unique_sorted(key))
    lengths = rows[schema.LENGTH].to_numpy(np.int64)
    total = 0.0
    for length in np.unique(lengths).tolist():
        sel = lengths == length
        seen, n = np.unique(
            (port.astype(np.uint64) << np.uint64(32)) | schema.prefix_of(ip, length).astype(np.uint64),
            return_counts=True,
        )
        r_key = (rows[schema.NEEDED_P].to_numpy(np.uint64)[sel] << np.uint64(32)) | schema.prefix_of(
            rows[schema.PREFIX].to_numpy(np.uint32)[sel], length
        ).astype(np.uint64)
        at = cpu.lookup(seen, r_key)
        n_seed = np.where(at >= 0, n[np.maximum(at, 0)], 0).astype(np.float64)
        c = rows[schema.N_PATTERNS].to_numpy(np.float64)[sel] if schema.N_PATTERNS in rows.columns else 0.0
        share = probes[sel] / float(1 << (32 - length))
        total += float(((n_seed + 0.5 * c) / ctx.seed_fraction * share).sum())
    return total


def _targets_step(number: int, phase: str, part: int, preds: pd.DataFrame, reason: str) -> Step:
    targets = pd.DataFrame(
        {
            schema.IP: preds[schema.IP].to_numpy(np.uint32),
            schema.PORT: preds[schema.PORT].to_numpy(np.uint16),
            schema.SCORE: preds[schema.SCORE].to_numpy(np.float32),
        }
    )
    return Step(
        number, TARGETS, phase, part, reason, targets=targets, probes=len(targets),
        expected_services=float(targets[schema.SCORE].to_numpy(np.float64).sum()),
    )  # fmt: skip


def _cut(ctx: Context, step: Step, left: int | None) -> Step:
    """The step within ``left`` probes: rows in order, the last CIDR cut to the addresses that fit;
    targets in order."""
    if left is None or step.probes <= left:
        return step
    if step.kind == TARGETS:
        assert step.targets is not None
        targets = step.targets.iloc[:left].reset_index(drop=True)
        reason = f"{step.reason}; cut to the {left:,} probes left of the budget"
        return dataclasses.replace(
            step, targets=targets, probes=len(targets), reason=reason,
            expected_services=float(targets[schema.SCORE].to_numpy(np.float64).sum()),
        )  # fmt: skip
    assert step.cidrs is not None and step.rows is not None
    cidrs = step.cidrs
    sizes = cidr_sizes(cidrs)
    spent = np.cumsum(sizes)
    whole = int(np.searchsorted(spent, left, side="right"))
    rest = left - (int(spent[whole - 1]) if whole else 0)
    parts = [cidrs.iloc[:whole]]
    if rest > 0 and whole < len(cidrs):
        last = cidrs.iloc[whole]
        first = int(last["network"])
        _, network, length = Blocklist.empty().cut_ranges(np.array([first]), np.array([first + rest - 1]))
        parts.append(
            pd.DataFrame(
                {"port": np.full(network.size, last["port"], np.uint16), "network": network, "length": length,
                 "row": np.full(network.size, int(last["row"]), np.int64)}
            )
        )  # fmt: skip
    cut = pd.concat(parts, ignore_index=True)
    kept_rows = np.unique(cut["row"].to_numpy(np.int64))
    rows = step.rows.iloc[kept_rows].reset_index(drop=True)
    renumber = np.full(len(step.rows), -1, np.int64)
    renumber[kept_rows] = np.arange(kept_rows.size)
    cut["row"] = renumber[cut["row"].to_numpy(np.int64)]
    reason = f"{step.reason}; cut to the {left:,} probes left of the budget"
    return dataclasses.replace(
        step, rows=rows, cidrs=cut, probes=int(cidr_sizes(cut).sum()), reason=reason,
        expected_services=_expected_rows(ctx, rows, cut), plan=rows if step.plan is not None else None,
    )  # fmt: skip


__all__ = [
    "DONE",
    "ROWS",
    "SCHEDULES",
    "TARGETS",
    "Context",
    "Options",
    "State",
    "Step",
    "cidr_sizes",
    "in_step",
    "initial_state",
    "next_step",
    "observe",
    "position_in_step",
]

"""Compatible mode against improved mode on a simulated Internet, step by step (the ablation).

Every configuration is a campaign (:mod:`gpsgpu.campaign`) run to its end against the simulated
Internet (``gpsgpu campaign run --sim``): a model learned with the configuration's knobs, the
campaign started with its schedule, each step's files scanned as a user's scanner would scan them.
Its steps, cut into pieces in scan order (:func:`gpsgpu.pipelines.campaign.campaign_events`), make a
coverage-vs-probes :class:`Curve`:

- **compatible**: GPS as the reference runs it: a compatible model, the compatible schedule (GPS's
  plan, then its predictions, best first).
- **+ scores**: the same single best predictor per seed service, but rules scored
  (:mod:`gpsgpu.learn.ranked`), plan rows ranked by expected services per probe
  (:mod:`gpsgpu.plan.budget`) within GPS's plan probes, and one round of predictions best first.
- **+ top-k**: ``top_k`` predictors per seed service, rules from two seed hosts, real hosts with
  more than 10 ports.
- **+ extended features**: the ``extended`` feature preset.
- **+ rounds**: the improved schedule without host rules (:mod:`gpsgpu.campaign.schedule`: head
  parts narrowed to live /24s, round 1, the live tail in parts each followed by the predictions
  expected to beat its yield, two more rounds).
- **+ host rules**: what a live host of each AS runs (:func:`gpsgpu.learn.ranked.learn_host_rules`):
  the improved schedule of ``gpsgpu learn --mode improved`` with its defaults, the campaign a user
  runs (``gpsgpu campaign start MODEL/ --schedule improved``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpsgpu.evaluate.metrics import Curve, Truth, curve_from_events, earliest, list_events, seed_events
from gpsgpu.learn.ranked import DEFAULT_MAX_HOST_PORTS, DEFAULT_MIN_COUNT, DEFAULT_TOP_K, GPS_MAX_HOST_PORTS

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

#: Pieces each campaign step is cut into for the curves (a curve is linear between points): GPS's
#: plan step in pieces of about one /16 row on the simulated Internets, as fine as its rows.
STEP_PIECES = 1024


@dataclass(frozen=True)
class Options:
    """One configuration: the model's knobs (``gpsgpu learn``) and the campaign's schedule."""

    name: str
    mode: str = "improved"
    top_k: int = 1
    min_count: int = 3
    max_host_ports: int = GPS_MAX_HOST_PORTS
    preset: str = "gps2022"
    host_rules: bool = False
    schedule: str = "improved"
    rounds: int = 1


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


COMPATIBLE = Options("compatible", mode="compatible", schedule="compatible")


@dataclass
class Run:
    """The events of one run: what each found, what each cost."""

    name: str
    found: list[np.ndarray] = field(default_factory=list)  # uint64 service keys per event
    cost: list[int] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)

    def curve(self, truth: Truth, seed_keys: np.ndarray) -> Curve:
        n = len(self.cost)
        keys = np.concatenate(self.found) if self.found else np.zeros(0, np.uint64)
        event = np.repeat(np.arange(1, n + 1), [f.size for f in self.found])
        ev = earliest(seed_events(truth, seed_keys), list_events(truth, keys, event))
        return curve_from_events(self.name, truth, ev, np.concatenate([[0], np.asarray(self.cost, np.int64)]))


def run_configuration(
    options: Options,
    net: Path,
    workdir: Path,
    *,
    truth_arrays: Any,
    seed_fraction: float,
    plan_budget: int | None = None,
    budget: int | None = None,
) -> Run:
    """Learn the configuration's model and run its campaign to the end on the simulated Internet."""
    from gpsgpu.campaign.schedule import Options as ScheduleOptions
    from gpsgpu.config import LearnConfig
    from gpsgpu.pipelines.campaign import run_sim, run_start
    from gpsgpu.pipelines.learn import run_learn

    model, camp = workdir / "models" / _slug(options), workdir / "campaigns" / _slug(options)
    learn = LearnConfig(backend="cpu") if options.mode == "compatible" else LearnConfig(
        backend="cpu", mode="improved", top_k=options.top_k, min_count=options.min_count,
        max_host_ports=options.max_host_ports, preset=options.preset, host_rules=options.host_rules,
        seed_fraction=seed_fraction,
    )  # fmt: skip
    run_learn([str(net / "seed.parquet")], model, learn)
    schedule = ScheduleOptions(
        schedule=options.schedule, budget=budget, rounds=options.rounds,
        plan_budget=plan_budget if options.rounds <= 1 else None,
    )  # fmt: skip
    run_start(model, camp, options=schedule, seed_fraction=seed_fraction, echo=False)
    run_sim(camp, net, truth=truth_arrays, echo=False)
    return run_of(options, workdir)


def _slug(options: Options) -> str:
    return options.name.strip("+ ").replace(" ", "-")


def run_of(options: Options, workdir: Path) -> Run:
    """A configuration's run, read back from its campaign in ``workdir`` (its steps in pieces)."""
    from gpsgpu.pipelines.campaign import campaign_events, status_rows

    camp = workdir / "campaigns" / _slug(options)
    found, cost = campaign_events(camp, chunks=STEP_PIECES)
    _, rows = status_rows(camp)
    run = Run(options.name, found, cost)
    run.counts = {
        "steps": len(rows),
        "plan_probes": sum(int(r["probes"]) for r in rows if r["phase"] == "plan"),
        "probes": int(sum(cost)),
        "found": int(rows[-1]["total_found"]) if rows else 0,
    }
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
    net: Path,
    workdir: Path,
    truth_arrays: Any,
    seed_keys: np.ndarray,
    truth: Truth,
    *,
    seed_fraction: float,
    steps: list[Options] | None = None,
    progress: Progress | None = None,
) -> Ablation:
    """Compatible mode and each improved step on one simulated Internet (module docstring); the
    models and campaigns stay in ``workdir``."""
    progress = progress or (lambda _: None)
    steps = ablation_steps() if steps is None else steps
    compat = run_configuration(
        COMPATIBLE, net, workdir, truth_arrays=truth_arrays, seed_fraction=seed_fraction
    )
    progress(f"compatible: {compat.counts['probes']:,} probes")
    for options in steps:
        run = run_configuration(
            options, net, workdir, truth_arrays=truth_arrays, seed_fraction=seed_fraction,
            # One round probes the predictions after the plan: give it GPS's plan probes.
            plan_budget=compat.counts["plan_probes"],
        )  # fmt: skip
        progress(f"{options.name}: {run.counts['probes']:,} probes")
    return compare_campaigns(workdir, steps, truth, seed_keys, progress=progress)


def compare_campaigns(
    workdir: Path,
    steps: list[Options],
    truth: Truth,
    seed_keys: np.ndarray,
    *,
    progress: Progress | None = None,
) -> Ablation:
    """The ablation's curves and table from the campaigns in ``workdir`` (run by :func:`run_ablation`)."""
    progress = progress or (lambda _: None)
    compat_run = run_of(COMPATIBLE, workdir)
    compatible = compat_run.curve(truth, seed_keys)
    curves = [compatible]
    rows = [{"configuration": "compatible", **compare_at(compatible, compatible), **compat_run.counts}]
    for options in steps:
        run = run_of(options, workdir)
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

"""``gpsgpu demo``: the whole GPS loop on a small simulated Internet, with the results table and plots.

Steps (each reported on stderr with its time): simulate an Internet and its seed scan, learn a
compatible and an improved model, run a compatible campaign (GPS's plan, scanned, then its
predictions, probed: ``gpsgpu campaign run --sim``), run an improved campaign within the same
probes, and evaluate both against the ground truth with the baselines. Everything lands in one folder
(``./gpsgpu-demo/`` by default); the table is printed on stdout.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpsgpu.backend import resolve
from gpsgpu.config import DemoConfig, LearnConfig, SimulateConfig
from gpsgpu.evaluate.metrics import make_truth
from gpsgpu.io.parquet import read_table
from gpsgpu.pipelines.evaluate import evaluate_run, summary_markdown, write_evaluation
from gpsgpu.pipelines.simulate import read_plan_rows, seed_keys_of, simulate_to

STEPS = ("simulate", "learn", "compatible campaign", "improved campaign", "evaluate")


class _Progress:
    """One line per step on stderr: ``[3/7] plan ... 0.4 s``, with the step's own details."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.step_start = self.start
        self.index = 0

    def begin(self, name: str) -> None:
        self.index += 1
        self.step_start = time.perf_counter()
        print(f"gpsgpu: demo: [{self.index}/{len(STEPS)}] {name} ...", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        print(f"gpsgpu: demo:       {message}", file=sys.stderr, flush=True)

    def end(self, message: str = "") -> None:
        took = time.perf_counter() - self.step_start
        detail = f": {message}" if message else ""
        print(
            f"gpsgpu: demo: [{self.index}/{len(STEPS)}] done in {took:.1f} s{detail}",
            file=sys.stderr,
            flush=True,
        )

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def run_demo(
    output: str | os.PathLike[str], *, backend: str = "auto", config: DemoConfig | None = None
) -> dict[str, Any]:
    """Simulate, learn, run a compatible and an improved campaign, evaluate; print the table; return
    the facts."""
    config = config or DemoConfig(backend=backend)
    chosen = resolve(config.backend if config.backend != "auto" else backend)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    progress = _Progress()

    progress.begin("simulate")
    sim_config = SimulateConfig(
        hosts=config.hosts,
        seed_fraction=config.seed_fraction,
        seed=config.seed,
        backend=chosen.value,
        truth="never",
    )
    _, internet, truth_arrays = simulate_to(out / "net", sim_config, progress=progress.note)
    progress.end(f"{internet.n_addresses:,} addresses, {len(truth_arrays):,} services")

    progress.begin("learn")
    from gpsgpu.campaign.schedule import Options
    from gpsgpu.evaluate.ablation import Run
    from gpsgpu.evaluate.metrics import summarize
    from gpsgpu.pipelines.campaign import campaign_events, run_sim, run_start, status_rows
    from gpsgpu.pipelines.learn import run_learn

    seed = [str(out / "net" / "seed.parquet")]
    run_learn(seed, out / "model", LearnConfig(backend=chosen.value))
    improved = LearnConfig(backend=chosen.value, mode="improved", seed_fraction=config.seed_fraction)
    run_learn(seed, out / "model-improved", improved)
    progress.end()

    progress.begin("compatible campaign")
    camp = out / "campaign"
    run_start(out / "model", camp, options=Options(schedule="compatible"), echo=False)
    run_sim(camp, out / "net", truth=truth_arrays, echo=False)
    _, steps = status_rows(camp)
    budget = int(steps[-1]["total_probes"])
    progress.end(
        f"{len(steps) - 1} steps (plan, predictions): {budget:,} probes found {steps[-1]['total_found']:,} "
        f"services -> {camp}"
    )

    progress.begin("improved campaign")
    camp_improved = out / "campaign-improved"
    run_start(
        out / "model-improved", camp_improved, options=Options(schedule="improved", budget=budget), echo=False
    )
    run_sim(camp_improved, out / "net", truth=truth_arrays, echo=False)
    _, steps_improved = status_rows(camp_improved)
    progress.end(
        f"{len(steps_improved) - 1} steps within the same {budget:,} probes found "
        f"{steps_improved[-1]['total_found']:,} services -> {camp_improved}"
    )

    progress.begin("evaluate")
    truth = make_truth(truth_arrays.ip, truth_arrays.port, internet.n_addresses)
    ports, networks, step = read_plan_rows(camp / "steps" / "001")
    targets = (
        read_table(camp / "steps" / "002" / "targets.parquet")
        if (camp / "steps" / "002" / "targets.parquet").is_file()
        else None
    )
    pred_ip = np.asarray(targets["ip"], np.uint32) if targets is not None else np.zeros(0, np.uint32)
    pred_port = np.asarray(targets["port"], np.uint16) if targets is not None else np.zeros(0, np.uint16)
    seed_keys = seed_keys_of(out / "net")
    evaluation = evaluate_run(
        internet, truth, seed_keys, (ports, networks, step), (pred_ip, pred_port),
        seed_fraction=config.seed_fraction,
        baselines=("port-order", "xgboost") if config.xgboost else ("port-order",),
        xgb_ports=config.xgb_ports, xgb_sample=config.xgb_sample, progress=progress.note,
    )  # fmt: skip
    # The improved campaign beside GPS: its curve on the plots, its row in the table.
    found, cost = campaign_events(camp_improved)
    curve = Run("improved campaign", found, cost).curve(truth, seed_keys)
    evaluation.curves.insert(1, curve)
    evaluation.summaries.insert(1, summarize(curve, truth, method="improved campaign"))
    evaluation.facts["improved_fraction"] = float(curve.coverage[-1]) if curve.probes.size else 0.0
    evaluation.facts["improved_probes"] = int(curve.final_probes)
    eval_dir = out / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    files = write_evaluation(evaluation, eval_dir)
    progress.end(f"results in {eval_dir}")

    sys.stdout.write(summary_markdown(evaluation))
    sys.stdout.flush()
    plot_keys = ("plot_coverage", "plot_normalized", "plot_xgboost")
    plots = [str(eval_dir / files[k]) for k in plot_keys if k in files]
    print(
        f"gpsgpu: demo: finished in {progress.elapsed:.1f} s; table {eval_dir / files['table']}"
        + (f", plots {', '.join(plots)}" if plots else ""),
        file=sys.stderr,
    )
    return {**evaluation.facts, "elapsed_s": progress.elapsed, "output": str(out)}

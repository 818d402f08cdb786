"""``gpsgpu demo``: the whole GPS loop on a small simulated Internet, with the results table and plots.

Steps (each reported on stderr with its time): simulate an Internet and its seed scan, learn
(phase 1a), plan the priors scan (phase 1b), scan the plan on the simulated Internet, predict
(phase 2), probe the predictions, and evaluate against the ground truth with the baselines.
Everything lands in one folder (``./gpsgpu-demo/`` by default); the table is printed on stdout.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpsgpu.backend import resolve
from gpsgpu.config import DemoConfig, LearnConfig, PlanConfig, PredictConfig, SimulateConfig
from gpsgpu.evaluate.metrics import make_truth
from gpsgpu.io.parquet import write_services
from gpsgpu.pipelines.evaluate import evaluate_run, read_predictions, summary_markdown, write_evaluation
from gpsgpu.pipelines.simulate import read_plan_rows, seed_keys_of, simulate_to
from gpsgpu.sim.scanner import SimScanner

STEPS = ("simulate", "learn", "plan", "scan", "predict", "probe", "evaluate")


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
    """Simulate, learn, plan, scan, predict, probe and evaluate; print the table; return the facts."""
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
    from gpsgpu.pipelines.learn import run_learn
    from gpsgpu.pipelines.plan import run_plan
    from gpsgpu.pipelines.predict import run_predict

    run_learn([str(out / "net" / "seed.parquet")], out / "model", LearnConfig(backend=chosen.value))
    progress.end()

    progress.begin("plan")
    run_plan(out / "model", out / "plan", PlanConfig())
    ports, networks, step = read_plan_rows(out / "plan")
    progress.end(f"{ports.size:,} (port, /{step}) rows")

    progress.begin("scan")
    scanner = SimScanner(internet, truth=truth_arrays)
    found = scanner.scan(ports, networks, step)
    write_services(internet.to_frame(found), out / "priors.parquet")
    phase1_probes = scanner.n_probes
    progress.end(f"{phase1_probes:,} probes found {len(found):,} services")

    progress.begin("predict")
    run_predict(
        out / "model", [str(out / "priors.parquet")], out / "pred",
        PredictConfig(plan=str(out / "plan"), backend=chosen.value),
    )  # fmt: skip
    pred_ip, pred_port = read_predictions(out / "pred")
    progress.end(f"{pred_ip.size:,} predicted services")

    progress.begin("probe")
    real = np.asarray(scanner.probe(pred_ip, pred_port))
    if not isinstance(real, np.ndarray) or real.dtype != bool:
        from gpsgpu.backend import to_numpy

        real = np.asarray(to_numpy(real), dtype=bool)
    progress.end(f"{scanner.n_probes - phase1_probes:,} probes, {int(real.sum()):,} real services")

    progress.begin("evaluate")
    truth = make_truth(truth_arrays.ip, truth_arrays.port, internet.n_addresses)
    evaluation = evaluate_run(
        internet, truth, seed_keys_of(out / "net"), (ports, networks, step), (pred_ip, pred_port),
        seed_fraction=config.seed_fraction,
        baselines=("port-order", "xgboost") if config.xgboost else ("port-order",),
        xgb_ports=config.xgb_ports, xgb_sample=config.xgb_sample, progress=progress.note,
    )  # fmt: skip
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

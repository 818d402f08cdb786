"""``gpsgpu evaluate``: a GPS run (plan + predictions) against a simulated Internet's ground truth.

Writes ``EVAL/``: ``summary.md`` (the table, also printed on stdout), ``summary.csv``,
``curves.csv`` (coverage-vs-probes of every method), ``results.json``, PNG plots and
``metadata.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpsgpu import schema
from gpsgpu.backend import resolve
from gpsgpu.config import EvaluateConfig, as_dict
from gpsgpu.errors import InputError, UsageError
from gpsgpu.evaluate import xgb
from gpsgpu.evaluate.baselines import exhaustive_curve, gps_curve, port_order_curve, restrict_truth
from gpsgpu.evaluate.metrics import Curve, Summary, Truth, dominates, make_truth, summarize
from gpsgpu.evaluate.plots import plot_curves, plot_ports_comparison
from gpsgpu.io.atomic import atomic_dir
from gpsgpu.io.metadata import Timings, build_metadata, read_metadata, write_metadata
from gpsgpu.io.parquet import read_table
from gpsgpu.pipelines.simulate import open_net, read_plan_rows, seed_keys_of, truth_of
from gpsgpu.sim.internet import SimInternet
from gpsgpu.sim.scanner import SimScanner

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def read_predictions(pred: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(ip, port)`` of a ``PRED/`` folder in probing order: round (improved mode), score descending,
    then ``(ip, port)``."""
    parts = Path(pred) / "parts"
    if not parts.is_dir():
        raise InputError(f"{pred}: no parts/ folder; is this a folder written by 'gpsgpu predict'?")
    files = sorted(parts.glob("*.parquet"))
    if not files:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint16)
    tables = [read_table(f) for f in files]
    for f, t in zip(files, tables, strict=True):
        missing = {schema.IP, schema.PORT, schema.SCORE} - set(t.column_names)
        if missing:
            raise InputError(f"{f}: not a predictions shard (no column {', '.join(sorted(missing))})")
    ip = np.concatenate([np.asarray(t[schema.IP]).astype(np.uint32) for t in tables])
    port = np.concatenate([np.asarray(t[schema.PORT]).astype(np.uint16) for t in tables])
    score = np.concatenate([np.asarray(t[schema.SCORE]).astype(np.float64) for t in tables])
    # Improved mode's rounds are probed one after the other: round first, then score.
    rounds = np.concatenate(
        [
            np.asarray(t[schema.ROUND]) if schema.ROUND in t.column_names else np.zeros(t.num_rows)
            for t in tables
        ]
    ).astype(np.int64)
    key = schema.pack_service(ip, port)
    order = np.lexsort((key, -score, rounds))
    key = key[order]
    first = np.r_[True, key[1:] != key[:-1]] if key.size else np.zeros(0, bool)
    ip, port = schema.unpack_service(key[first])
    return ip, port


def plan_of(pred: str | os.PathLike[str], given: str | None) -> str:
    """The plan folder: ``--plan``, else the one ``gpsgpu predict --plan`` recorded."""
    meta_path = Path(pred) / "metadata.json"
    if not meta_path.is_file():
        raise InputError(
            f"{pred}: not a predictions folder (no metadata.json); make one with 'gpsgpu predict'"
        )
    if given:
        return given
    try:
        recorded = read_metadata(meta_path).get("inputs", {}).get("plan")
    except (OSError, ValueError):
        recorded = None
    if not recorded:
        raise UsageError("give the plan the predictions came from with --plan PLAN/")
    return str(recorded)


@dataclass
class Evaluation:
    """Everything ``gpsgpu evaluate`` computes."""

    truth: Truth
    curves: list[Curve]
    summaries: list[Summary]
    facts: dict[str, Any]
    xgb_rows: list[dict[str, Any]] = field(default_factory=list)
    xgb_ports: list[int] = field(default_factory=list)
    gps_on_xgb_ports: list[tuple[float, float]] = field(default_factory=list)
    port_order_xgb: Curve | None = None


def evaluate_run(
    internet: SimInternet,
    truth: Truth,
    seed_keys: np.ndarray,
    plan_rows: tuple[np.ndarray, np.ndarray, int],
    predictions: tuple[np.ndarray, np.ndarray],
    *,
    seed_fraction: float,
    baselines: tuple[str, ...] = ("port-order", "xgboost"),
    xgb_ports: int = 10,
    xgb_sample: int = 400_000,
    progress: Progress | None = None,
) -> Evaluation:
    """Curves, summaries and the paper-shape facts of a GPS run and the requested baselines."""
    progress = progress or (lambda _: None)
    blocklist = SimScanner(internet).blocklist
    ports, networks, step = plan_rows
    pred_ip, pred_port = predictions
    gps = gps_curve(truth, seed_keys, ports, networks, step, pred_ip, pred_port, blocklist=blocklist)
    exhaustive = exhaustive_curve(truth)
    curves = [gps]
    summaries = [summarize(gps, truth)]
    n_rows = int(ports.size)
    # GPS after phase 1 alone (the plan's last row).
    summaries.append(summarize(gps, truth, at=n_rows, method="GPS phase 1 (priors scan only)"))
    facts: dict[str, Any] = {
        "services_in_truth": truth.n_services,
        "ports_in_truth": truth.n_ports,
        "pseudo_services_excluded": truth.n_pseudo_excluded,
        "addresses": truth.n_addresses,
        "exhaustive_probes": truth.exhaustive_probes,
        "plan_rows": n_rows,
        "predictions": int(pred_ip.size),
        "gps_probes": gps.final_probes,
        "gps_phase1_probes": int(gps.probes[n_rows]) if gps.probes.size > n_rows else 0,
        "gps_fraction": float(gps.coverage[-1]),
        "gps_normalized": float(gps.normalized[-1]),
        "gps_saving_vs_exhaustive": truth.exhaustive_probes / max(1, gps.final_probes),
        "gps_precision_gain_vs_exhaustive": summaries[0].precision_gain_vs_exhaustive,
    }
    if "port-order" in baselines:
        order = port_order_curve(truth, seed_keys)
        curves.append(order)
        same_budget_fraction, same_budget_norm = order.at(gps.final_probes)
        needed = order.probes_to_reach(float(gps.coverage[-1]))
        ok, worst = dominates(gps, order)
        facts.update(
            {
                "port_order_fraction_at_gps_budget": same_budget_fraction,
                "port_order_normalized_at_gps_budget": same_budget_norm,
                "port_order_probes_to_gps_fraction": needed,
                "gps_saving_vs_port_order": (needed / gps.final_probes) if needed else None,
                "gps_beats_port_order_at_every_budget": ok,
                "gps_over_port_order_min_ratio": worst,
            }
        )
        i = int(np.searchsorted(order.probes, gps.final_probes, side="right")) - 1
        summaries.append(summarize(order, truth, at=max(i, 0), method="optimal port order (GPS's budget)"))
        if needed is not None:
            j = int(np.searchsorted(order.probes, needed, side="left"))
            summaries.append(
                summarize(
                    order,
                    truth,
                    at=min(j, order.probes.size - 1),
                    method="optimal port order (GPS's coverage)",
                )
            )
    curves.append(exhaustive)
    summaries.append(summarize(exhaustive, truth))
    evaluation = Evaluation(truth, curves, summaries, facts)
    if "xgboost" in baselines:
        if not xgb.available():
            log.warning("the xgboost package is not installed: skipping the XGBoost scanner baseline")
        else:
            progress("XGBoost scanner baseline")
            _xgboost_baseline(evaluation, internet, seed_keys, plan_rows, predictions, blocklist,
                              seed_fraction=seed_fraction, n_ports=xgb_ports, sample=xgb_sample)  # fmt: skip
    return evaluation


def _xgboost_baseline(
    evaluation: Evaluation,
    internet: SimInternet,
    seed_keys: np.ndarray,
    plan_rows: tuple[np.ndarray, np.ndarray, int],
    predictions: tuple[np.ndarray, np.ndarray],
    blocklist: Any,
    *,
    seed_fraction: float,
    n_ports: int,
    sample: int,
) -> None:
    truth = evaluation.truth
    seed_ports = (np.unique(seed_keys) & np.uint64(schema.PORT_MASK)).astype(np.int64)
    counts = np.bincount(seed_ports, minlength=65536)
    top = [int(p) for p in np.lexsort((np.arange(65536), -counts))[:n_ports] if counts[p] > 0]
    if not top:
        return
    sub = restrict_truth(truth, np.asarray(top))
    ports, networks, step = plan_rows
    in_rows = np.isin(ports.astype(np.int64), top)
    pred_ip, pred_port = predictions
    in_pred = np.isin(pred_port.astype(np.int64), top)
    gps_sub = gps_curve(
        sub, seed_keys, ports[in_rows], networks[in_rows], step, pred_ip[in_pred], pred_port[in_pred],
        blocklist=blocklist, name="GPS",
    )  # fmt: skip
    result = xgb.xgboost_scanner(
        internet, truth, seed_fraction=seed_fraction, ports=top, sample_addresses=sample
    )
    evaluation.xgb_ports = top
    evaluation.xgb_rows = result.as_rows()
    keep = gps_sub.probes > 0
    evaluation.gps_on_xgb_ports = list(
        zip(gps_sub.probes[keep].tolist(), gps_sub.coverage[keep].tolist(), strict=True)
    )
    evaluation.port_order_xgb = port_order_curve(sub, seed_keys)
    gps_end = summarize(gps_sub, sub, method=f"GPS on the XGBoost ports ({len(top)})")
    # On these rows "exhaustive" means every address on these ports only.
    k_exhaustive = sub.n_addresses * len(top)
    gps_end = dataclasses.replace(
        gps_end,
        saving_vs_exhaustive=k_exhaustive / max(1, gps_end.probes),
        precision_gain_vs_exhaustive=float("nan"),
    )
    evaluation.summaries.append(gps_end)
    # The XGBoost point closest to GPS's budget on these ports, and the bandwidth it needs for GPS's coverage.
    best = None
    for row in evaluation.xgb_rows:
        if row["fraction_of_services"] >= gps_end.fraction and (
            best is None or row["probes"] < best["probes"]
        ):
            best = row
    evaluation.facts.update(
        {
            "xgb_ports": top,
            "xgb_sample_addresses": result.sample_addresses,
            "gps_on_xgb_ports_probes": gps_end.probes,
            "gps_on_xgb_ports_fraction": gps_end.fraction,
            "gps_on_xgb_ports_normalized": gps_end.normalized,
            "xgb_probes_to_gps_fraction": best["probes"] if best else None,
            "xgb_best_fraction": max(r["fraction_of_services"] for r in evaluation.xgb_rows),
        }
    )
    for row in evaluation.xgb_rows:
        evaluation.summaries.append(
            Summary(
                method=f"XGBoost scanner (threshold {row['threshold']:g})",
                probes=round(row["probes"]),
                found=round(row["fraction_of_services"] * sub.n_services),
                fraction=row["fraction_of_services"],
                normalized=row["normalized_services"],
                precision=(row["fraction_of_services"] * sub.n_services) / max(1.0, row["probes"]),
                saving_vs_exhaustive=k_exhaustive / max(1.0, row["probes"]),
                precision_gain_vs_exhaustive=float("nan"),
            )
        )


# --- rendering --------------------------------------------------------------------------------------


def _fmt_probes(n: float) -> str:
    return f"{n:.3g}" if n >= 1e6 else f"{int(n):,}"


def summary_markdown(evaluation: Evaluation) -> str:
    """The results table (Markdown)."""
    lines = [
        "| method | probes | services found | normalized services | precision (services/probe) | "
        "bandwidth vs exhaustive |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in evaluation.summaries:
        saving = f"{s.saving_vs_exhaustive:,.0f}x less" if np.isfinite(s.saving_vs_exhaustive) else "-"
        if s.method == "exhaustive":
            saving = "1x"
        lines.append(
            f"| {s.method} | {_fmt_probes(s.probes)} | {100 * s.fraction:.1f}% | {100 * s.normalized:.1f}% | "
            f"{s.precision:.2e} | {saving} |"
        )
    f = evaluation.facts
    notes = [
        "",
        f"Ground truth: {f['services_in_truth']:,} services on {f['ports_in_truth']:,} ports in "
        f"{f['addresses']:,} addresses"
        + (
            f" ({f['pseudo_services_excluded']:,} services of pseudo-service hosts left out)"
            if f["pseudo_services_excluded"]
            else ""
        )
        + ".",
    ]
    if f.get("gps_saving_vs_port_order"):
        notes.append(
            f"Optimal port order needs {f['gps_saving_vs_port_order']:.1f}x GPS's probes to find GPS's "
            f"{100 * f['gps_fraction']:.1f}%; GPS finds at least as much at every budget: "
            f"{'yes' if f['gps_beats_port_order_at_every_budget'] else 'no'} "
            f"(worst ratio {f['gps_over_port_order_min_ratio']:.2f})."
        )
    if evaluation.xgb_ports:
        notes.append(
            "The last rows count only the XGBoost scanner's ports "
            f"({', '.join(map(str, evaluation.xgb_ports))}), against exhaustive scans of those ports; the "
            f"scanner is applied to a sample of {f['xgb_sample_addresses']:,} addresses and scaled up."
        )
    return "\n".join(lines + notes) + "\n"


def summary_csv(evaluation: Evaluation) -> str:
    buffer = io.StringIO()
    rows = [s.as_row() for s in evaluation.summaries]
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def curves_csv(evaluation: Evaluation) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "probes", "services_found", "fraction_of_services", "normalized_services"])
    for c in evaluation.curves:
        cov = c.coverage
        for p, n, fr, nm in zip(
            c.probes.tolist(), c.found.tolist(), cov.tolist(), c.normalized.tolist(), strict=True
        ):
            writer.writerow([c.name, p, n, f"{fr:.6f}", f"{nm:.6f}"])
    for row in evaluation.xgb_rows:
        writer.writerow(
            [f"XGBoost scanner ({row['threshold']:g})", round(row["probes"]), "",
             f"{row['fraction_of_services']:.6f}", f"{row['normalized_services']:.6f}"]
        )  # fmt: skip
    return buffer.getvalue()


def write_evaluation(evaluation: Evaluation, folder: Path) -> dict[str, str]:
    """Write the table, CSVs, JSON and plots of an evaluation into ``folder``."""
    (folder / "summary.md").write_text(summary_markdown(evaluation), encoding="utf-8")
    (folder / "summary.csv").write_text(summary_csv(evaluation), encoding="utf-8")
    (folder / "curves.csv").write_text(curves_csv(evaluation), encoding="utf-8")
    results = {
        "facts": evaluation.facts,
        "summaries": [s.as_row() for s in evaluation.summaries],
        "xgboost": evaluation.xgb_rows,
    }
    (folder / "results.json").write_text(
        json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8"
    )
    files = {"table": "summary.md", "csv": "summary.csv", "curves": "curves.csv", "results": "results.json"}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("matplotlib is not installed: no plots written (pip install matplotlib)")
        return files
    plot_curves(
        evaluation.curves, folder / "coverage.png", normalized=False, title="Services found vs probes"
    )
    plot_curves(
        evaluation.curves, folder / "normalized.png", normalized=True, title="Normalized services vs probes"
    )
    files.update({"plot_coverage": "coverage.png", "plot_normalized": "normalized.png"})
    if evaluation.xgb_ports and evaluation.port_order_xgb is not None:
        xgb_points = [(r["probes"], r["fraction_of_services"]) for r in evaluation.xgb_rows]
        plot_ports_comparison(
            evaluation.gps_on_xgb_ports, xgb_points, evaluation.port_order_xgb, folder / "xgboost.png",
            ports=evaluation.xgb_ports,
        )  # fmt: skip
        files["plot_xgboost"] = "xgboost.png"
    return files


def run_evaluate(
    pred: str | os.PathLike[str], output: str | os.PathLike[str], config: EvaluateConfig
) -> dict[str, Any]:
    """Evaluate the predictions in ``pred`` (and their plan) against ``config.truth``; write ``output``."""
    if not config.truth:
        raise UsageError("give the simulated Internet to evaluate against with --truth NET/")
    output = Path(output)
    backend = resolve(config.backend)
    timings = Timings()
    with timings.step("read"):
        internet, extra = open_net(config.truth, backend)
        # Without truth.parquet the truth is regenerated in blocks of /16s on the cluster's workers.
        ip, port = truth_of(config.truth, internet, cluster=config.cluster, workers=config.workers)
        truth = make_truth(ip, port, internet.n_addresses, include_pseudo=config.include_pseudo)
        seed_keys = seed_keys_of(config.truth)
        plan_dir = plan_of(pred, config.plan)
        plan_rows = read_plan_rows(plan_dir)
        predictions = read_predictions(pred)
    with timings.step("evaluate"):
        evaluation = evaluate_run(
            internet, truth, seed_keys, plan_rows, predictions,
            seed_fraction=float(extra.get("seed_fraction", 0.01)),
            baselines=tuple(b for b in config.baselines if b != "none"),
            xgb_ports=config.xgb_ports, xgb_sample=config.xgb_sample,
            progress=lambda m: print(f"gpsgpu: evaluate: {m}", file=sys.stderr),
        )  # fmt: skip
    with atomic_dir(output) as tmp:
        files = write_evaluation(evaluation, tmp)
        metadata = build_metadata(
            command="evaluate",
            config=as_dict(config),
            inputs={"predictions": str(pred), "plan": plan_dir, "truth": str(config.truth)},
            backend=backend.value,
            counts=evaluation.facts,
            timings=timings,
            extra={"outputs": files},
        )
        write_metadata(tmp / "metadata.json", metadata)
    sys.stdout.write(summary_markdown(evaluation))
    print(f"gpsgpu: evaluate: -> {output}", file=sys.stderr)
    return metadata


def run_ablation_command(output: str | os.PathLike[str], config: EvaluateConfig) -> dict[str, Any]:
    """``gpsgpu evaluate --ablation --truth NET/``: compatible mode against each improved step, each a
    campaign run on the simulated Internet."""

    from gpsgpu.evaluate.ablation import (
        ablation_csv,
        ablation_markdown,
        ablation_steps,
        plot_ablation,
        run_ablation,
    )

    if not config.truth:
        raise UsageError("give the simulated Internet to run the ablation on with --truth NET/")
    output = Path(output)
    backend = resolve(config.backend)
    timings = Timings()
    with timings.step("read"):
        internet, extra = open_net(config.truth, backend)
        truth_arrays = internet.ground_truth()
        truth = make_truth(truth_arrays.ip, truth_arrays.port, internet.n_addresses)
        seed_keys = seed_keys_of(config.truth)
    with atomic_dir(output) as tmp:
        with timings.step("ablation"):
            # Every configuration is a campaign; its model and campaign folders stay in OUT/ to look at.
            ablation = run_ablation(
                Path(config.truth), tmp, truth_arrays, seed_keys, truth,
                seed_fraction=float(extra.get("seed_fraction", 0.01)),
                steps=ablation_steps(top_k=config.top_k, rounds=config.rounds, preset=config.preset),
                progress=lambda m: print(f"gpsgpu: evaluate: {m}", file=sys.stderr, flush=True),
            )  # fmt: skip
        (tmp / "ablation.md").write_text(ablation_markdown(ablation), encoding="utf-8")
        (tmp / "ablation.csv").write_text(ablation_csv(ablation), encoding="utf-8")
        evaluation = Evaluation(truth, ablation.curves, [], {})
        (tmp / "curves.csv").write_text(curves_csv(evaluation), encoding="utf-8")
        files = {"table": "ablation.md", "csv": "ablation.csv", "curves": "curves.csv"}
        try:
            import matplotlib  # noqa: F401

            plot_ablation(ablation, tmp / "ablation.png")
            files["plot"] = "ablation.png"
        except ImportError:
            log.warning("matplotlib is not installed: no plot written (pip install matplotlib)")
        metadata = build_metadata(
            command="evaluate",
            config=as_dict(config),
            inputs={"truth": str(config.truth)},
            backend=backend.value,
            counts={"rows": ablation.rows, **ablation.facts},
            timings=timings,
            extra={"outputs": files},
        )
        write_metadata(tmp / "metadata.json", metadata)
    sys.stdout.write(ablation_markdown(ablation))
    print(f"gpsgpu: evaluate: ablation -> {output}", file=sys.stderr)
    return metadata

"""PNG plots of coverage against probes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gpsgpu.evaluate.metrics import Curve
from gpsgpu.io.atomic import atomic_path

_STYLE = {
    "GPS": {"color": "#1f77b4", "lw": 2.2},
    "optimal port order": {"color": "#d62728", "lw": 1.6, "ls": "--"},
    "exhaustive": {"color": "black", "marker": "x", "ls": "none", "ms": 9},
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_curves(curves: list[Curve], output: str | os.PathLike[str], *, normalized: bool, title: str) -> Path:
    """Fraction (or normalized fraction) of services found against probes, log-scaled probes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    for curve in curves:
        y = curve.normalized if normalized else curve.coverage
        keep = curve.probes > 0
        style = dict(_STYLE.get(curve.name, {"lw": 1.4}))
        if curve.name == "exhaustive":
            ax.plot(curve.probes[-1:], y[-1:], label=curve.name, **style)
        else:
            ax.plot(curve.probes[keep], y[keep], label=curve.name, **style)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("probes (log scale)")
    ax.set_ylabel("normalized services found" if normalized else "fraction of services found")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    path = _save(fig, Path(output))
    plt.close(fig)
    return path


def plot_ports_comparison(
    gps_points: list[tuple[float, float]],
    xgb_points: list[tuple[float, float]],
    port_order: Curve,
    output: str | os.PathLike[str],
    *,
    ports: list[int],
) -> Path:
    """GPS, the XGBoost scanner and optimal port order on the XGBoost scanner's ports only."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    keep = port_order.probes > 0
    ax.plot(
        port_order.probes[keep],
        port_order.coverage[keep],
        label="optimal port order",
        **_STYLE["optimal port order"],
    )
    if xgb_points:
        xs, ys = zip(*sorted(xgb_points), strict=True)
        ax.plot(xs, ys, marker="o", color="#2ca02c", label="XGBoost scanner (thresholds)")
    if gps_points:
        xs, ys = zip(*gps_points, strict=True)
        ax.plot(xs, ys, color="#1f77b4", lw=2.2, label="GPS")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("probes (log scale)")
    ax.set_ylabel("fraction of services found")
    shown = ", ".join(str(p) for p in ports[:10]) + (", ..." if len(ports) > 10 else "")
    ax.set_title(f"The XGBoost scanner's ports ({shown})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    path = _save(fig, Path(output))
    plt.close(fig)
    return path

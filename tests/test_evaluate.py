"""Evaluation metrics on hand-made cases, the baselines, and ``gpsgpu evaluate`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpsgpu import schema
from gpsgpu.blocklist import Blocklist
from gpsgpu.evaluate.baselines import exhaustive_curve, gps_curve, port_order_curve, restrict_truth
from gpsgpu.evaluate.metrics import PSEUDO_PORTS, Curve, dominates, make_truth, summarize


def ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


IP1, IP2, IP3, IP4 = ip("1.2.3.1"), ip("1.2.3.2"), ip("1.2.4.3"), ip("1.2.4.4")
# Ground truth: port 80 on IP1..IP3, 443 on IP1, 8080 on IP4; ten addresses in this tiny Internet.
TRUTH = make_truth(
    np.array([IP1, IP2, IP3, IP1, IP4], np.uint32), np.array([80, 80, 80, 443, 8080], np.uint16), 10
)
SEED = schema.pack_service(np.array([IP1], np.uint32), np.array([80], np.uint16))


def run_curve() -> Curve:
    # Plan: port 80 on 1.2.3.0/24 (256 probes); predictions: IP1:443 (real), IP3:8080 (not), IP4:8080 (real).
    return gps_curve(
        TRUTH, SEED, np.array([80], np.uint16), np.array([ip("1.2.3.0")], np.uint32), 24,
        np.array([IP1, IP3, IP4], np.uint32), np.array([443, 8080, 8080], np.uint16),
        blocklist=Blocklist.default(),
    )  # fmt: skip


def test_gps_curve_by_hand() -> None:
    curve = run_curve()
    np.testing.assert_array_equal(curve.probes, [0, 256, 257, 258, 259])
    np.testing.assert_array_equal(curve.found, [1, 2, 3, 3, 4])
    # Normalized: each port's found share, averaged over the 3 ports of the truth.
    np.testing.assert_allclose(curve.normalized, [1 / 9, 2 / 9, 2 / 9 + 1 / 3, 2 / 9 + 1 / 3, 2 / 9 + 2 / 3])
    s = summarize(curve, TRUTH)
    assert s.probes == 259 and s.found == 4
    assert s.fraction == pytest.approx(0.8)
    assert s.normalized == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert s.precision == pytest.approx(3 / 259)  # services beyond the seed per probe
    assert s.saving_vs_exhaustive == pytest.approx(10 * 65536 / 259)
    assert s.precision_gain_vs_exhaustive == pytest.approx((3 / 259) / (4 / (10 * 65536)))


def test_port_order_and_exhaustive_by_hand() -> None:
    order = port_order_curve(TRUTH, SEED)
    np.testing.assert_array_equal(order.probes, [0, 10, 20, 30])
    np.testing.assert_array_equal(order.found, [1, 3, 4, 5])
    np.testing.assert_allclose(order.normalized, [1 / 9, 1 / 3, 2 / 3, 1.0])
    assert order.at(15) == pytest.approx((0.7, 0.5))
    assert order.probes_to_reach(0.8) == pytest.approx(20.0)
    assert order.probes_to_reach(1.01) is None
    full = exhaustive_curve(TRUTH)
    assert full.final_probes == 10 * 65536 and full.found[-1] == 5


def test_dominance_is_checked_at_every_breakpoint() -> None:
    gps, order = run_curve(), port_order_curve(TRUTH, SEED)
    ok, worst = dominates(gps, order)
    assert not ok and worst < 1  # port order finds 3 with 10 probes; GPS has 1.04 by then
    ok, worst = dominates(order, order)
    assert ok and worst == pytest.approx(1.0)


def test_blocklisted_predictions_cost_nothing() -> None:
    blocked = Blocklist.default().union(Blocklist.from_cidrs(["1.2.4.0/24"]))
    curve = gps_curve(
        TRUTH, SEED, np.array([80], np.uint16), np.array([ip("1.2.3.0")], np.uint32), 24,
        np.array([IP1, IP3, IP4], np.uint32), np.array([443, 8080, 8080], np.uint16), blocklist=blocked,
    )  # fmt: skip
    assert curve.final_probes == 257 and curve.found[-1] == 3


def test_pseudo_service_hosts_are_left_out_unless_asked() -> None:
    many = np.arange(1000, 1000 + PSEUDO_PORTS + 1, dtype=np.uint16)
    ips = np.concatenate([np.full(many.size, IP2, np.uint32), [IP1]]).astype(np.uint32)
    ports = np.concatenate([many, [80]]).astype(np.uint16)
    assert make_truth(ips, ports, 10).n_services == 1
    assert make_truth(ips, ports, 10).n_pseudo_excluded == many.size
    assert make_truth(ips, ports, 10, include_pseudo=True).n_services == many.size + 1


def test_restrict_truth_keeps_the_chosen_ports() -> None:
    sub = restrict_truth(TRUTH, np.array([80]))
    assert sub.n_services == 3 and sub.n_ports == 1


def gpsgpu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpsgpu.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_evaluate_cli_end_to_end(tmp_path: Path) -> None:
    net, model, plan, priors, pred, out = (tmp_path / n for n in ("net", "model", "plan", "priors.parquet",
                                                                  "pred", "eval"))  # fmt: skip
    steps = [
        ("simulate", "-o", str(net), "--hosts", "20000", "--seed-fraction", "0.05", "--backend", "cpu"),
        ("learn", str(net / "seed.parquet"), "-o", str(model), "--backend", "cpu"),
        ("plan", str(model), "-o", str(plan)),
        ("sim-scan", str(net), str(plan), "-o", str(priors), "--backend", "cpu"),
        ("predict", str(model), str(priors), "-o", str(pred), "--plan", str(plan), "--backend", "cpu"),
        (
            "evaluate",
            str(pred),
            "--truth",
            str(net),
            "-o",
            str(out),
            "--xgb-ports",
            "3",
            "--xgb-sample",
            "20000",
        ),
    ]
    for step in steps:
        done = gpsgpu(*step)
        assert done.returncode == 0, (step[0], done.stderr[-2000:])
    assert "| GPS |" in done.stdout and "optimal port order" in done.stdout
    for name in ("summary.md", "summary.csv", "curves.csv", "results.json", "coverage.png", "normalized.png",
                 "metadata.json"):  # fmt: skip
        assert (out / name).is_file(), name
    facts = json.loads((out / "results.json").read_text())["facts"]
    assert 0 < facts["gps_fraction"] <= 1 and facts["gps_normalized"] < facts["gps_fraction"]
    assert facts["gps_probes"] < facts["exhaustive_probes"]
    if "xgb_ports" in facts:
        assert (out / "xgboost.png").is_file()


def test_evaluate_needs_a_truth(tmp_path: Path) -> None:
    done = gpsgpu("evaluate", str(tmp_path), "-o", str(tmp_path / "e"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--truth" in done.stderr

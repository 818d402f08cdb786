"""Campaign gain on the simulated Internets of bench/campaign_nets.toml (issue 19's measure).

For each net: learn a compatible and an improved model (``gpsgpu learn``, ``--mode improved
--seed-fraction F``), run a compatible campaign to its end (``gpsgpu campaign run --sim``), then an
improved campaign with ``--budget`` the compatible campaign's probes, and report the share of the
ground truth's services each found (services of hosts on more than 10 ports left out, as
``gpsgpu evaluate`` does) and its normalized coverage. Nothing here reads the truth before the
campaigns end. Usage::

    python bench/bench_campaign.py [--nets /work/nets] [--only n1,n2] [-o RESULTS.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import cpu_model, versions  # noqa: E402


def measure(net: Path, work: Path, seed_fraction: float) -> dict:
    from gpsgpu.backend import Backend
    from gpsgpu.campaign.schedule import Options
    from gpsgpu.config import LearnConfig
    from gpsgpu.evaluate.ablation import Run
    from gpsgpu.evaluate.metrics import make_truth
    from gpsgpu.pipelines.campaign import campaign_events, run_sim, run_start, status_rows
    from gpsgpu.pipelines.learn import run_learn
    from gpsgpu.pipelines.simulate import open_net, seed_keys_of, truth_of

    seed = [str(net / "seed.parquet")]
    out: dict = {}
    started = time.perf_counter()
    run_learn(seed, work / "model", LearnConfig(backend="cpu"))
    run_learn(
        seed,
        work / "model-improved",
        LearnConfig(backend="cpu", mode="improved", seed_fraction=seed_fraction),
    )
    out["learn_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    run_start(work / "model", work / "compatible", options=Options(schedule="compatible"), echo=False)
    run_sim(work / "compatible", net, echo=False)
    _, rows = status_rows(work / "compatible")
    budget = int(rows[-1]["total_probes"])
    out["compatible_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    run_start(
        work / "model-improved",
        work / "improved",
        options=Options(schedule="improved", budget=budget),
        echo=False,
    )
    run_sim(work / "improved", net, echo=False)
    _, rows_i = status_rows(work / "improved")
    out["improved_s"] = round(time.perf_counter() - started, 1)
    # Only now the ground truth.
    internet, _ = open_net(net, Backend.CPU)
    ip, port = truth_of(net, internet)
    truth = make_truth(ip, port, internet.n_addresses)
    seed_keys = seed_keys_of(net)
    for name, camp in (("compatible", work / "compatible"), ("improved", work / "improved")):
        found, cost = campaign_events(camp)
        curve = Run(name, found, cost).curve(truth, seed_keys)
        out[name] = {
            "probes": int(curve.final_probes),
            "coverage": float(curve.coverage[-1]),
            "normalized": float(curve.normalized[-1]),
            "steps": len(status_rows(camp)[1]),
        }
    out["services_in_truth"] = int(truth.n_services)
    out["gain_pp"] = 100 * (out["improved"]["coverage"] - out["compatible"]["coverage"])
    out["normalized_gain_pp"] = 100 * (out["improved"]["normalized"] - out["compatible"]["normalized"])
    del rows_i
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nets", default="/work/nets", help="folder holding the nets (gpsgpu simulate -o NETS/NAME)"
    )
    parser.add_argument(
        "--work", default="/tmp/bench-campaign", help="scratch folder for models and campaigns"
    )
    parser.add_argument("--only", default="", help="comma list of net names")
    parser.add_argument("-o", "--output", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    spec = tomllib.loads((HERE / "campaign_nets.toml").read_text())["net"]
    only = {n for n in args.only.split(",") if n}
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_model(),
        "versions": versions(),
        "nets": {},
    }
    for net in spec:
        if only and net["name"] not in only:
            continue
        print(f"bench_campaign: {net['name']} ...", file=sys.stderr, flush=True)
        work = Path(args.work) / net["name"]
        result = measure(Path(args.nets) / net["name"], work, float(net["seed_fraction"]))
        results["nets"][net["name"]] = {**net, **result}
        c, i = result["compatible"], result["improved"]
        print(
            f"{net['name']}: compatible {c['probes']:,} probes {100 * c['coverage']:.1f}% "
            f"(normalized {100 * c['normalized']:.2f}%); improved {i['probes']:,} probes "
            f"{100 * i['coverage']:.1f}% ({100 * i['normalized']:.2f}%): {result['gain_pp']:+.1f} pp; "
            f"times {result['learn_s']} s learn, {result['compatible_s']} s, {result['improved_s']} s",
            flush=True,
        )
        if args.output:
            Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    gains = [r["gain_pp"] for r in results["nets"].values()]
    if gains:
        print(
            f"gain: min {min(gains):+.1f} pp, median {float(np.median(gains)):+.1f} pp, "
            f"max {max(gains):+.1f} pp"
        )


if __name__ == "__main__":
    main()

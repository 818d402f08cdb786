"""The ablation's improved schedule as CLI steps (plan --stage/--part/--live, sim-scan, predict --after).

On one small simulated Internet, the workflow a user runs finds exactly the services the ablation's
last configuration ("+ host rules") finds, with exactly its probes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpsgpu import schema
from gpsgpu.backend import Backend
from gpsgpu.config import PLAN_STAGES, LearnConfig, PlanConfig, PredictConfig, SimulateConfig
from gpsgpu.errors import UsageError
from gpsgpu.evaluate.ablation import ablation_steps, run_improved
from gpsgpu.io.blocklist import read_blocklist
from gpsgpu.io.parquet import read_table
from gpsgpu.pipelines.learn import run_learn
from gpsgpu.pipelines.plan import run_plan
from gpsgpu.pipelines.predict import run_predict
from gpsgpu.pipelines.simulate import open_net, run_sim_scan, run_simulate
from gpsgpu.plan.budget import DEFAULT_EARLY_SCORE, DEFAULT_HEAD_PATTERNS, STAGES, split_head
from gpsgpu.predict.ranked import calibration_counts, release_score
from gpsgpu.sim.scanner import SimScanner


def _keys(path: Path) -> np.ndarray:
    t = pd.read_parquet(path, columns=[schema.IP, schema.PORT])
    return schema.pack_service(t[schema.IP].to_numpy(np.uint32), t[schema.PORT].to_numpy(np.uint16))


def test_stages_are_the_same_everywhere() -> None:
    assert PLAN_STAGES == STAGES
    with pytest.raises(UsageError, match="--live"):
        PlanConfig(stage="tail")
    with pytest.raises(UsageError, match="--stage head-live or tail"):
        PlanConfig(live=("found.parquet",))
    with pytest.raises(UsageError, match="--stage"):
        PlanConfig(stage="middle")
    tail2 = PlanConfig(stage="tail", live=("f",), part="2/16", scanned=("t1",), found=("t1.parquet",))
    assert tail2.stage_part == (2, 16)
    with pytest.raises(UsageError, match="needs the 1 earlier tail parts as --scanned"):
        PlanConfig(stage="tail", live=("f",), part="2/16")
    with pytest.raises(UsageError, match="need --found"):
        PlanConfig(stage="tail", live=("f",), part="2/16", scanned=("t1",))
    with pytest.raises(UsageError, match="with --stage tail --part K/N"):
        PlanConfig(stage="tail", live=("f",), scanned=("t1",), found=("t1.parquet",))
    assert PlanConfig(stage="head", part="3/16").stage_part == (3, 16)
    for bad in ("0/4", "5/4", "x", "1/2/3"):
        with pytest.raises(UsageError, match="--part"):
            PlanConfig(stage="head", part=bad)
    with pytest.raises(UsageError, match="--stage head, head-live or tail"):
        PlanConfig(part="1/2")
    with pytest.raises(UsageError, match="--stage head-live needs --live"):
        PlanConfig(stage="head-live", part="1/2")
    with pytest.raises(UsageError, match="needs --part"):
        PlanConfig(stage="head-live", live=("f",))
    with pytest.raises(UsageError, match="head-live or tail"):
        PlanConfig(stage="head", live=("f",))
    assert PredictConfig(min_score="0.25").min_score == 0.25
    assert PredictConfig(min_score="yield", found=("f",), scanned=("p",)).min_score == "yield"
    with pytest.raises(UsageError, match="needs --found"):
        PredictConfig(min_score="yield", found=("f",))
    with pytest.raises(UsageError, match="or 'yield'"):
        PredictConfig(min_score="best")
    with pytest.raises(UsageError, match=r"within 0\.\.1"):
        PredictConfig(min_score=1.5)


def test_cli_rounds_workflow_equals_the_ablation(tmp_path: Path) -> None:
    net, root = tmp_path / "net", tmp_path
    run_simulate(net, SimulateConfig(hosts=30_000, seed=4, backend="cpu"), progress=lambda _: None)
    model = root / "model"
    run_learn([str(net / "seed.parquet")], model, LearnConfig(mode="improved", preset="extended"))

    probes: list[int] = []

    def sim_scan(what: Path, name: str) -> Path:
        out = root / f"{name}.parquet"
        probes.append(int(run_sim_scan(net, what, out, backend="cpu")["counts"]["probes"]))
        return out

    # 1. GPS's rows with >= 3 patterns in two parts: each part's rows whose network earlier parts
    # scanned on two ports, only in the /24s found live so far (none in part 1), then the others whole.
    head_scans: list[Path] = []
    for k in (1, 2):
        if k > 1:
            live = tuple(str(p) for p in head_scans)
            run_plan(model, root / f"narrow{k}", PlanConfig(stage="head-live", part=f"{k}/2", live=live))
            head_scans.append(sim_scan(root / f"narrow{k}", f"narrow{k}"))
        run_plan(model, root / f"head{k}", PlanConfig(stage="head", part=f"{k}/2"))
        head_scans.append(sim_scan(root / f"head{k}", f"head{k}"))
    narrowed = pd.read_parquet(root / "narrow2" / "plan_rows.parquet")
    assert len(narrowed) > 0 and (narrowed[schema.LENGTH] == 24).all()
    run_plan(model, root / "narrow1", PlanConfig(stage="head-live", part="1/2", live=(str(head_scans[0]),)))
    assert pd.read_parquet(root / "narrow1" / "plan_rows.parquet").empty  # no part before part 1

    # No prediction is made inside a head row: --plan names the head, unsplit.
    run_plan(model, root / "head", PlanConfig(stage="head"))

    def predict(priors: list[Path], name: str, **flags: object) -> Path:
        config = PredictConfig(plan=str(root / "head"), backend="cpu", **flags)  # type: ignore[arg-type]
        run_predict(model, [str(p) for p in priors], root / name, config)
        return root / name

    # 2. Round 1's predictions scoring >= 0.003; the rest are held back.
    pred1 = predict(head_scans, "pred1", min_score=DEFAULT_EARLY_SCORE)
    assert (pred1 / "held.parquet").is_file()
    found1 = sim_scan(pred1, "found1")
    # 3. The other rows, only in the /24s found live so far, by value per probe, in two parts; after
    # the first, the predictions of what it found scoring >= 0.003 (the backlog carried forward).
    live = (*(str(p) for p in head_scans), str(found1))
    run_plan(model, root / "tail1", PlanConfig(stage="tail", live=live, part="1/3"))
    meta = json.loads((root / "tail1" / "metadata.json").read_text())
    assert meta["params"]["step"] == 24 and (root / "tail1" / "priors_scan_24.csv").is_file()
    tail1 = sim_scan(root / "tail1", "tail1")
    # The tail skips the hosts known live: they are in the plan's blocklist, sim-scan (as ZMap -b)
    # does not probe them, and nothing the tail finds is on one of them.
    scans = (*live, net / "seed.parquet")
    ips = [pd.read_parquet(p, columns=[schema.IP])[schema.IP].to_numpy(np.uint32) for p in scans]
    known_hosts = np.unique(np.concatenate(ips))
    assert meta["counts"]["known_hosts_skipped"] > 0
    assert probes[-1] == meta["counts"]["probes_after_blocklist"] < meta["counts"]["probes"]
    assert not np.isin(pd.read_parquet(tail1, columns=[schema.IP])[schema.IP], known_hosts).any()
    tail_blocklist = read_blocklist(root / "tail1" / "blocklist.txt")
    tail24s = np.unique(pd.read_parquet(root / "tail1" / "plan_rows.parquet")[schema.PREFIX])
    in_tail = known_hosts[np.isin(known_hosts & np.uint32(0xFFFFFF00), tail24s)]
    assert in_tail.size == meta["counts"]["known_hosts_skipped"] and tail_blocklist.contains(in_tail).all()
    after = (str(pred1),)
    scanned = (str(root / "tail1"),)
    pred_m = predict([found1], "pred_m", found=(str(tail1),), after=after, scanned=scanned, min_score="yield")
    # The part's yield: what its scan found that no earlier step had, over its probes; the score to
    # beat is the one whose predictions hit that often, by what probing round 1's found.
    tail1_rows = pd.read_parquet(root / "tail1" / "plan_rows.parquet")
    earlier = np.concatenate([_keys(p) for p in (*head_scans, found1)] + [_keys(net / "seed.parquet")])
    new = np.setdiff1d(_keys(tail1), earlier)
    round1 = pd.read_parquet(pred1 / "parts")
    probed = calibration_counts(
        round1[schema.SCORE].to_numpy(), np.isin(_keys(pred1 / "parts"), _keys(found1))
    )
    pd.testing.assert_frame_equal(pd.read_parquet(pred_m / "calibration.parquet"), probed, check_dtype=False)
    threshold = json.loads((pred_m / "metadata.json").read_text())["counts"]["min_score"]
    assert threshold == pytest.approx(release_score(probed, new.size / tail1_rows[schema.PROBES].sum()))
    assert 0 < threshold < 1
    kept = pd.read_parquet(pred_m / "parts", columns=[schema.SCORE])[schema.SCORE]
    assert (kept >= np.float32(threshold)).all()
    assert (pd.read_parquet(pred_m / "held.parquet")[schema.SCORE] < np.float32(threshold)).all()
    found_m = sim_scan(pred_m, "found_m")
    after = (*after, str(pred_m))
    # Part 2 re-ranks the rows left by what part 1 found in their plan rows; part 3 is the rest.
    tails, found_last = [tail1], found_m
    for k in (2, 3):
        done = tuple(str(root / f"tail{j}") for j in range(1, k))
        config = PlanConfig(
            stage="tail", live=live, part=f"{k}/3", scanned=done, found=tuple(map(str, tails))
        )
        run_plan(model, root / f"tail{k}", config)
        tails.append(sim_scan(root / f"tail{k}", f"tail{k}"))
        scanned = (*scanned, str(root / f"tail{k}"))
        if k == 2:
            pred_k = predict([found_last], "pred_m2", found=(str(tails[-1]),), after=after, scanned=scanned,
                             min_score="yield")  # fmt: skip
            after, found_last = (*after, str(pred_k)), sim_scan(pred_k, "found_m2")
    # 4. Rounds 2 and 3: what was found is observed; earlier rounds are not predicted again.
    pred2 = predict([found_last], "pred2", found=(str(tails[-1]),), after=after, scanned=scanned)
    found2 = sim_scan(pred2, "found2")
    pred3 = predict([found2], "pred3", after=(*after, str(pred2)), scanned=scanned)
    found3 = sim_scan(pred3, "found3")
    parts = (*head_scans, found1, *tails, found_m, root / "found_m2.parquet", found2, found3)
    cli_found = np.unique(np.concatenate([_keys(p) for p in parts]))
    # The three parts are the whole tail; the second is not the fixed order's second third.
    run_plan(model, root / "tail24", PlanConfig(stage="tail", live=live))
    whole = pd.read_parquet(root / "tail24" / "plan_rows.parquet")
    thirds = [pd.read_parquet(root / f"tail{k}" / "plan_rows.parquet") for k in (1, 2, 3)]
    assert len(whole) == sum(len(t) for t in thirds) and min(len(t) for t in thirds) > 0
    position = {
        key: i for i, key in enumerate(zip(whole[schema.NEEDED_P], whole[schema.PREFIX], strict=True))
    }
    second = np.sort(
        [position[key] for key in zip(thirds[1][schema.NEEDED_P], thirds[1][schema.PREFIX], strict=True)]
    )
    assert not np.array_equal(second, np.arange(len(thirds[0]), len(thirds[0]) + len(second)))

    # The ablation's "+ rounds" on the same Internet.
    internet, extra = open_net(net, Backend.CPU)
    truth = internet.ground_truth()
    seed = schema.services_from_arrow(read_table(net / "seed.parquet"), pd)
    options = ablation_steps()[-1]
    assert options.name == "+ host rules" and options.early_score == DEFAULT_EARLY_SCORE
    assert options.head_patterns == DEFAULT_HEAD_PATTERNS
    options = dataclasses.replace(options, tail_parts=3, head_parts=2)
    run = run_improved(
        internet, SimScanner(internet, truth=truth), seed, options,
        step=16, hitrate=0.00001, seed_fraction=float(extra.get("seed_fraction", 0.01)),
    )  # fmt: skip
    ablation_found = np.unique(np.concatenate(run.found))
    rows = pd.read_parquet(root / "head" / "plan_rows.parquet")
    assert run.counts["head_rows"] == len(rows)

    # The parts' whole rows are head rows; the narrowed rows come from the other head rows.
    def row_keys(frame: pd.DataFrame, length: int) -> np.ndarray:
        net = schema.prefix_of(frame[schema.PREFIX].to_numpy(np.uint32), length).astype(np.uint64)
        return (frame[schema.NEEDED_P].to_numpy(np.uint64) << np.uint64(32)) | net

    whole_rows = np.concatenate(
        [row_keys(pd.read_parquet(root / f"head{k}" / "plan_rows.parquet"), 16) for k in (1, 2)]
    )
    head_keys = row_keys(rows, 16)
    assert 0 < whole_rows.size < head_keys.size and np.isin(whole_rows, head_keys).all()
    parents = np.unique(row_keys(narrowed, 16))
    assert np.isin(parents, head_keys).all() and not np.isin(parents, whole_rows).any()
    assert ablation_found.size > 0
    np.testing.assert_array_equal(cli_found, ablation_found)
    assert sum(probes) == run.counts["probes"]
    assert (rows[schema.N_PATTERNS] >= DEFAULT_HEAD_PATTERNS).all() and split_head(rows)[1].empty
    tail_rows = pd.read_parquet(root / "tail24" / "plan_rows.parquet")
    assert (tail_rows[schema.LENGTH] == 24).all()
    # The tail's /24 rows never hold blocklisted space (cut as everywhere).
    first = (root / "tail24" / "priors_scan_24.csv").read_text().splitlines()[0].split(",")[1]
    (root / "block.txt").write_text(f"{first}\n")
    run_plan(model, root / "cut", PlanConfig(stage="tail", live=live, blocklist=(str(root / "block.txt"),)))
    assert f",{first}" not in (root / "cut" / "priors_scan_24.csv").read_text()


def test_stage_needs_an_improved_model(tmp_path: Path) -> None:
    net = tmp_path / "net"
    run_simulate(net, SimulateConfig(hosts=5_000, seed=1, backend="cpu"), progress=lambda _: None)
    run_learn([str(net / "seed.parquet")], tmp_path / "compat", LearnConfig())
    with pytest.raises(UsageError, match="--mode improved"):
        run_plan(tmp_path / "compat", tmp_path / "p", PlanConfig(stage="head"))

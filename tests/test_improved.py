"""Improved mode: scored top-k rules, ranked budgeted predictions and plans, rounds, the mode switch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpsgpu import schema
from gpsgpu.learn import learn_patterns
from gpsgpu.learn.ranked import ANY_ASN, learn_host_rules, learn_ranked_rules, real_hosts
from gpsgpu.ops import cpu
from gpsgpu.plan import plan_priors
from gpsgpu.plan.budget import (
    cut_budget,
    found_per_row,
    head_part,
    live_rows,
    live_tail,
    network_rows,
    next_tail_part,
    rank_plan_rows,
    row_probes,
)
from gpsgpu.predict.ranked import (
    CALIBRATION_COLUMNS,
    MIN_BAND_PROBES,
    add_calibration,
    calibration_counts,
    hold_back,
    merge_held,
    part_yield,
    rank_predictions,
    release_score,
    scanned_keys,
)
from gpsgpu.predict.services import _combine, drop_mask, in_scanned, predict_services, prepare_predict
from tests.gps_data import make_priors, make_services

A, B, C = 0x0A000001, 0x0A000002, 0x0A000003


def _frame(rows: list[tuple[int, int, str]]) -> pd.DataFrame:
    """A services frame from ``(ip, port, banner)`` rows (http, window 1000, ASN 64500)."""
    n = len(rows)
    return pd.DataFrame(
        {
            schema.IP: np.array([r[0] for r in rows], np.uint32),
            schema.PORT: np.array([r[1] for r in rows], np.uint16),
            schema.ASN: np.full(n, 64500, np.uint32),
            schema.PROTOCOL: ["http"] * n,
            schema.WINDOW: np.full(n, 1000, np.int32),
            schema.BANNER: [r[2] for r in rows],
        }
    )


def _rule(rules: pd.DataFrame, p1: int, server: str, p2: int) -> pd.Series:
    hit = rules[(rules[schema.NEEDED_P] == p1) & (rules[schema.SERVER] == server) & (rules[schema.P] == p2)]
    assert len(hit) == 1, (p1, server, p2)
    return hit.iloc[0]


def test_scores_are_smoothed_hitrates_over_all_hosts() -> None:
    # Three hosts show "X" on 80 with 8080 open; two single-port hosts show "X" on 80 only.
    seed = _frame([(A + i, 80, "X") for i in range(5)] + [(A + i, 8080, f"Y{i}") for i in range(3)])
    rules = learn_ranked_rules(seed, top_k=100, min_count=3, prior=(1.0, 1.0)).rules
    rule = _rule(rules, 80, "http line: X", 8080)
    assert rule[schema.COUNT_P2] == 3
    assert rule[schema.SUPPORT] == 5  # single-port hosts count: the priors scan meets them too
    assert rule[schema.HITRATE] == pytest.approx(1.0)  # GPS's hitrate counts multi-port hosts only
    assert rule[schema.SCORE] == pytest.approx((3 + 1) / (5 + 2))


def test_top1_is_gps_best_predictor_exactly() -> None:
    seed = make_services(600, seed=3)
    gps = learn_patterns(seed)
    ranked = learn_ranked_rules(seed, top_k=1, min_count=3, max_host_ports=10)
    with_p = gps.patterns[gps.patterns[schema.P].notna()]
    want = (
        with_p[[schema.IP, schema.P, schema.NEEDED_P, schema.FKEY]]
        .astype({schema.P: np.uint16, schema.FKEY: np.uint64})
        .sort_values([schema.IP, schema.P])
        .reset_index(drop=True)
    )
    got = ranked.predictors[[schema.IP, schema.P, schema.NEEDED_P, schema.FKEY]]
    pd.testing.assert_frame_equal(got.sort_values([schema.IP, schema.P]).reset_index(drop=True), want)
    key = [schema.NEEDED_P, schema.FKEY, schema.P]
    pd.testing.assert_frame_equal(ranked.rules[key], gps.rules[key])


def test_top_k_keeps_more_rules_and_ranks_them() -> None:
    seed = make_services(600, seed=3)
    one = learn_ranked_rules(seed, top_k=1, min_count=3, max_host_ports=10)
    four = learn_ranked_rules(seed, top_k=4, min_count=3, max_host_ports=10)
    assert len(four.rules) > len(one.rules)
    key = [schema.NEEDED_P, schema.FKEY, schema.P]
    merged = one.rules[key].merge(four.rules[key], how="left", indicator=True)
    assert (merged["_merge"] == "both").all()  # top-k contains the best predictor's rules
    assert four.predictors["rank"].max() == 3
    assert ((four.rules[schema.SCORE] > 0) & (four.rules[schema.SCORE] < 1)).all()


def test_port_with_two_seed_hosts_still_predicts() -> None:
    seed = _frame([(A, 80, "Vendor"), (A, 9999, "v1"), (B, 80, "Vendor"), (B, 9999, "v2"), (C, 80, "other")])
    gps = learn_patterns(seed)
    assert len(gps.rules) == 0  # GPS needs count_p2 > 2
    rules = learn_ranked_rules(seed, top_k=100).rules
    rule = _rule(rules, 80, "http line: Vendor", 9999)
    assert rule[schema.COUNT_P2] == 2
    priors = _frame([(0x0B000001, 80, "Vendor")])
    preds = rank_predictions(priors, rules)
    assert (preds[schema.PORT] == 9999).any()


def test_real_hosts_keeps_varied_big_hosts_only() -> None:
    pseudo = [(A, p, "HTTP/1.0 200 OK") for p in range(1000, 1020)]
    varied = [(B, p, f"service {p}") for p in range(2000, 2014)]
    small = [(C, 22, "SSH"), (C, 80, "web")]
    frame = _frame(pseudo + varied + small)
    real = real_hosts(frame, max_host_ports=32)
    assert not real[:20].any()
    assert real[20:].all()
    assert not real_hosts(frame, max_host_ports=12)[20:34].any()  # too big for the cap


def test_big_real_hosts_are_learned_from() -> None:
    big = [(A + h, p, f"svc {p} host {h % 2}") for h in range(3) for p in range(3000, 3012)]
    seed = _frame(big)
    assert learn_ranked_rules(seed, max_host_ports=10).counts["n_rules"] == 0
    learned = learn_ranked_rules(seed, max_host_ports=32)
    assert learned.counts["n_hosts_learned_over_10"] == 3
    assert learned.counts["n_rules"] > 0


def test_combine_noisy_or_and_max() -> None:
    key = np.array([7, 5, 5], np.uint64)
    scores = np.array([0.5, 0.2])  # distinct scores, best first; candidates name them by rank
    rank = np.array([1, 0, 0])
    services, nor, n = _combine(cpu, key, rank, scores, "noisy-or")
    assert services.tolist() == [5, 7] and nor.tolist() == pytest.approx([0.75, 0.2]) and n.tolist() == [2, 1]
    assert _combine(cpu, key, rank, scores, "max")[1].tolist() == pytest.approx([0.5, 0.2])


@pytest.mark.parametrize("n_scores", [1000, 70_000], ids=["packed", "lexsort"])
def test_combine_sorts_candidates_by_service_then_rank(n_scores: int) -> None:
    """Both sorts (a rank packed beside the service key, or a two-key lexsort past 2**16 ranks)
    give each service its rules in rank order: a noisy-or sum in that order, whatever the order of
    the candidates, and the best rank first for max."""
    rng = np.random.default_rng(n_scores)
    scores = np.sort(rng.random(n_scores))[::-1]
    key = rng.integers(0, 3000, 200_000).astype(np.uint64) << np.uint64(16)
    rank = rng.integers(0, n_scores, key.size)
    services, nor, n = _combine(cpu, key, rank, scores, "noisy-or")
    shuffled = rng.permutation(key.size)
    again = _combine(cpu, key[shuffled], rank[shuffled], scores, "noisy-or")
    assert all(np.array_equal(a, b) for a, b in zip((services, nor, n), again, strict=True))
    frame = pd.DataFrame({"key": key, "rank": rank}).sort_values(["key", "rank"])
    expected = frame.groupby("key")["rank"].agg(
        lambda r: -np.expm1(np.log1p(-np.minimum(scores, 1 - 1e-9))[r.to_numpy()].sum())
    )
    assert services.tolist() == expected.index.tolist()
    np.testing.assert_allclose(nor, expected.to_numpy(), rtol=1e-12)
    assert n.tolist() == frame.groupby("key").size().tolist()
    best = _combine(cpu, key, rank, scores, "max")[1]
    assert best.tolist() == scores[frame.groupby("key")["rank"].min().to_numpy()].tolist()


def test_predictions_best_first_and_budget_cuts_the_tail() -> None:
    seed = make_services(800, seed=5)
    rules = learn_ranked_rules(seed).rules
    priors = make_priors(seed, 400, seed=6)
    everything = rank_predictions(priors, rules)
    assert len(everything) > 20
    scores = everything[schema.SCORE].to_numpy()
    assert (np.diff(scores) <= 0).all()
    cut = rank_predictions(priors, rules, budget=10)
    pd.testing.assert_frame_equal(cut, everything.iloc[:10].reset_index(drop=True))
    floor = float(scores[len(scores) // 2])
    above = rank_predictions(priors, rules, min_score=floor)
    assert (above[schema.SCORE] >= np.float32(floor)).all()
    known = rank_predictions(
        priors,
        rules,
        known=np.sort(
            schema.pack_service(everything[schema.IP].to_numpy()[:5], everything[schema.PORT].to_numpy()[:5])
        ),
    )
    assert len(known) == len(everything) - 5


def test_plan_rows_ranked_and_cut_by_budget() -> None:
    seed = make_services(800, seed=5)
    gps = learn_patterns(seed)
    plan = rank_plan_rows(seed, gps.patterns, step=16, hitrate=1e-5)
    c = plan[schema.N_PATTERNS].to_numpy()
    assert (np.diff(c) <= 0).all()  # GPS's rows first, in GPS's order
    gps_plan = plan_priors(gps.patterns, step=16, hitrate=1e-5)
    head = plan[c > 0].reset_index(drop=True)
    np.testing.assert_array_equal(head[schema.NEEDED_P].to_numpy(), gps_plan[schema.NEEDED_P].to_numpy())
    np.testing.assert_array_equal(head[schema.PREFIX].to_numpy(), gps_plan[schema.PREFIX].to_numpy())
    assert (np.diff(plan[c == 0][schema.SCORE].to_numpy()) <= 0).all()  # then by expected services/probe
    seen = set(zip(plan[schema.NEEDED_P].tolist(), plan[schema.PREFIX].tolist(), strict=True))
    ip = seed[schema.IP].to_numpy(np.uint32)
    for p, x in zip(seed[schema.PORT].tolist(), schema.prefix_of(ip, 16).tolist(), strict=True):
        assert (p, x) in seen  # every (port, /16) the seed saw is a row
    cut = cut_budget(plan, budget=3 * 65536 + 5)
    assert len(cut) == 3
    pd.testing.assert_frame_equal(cut, plan.iloc[:3].reset_index(drop=True))


def test_live_rows_narrow_to_live_24s() -> None:
    plan = pd.DataFrame(
        {
            schema.NEEDED_P: np.array([80, 22], np.uint16),
            schema.PREFIX: np.array([0x0A000000, 0x0B000000], np.uint32),
            schema.VALUE: [2.0, 1.0],
            schema.LENGTH: np.array([16, 16]),
        }
    )
    live = np.array([0x0A000105, 0x0A000199, 0x0A00FF01, 0x0C000001], np.uint32)
    rows = live_rows(plan, live)
    assert rows[schema.PREFIX].tolist() == [0x0A000100, 0x0A00FF00]
    assert rows["row"].tolist() == [0, 0]
    assert (rows[schema.LENGTH] == 24).all()
    scanned = scanned_keys(
        rows[schema.NEEDED_P].to_numpy(), rows[schema.PREFIX].to_numpy(), rows[schema.LENGTH].to_numpy()
    )
    assert list(scanned) == [24]


def test_head_parts_scan_a_network_whole_once_then_its_live_24s() -> None:
    # Six head rows on three networks, in head order; parts of two rows each.
    nets = np.array([0x0A000000, 0x0B000000, 0x0A000000, 0x0C000000, 0x0B000000, 0x0C000000], np.uint32)
    head = pd.DataFrame(
        {
            schema.NEEDED_P: np.array([80, 80, 443, 22, 22, 443], np.uint16),
            schema.PREFIX: nets,
            schema.VALUE: np.arange(6.0, 0.0, -1.0),
            schema.LENGTH: np.full(6, 16),
        }
    )
    parts = [head_part(head, part=k, parts=3, sweeps=1) for k in range(3)]
    whole = [w[schema.NEEDED_P].tolist() for w, _ in parts]
    swept = [s[schema.NEEDED_P].tolist() for _, s in parts]
    # Part 0 has no earlier part: all whole. 10.0/16 was scanned in part 0, 12.0/16 first in part 1.
    assert whole == [[80, 80], [22], []] and swept == [[], [443], [22, 443]]
    assert sum(len(w) + len(s) for w, s in parts) == len(head)
    # With two sweeps, a network needs two rows in earlier parts: no network has them here...
    two = [head_part(head, part=k, parts=3, sweeps=2) for k in range(3)]
    assert [s[schema.NEEDED_P].tolist() for _, s in two] == [[], [], []]
    assert [w[schema.NEEDED_P].tolist() for w, _ in two] == [[80, 80], [443, 22], [22, 443]]
    # ... and a third row of 10.0/16 after its two is narrowed.
    longer = pd.concat([head.iloc[[0, 2]], head.iloc[[0]].assign(**{schema.NEEDED_P: np.uint16(21)})])
    assert head_part(longer, part=2, parts=3, sweeps=2)[1][schema.NEEDED_P].tolist() == [21]
    # Swept rows keep head order and are narrowed to the live /24s only.
    narrow = live_rows(parts[1][1], np.array([0x0A000105, 0x0A002001, 0x0C000001], np.uint32))
    assert narrow[schema.PREFIX].tolist() == [0x0A000100, 0x0A002000]
    assert (narrow[schema.LENGTH] == 24).all()
    # One part: the whole head, whole.
    everything, none = head_part(head, part=0, parts=1)
    assert len(everything) == len(head) and none.empty
    # Rows already /24 are never narrowed further.
    small = head.assign(**{schema.LENGTH: np.full(6, 24)})
    assert head_part(small, part=2, parts=3)[1].empty


def test_host_rules_are_smoothed_shares_per_as() -> None:
    # AS 1: four hosts, three on 22; AS 2: two hosts on 80 only. All ASes: 3 of 6 hosts on 22.
    rows = [(A + i, 80, "w") for i in range(4)] + [(A + i, 22, "s") for i in range(3)]
    rows += [(B + 0x100000 + i, 80, "w") for i in range(2)]
    seed = _frame(rows)
    seed[schema.ASN] = np.where(seed[schema.IP] >= B + 0x100000, 2, 1).astype(np.uint32)
    rules = learn_host_rules(seed, prior_hosts=2.0, min_score=0.0)
    score = {(int(a), int(p)): s for a, p, s in rules[[schema.ASN, schema.P, schema.SCORE]].itertuples(False)}
    assert score[(1, 22)] == pytest.approx((3 + 2 * 3 / 6) / (4 + 2))
    assert score[(2, 22)] == pytest.approx((0 + 2 * 3 / 6) / (2 + 2))  # unseen there: the share, shrunk
    assert score[(ANY_ASN, 22)] == pytest.approx(3 / 6) and score[(ANY_ASN, 80)] == pytest.approx(1.0)
    # Observed hosts predict their AS's ports; unknown ASes take the all-ASes rules; seed hosts nothing.
    observed = _frame([(C, 80, "w"), (C, 443, "t"), (C + 1, 80, "w"), (C + 2, 80, "w")])
    observed[schema.ASN] = np.array([1, 1, 9, 2], np.uint32)
    no_rules = pd.DataFrame(
        {
            schema.NEEDED_P: np.zeros(0, np.uint16),
            schema.FKEY: np.zeros(0, np.uint64),
            schema.P: np.zeros(0, np.uint16),
            schema.SCORE: np.zeros(0, np.float64),
        }
    )
    tables = prepare_predict(no_rules, host_rules=rules, skip_hosts=np.array([C + 2], np.uint32))
    got = predict_services(observed, tables, combine="noisy-or")
    key = schema.pack_service(got[schema.IP].to_numpy(), got[schema.PORT].to_numpy())
    by_key = dict(zip(key.tolist(), got[schema.SCORE].tolist(), strict=True))
    assert by_key[int(schema.pack_service(np.uint32(C), np.uint16(22)))] == pytest.approx(score[(1, 22)])
    assert by_key[int(schema.pack_service(np.uint32(C + 1), np.uint16(22)))] == pytest.approx(0.5)
    assert not any((k >> 16) == C + 2 for k in by_key)
    # In the ranking, a host rule fills in where no service rule names the target; known targets go.
    known = np.sort(schema.pack_service(np.array([C], np.uint32), np.array([80], np.uint16)))
    preds = rank_predictions(observed, learn_ranked_rules(seed).rules, host_rules=rules, known=known)
    names = set(zip(preds[schema.IP].tolist(), preds[schema.PORT].tolist(), strict=True))
    assert (C, 22) in names and (C, 80) not in names and (C + 1, 22) in names


def test_merge_held_keeps_rows_aligned_and_drops_what_was_probed() -> None:
    # Held rows in score order (not key order): the filter must follow each row's own key.
    held = pd.DataFrame(
        {
            schema.IP: np.array([C, A, B], np.uint32),
            schema.PORT: np.array([22, 80, 443], np.uint16),
            schema.SCORE: np.array([0.002, 0.0015, 0.001], np.float32),
            schema.N_RULES: np.ones(3, np.uint32),
        }
    )
    preds = held.iloc[:0]
    probed = np.sort(schema.pack_service(np.array([A], np.uint32), np.array([80], np.uint16)))
    merged = merge_held(preds, held, known=probed)
    assert list(zip(merged[schema.IP], merged[schema.PORT], strict=True)) == [(C, 22), (B, 443)]
    scanned = scanned_keys(np.array([443]), np.array([B & 0xFFFFFF00], np.uint32), np.array([24]))
    assert len(merge_held(preds, held, scanned=scanned)) == 2
    now, later = hold_back(merge_held(preds, held), min_score=0.0015)
    assert len(now) == 2 and len(later) == 1


def test_host_rules_add_network_rows_and_shrink_seed_counts() -> None:
    # Network 10.0/16: 20 seed hosts of AS 1, one of them on 8443; AS 1 runs 22 on half its hosts.
    rows = [(A + i, 80, "w") for i in range(20)] + [(A + i, 22, "s") for i in range(10)] + [(A, 8443, "x")]
    seed = _frame(rows)
    seed[schema.ASN] = np.uint32(1)
    gps = learn_patterns(seed)
    rules = pd.DataFrame(
        {
            schema.ASN: np.array([1, 1, 1], np.uint32),
            schema.P: np.array([22, 3389, 8443], np.uint16),
            schema.SCORE: [0.5, 0.02, 0.001],
        }
    )
    key, expected, score = network_rows(seed, rules, step=16)
    assert (np.diff(key.astype(np.int64)) > 0).all() and expected.tolist() == pytest.approx([10.0, 0.4, 0.02])
    assert score.tolist() == [0.5, 0.02, 0.001]
    plain = rank_plan_rows(seed, gps.patterns, step=16, hitrate=1e-5)
    with_rules = rank_plan_rows(
        seed, gps.patterns, step=16, hitrate=1e-5, host_rules=rules, min_row_score=0.01
    )
    value = {int(p): v for p, v in zip(with_rules[schema.NEEDED_P], with_rules[schema.VALUE], strict=True)}
    # Suggested by the AS, never seen: the posterior mean of a count of 0, (0 + k) / (1 + k / 0.4).
    assert 3389 not in set(plain[schema.NEEDED_P].tolist()) and value[3389] == pytest.approx(10 / 26)
    # The one seed service on 8443 is shrunk towards the AS's estimate (0.02): (1 + k) / (1 + k / 0.02).
    assert value[8443] == pytest.approx((1 + 10.0) / (1 + 10.0 / 0.02))
    no_shrink = rank_plan_rows(seed, gps.patterns, step=16, hitrate=1e-5, host_rules=rules, shrink=0.0)
    assert dict(zip(no_shrink[schema.NEEDED_P].tolist(), no_shrink[schema.VALUE], strict=True))[8443] == 1.0


def test_tail_parts_take_equal_probes_and_rerank_by_what_rows_found() -> None:
    plan = pd.DataFrame(
        {
            schema.NEEDED_P: np.array([80, 22, 443], np.uint16),
            schema.PREFIX: np.array([0x0A000000, 0x0A000000, 0x0B000000], np.uint32),
            schema.VALUE: [1.0, 2.0, 0.5],
            schema.LENGTH: np.array([16, 16, 16]),
        }
    )
    # Three live /24s in 10.0/16 (one address each), two in 11.0/16.
    live = np.array([0x0A000105, 0x0A000201, 0x0A000301, 0x0B000001, 0x0B000101], np.uint32)
    narrow = live_tail(plan, live)  # 8 /24 rows of 255 probes: 22 (3), 80 (3), 443 (2)
    none = np.zeros(len(narrow), bool)
    first = next_tail_part(narrow, none, np.zeros(len(narrow)), part=0, parts=2)
    # The first part: the best rows by value, half the probes.
    assert first.tolist() == [0, 1, 2, 3]
    assert narrow[schema.NEEDED_P].iloc[first].tolist() == [22, 22, 22, 80]
    np.testing.assert_array_equal(
        next_tail_part(narrow, none, np.zeros(len(narrow)), part=0, parts=1), np.arange(8)
    )
    # The 22 row's /24s found nothing, the 80 row's one found 3: 3 services per 2.33 of value scanned,
    # so the 80 row's /24s left (value 1/3 each) weigh (3 + 1) / (0.43 + 1) times more and beat 443's
    # (value 1/4 each, nothing scanned yet).
    scanned = np.isin(np.arange(len(narrow)), first)
    found = found_per_row(
        narrow,
        schema.pack_service(
            np.array([0x0A000107, 0x0A000108, 0x0A000109, 0x0C000001], np.uint32),
            np.array([80, 80, 80, 80], np.uint16),
        ),
    )
    assert found.tolist() == [0, 0, 0, 3, 0, 0, 0, 0]  # an address outside every row counts nowhere
    second = next_tail_part(narrow, scanned, found, part=1, parts=2)
    assert sorted(second.tolist()) == [4, 5, 6, 7]
    assert narrow[schema.NEEDED_P].iloc[second].tolist() == [80, 80, 443, 443]


# --- the command line ---------------------------------------------------------------------------


def _gpsgpu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpsgpu.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def small_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("improved")
    done = _gpsgpu(
        "simulate", "-o", str(root / "net"), "--hosts", "20000", "--seed-fraction", "0.05", "--seed", "3"
    )
    assert done.returncode == 0, done.stderr
    return root


def test_cli_improved_predict_and_compatible_guard(small_net: Path) -> None:
    net, root = small_net / "net", small_net
    seed = str(net / "seed.parquet")
    assert _gpsgpu("learn", seed, "-o", str(root / "compat")).returncode == 0
    done = _gpsgpu("learn", seed, "-o", str(root / "model"), "--mode", "improved", "--preset", "gps2022")
    assert done.returncode == 0, done.stderr
    meta = json.loads((root / "model" / "metadata.json").read_text())
    assert meta["params"]["mode"] == "improved" and meta["params"]["host_rules"] is True
    host_rules = pd.read_parquet(root / "model" / "host_rules.parquet")
    assert len(host_rules) > 0 and meta["counts"]["improved_n_host_rules"] == len(host_rules)
    assert (
        pd.read_parquet(root / "model" / "seed_real.parquet").columns == [schema.IP, schema.PORT, schema.ASN]
    ).all()
    bare = _gpsgpu("learn", seed, "-o", str(root / "bare"), "--mode", "improved", "--no-host-rules")
    assert bare.returncode == 0, bare.stderr
    assert not (root / "bare" / "host_rules.parquet").exists()
    assert (
        _gpsgpu("plan", str(root / "model"), "-o", str(root / "plan"), "--budget", str(40 * 65536)).returncode
        == 0
    )
    assert len((root / "plan" / "priors_scan_16.csv").read_text().splitlines()) <= 40
    assert (root / "plan" / "plan_rows.parquet").is_file()
    priors = str(root / "priors.parquet")
    assert _gpsgpu("sim-scan", str(net), str(root / "plan"), "-o", priors).returncode == 0
    one = _gpsgpu("predict", str(root / "model"), priors, "-o", str(root / "p1"))
    assert one.returncode == 0, one.stderr
    # The sorted runs lived in the output's temporary folder only.
    assert sorted(p.name for p in (root / "p1").iterdir()) == ["metadata.json", "parts"]
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]
    p1 = pd.read_parquet(root / "p1" / "parts")
    assert len(p1) > 10 and (p1[schema.ROUND] == 1).all()
    assert (np.diff(p1[schema.SCORE].to_numpy()) <= 0).all()  # best first
    # --min-score and --budget cut the same ranking: what scores under it, and what is past it.
    floor = float(p1[schema.SCORE].iloc[len(p1) // 2])
    budget = int((p1[schema.SCORE] >= np.float32(floor)).sum()) - 3
    cut = _gpsgpu(
        "predict", str(root / "model"), priors, "-o", str(root / "p2"), "--min-score", str(floor),
        "--budget", str(budget), "--export", "gps",
    )  # fmt: skip
    assert cut.returncode == 0, cut.stderr
    p2 = pd.read_parquet(root / "p2" / "parts")
    pd.testing.assert_frame_equal(p2, p1.iloc[:budget])
    assert len((root / "p2" / "predictions.txt").read_text().splitlines()) == budget
    counts = json.loads((root / "p2" / "metadata.json").read_text())["counts"]
    assert (counts["n_predictions"], counts["n_ranked"]) == (budget, len(p1))
    above = _gpsgpu("predict", str(root / "model"), priors, "-o", str(root / "p3"), "--min-score", str(floor))
    assert above.returncode == 0, above.stderr
    p3 = pd.read_parquet(root / "p3" / "parts")
    pd.testing.assert_frame_equal(p3, p1[p1[schema.SCORE] >= np.float32(floor)])
    # Compatible models refuse the improved flags, in one line.
    bad = _gpsgpu("predict", str(root / "compat"), priors, "-o", str(root / "x"), "--budget", "10")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--mode improved" in bad.stderr
    bad = _gpsgpu("predict", str(root / "model"), priors, "-o", str(root / "x"), "--min-score", "2")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--min-score" in bad.stderr
    bad = _gpsgpu("learn", seed, "-o", str(root / "x"), "--mode", "better")
    assert bad.returncode != 0 and "--mode" in bad.stderr and "Traceback" not in bad.stderr


def test_ablation_on_a_small_internet(small_net: Path) -> None:
    out = small_net / "ablation"
    done = _gpsgpu(
        "evaluate", "--ablation", "--truth", str(small_net / "net"), "-o", str(out), "--rounds", "2"
    )
    assert done.returncode == 0, done.stderr
    table = (out / "ablation.md").read_text()
    for name in ("compatible", "+ scores", "+ top-k", "+ extended features", "+ rounds", "+ host rules"):
        assert f"| {name} |" in table
    rows = pd.read_csv(out / "ablation.csv")
    assert rows.loc[0, "gain_pp"] == 0
    assert (out / "ablation.png").stat().st_size < 200_000
    # Every configuration is a campaign run to its end, kept to look at.
    for slug in ("compatible", "scores", "top-k", "extended-features", "rounds", "host-rules"):
        log = (out / "campaigns" / slug / "log.jsonl").read_text().splitlines()
        assert json.loads(log[-1])["kind"] == "done", slug


def test_live_tail_values_each_24_by_its_share_of_live_addresses() -> None:
    plan = pd.DataFrame(
        {
            schema.NEEDED_P: np.array([80, 22], np.uint16),
            schema.PREFIX: np.array([0x0A000000, 0x0B000000], np.uint32),
            schema.VALUE: [4.0, 3.0],
            schema.SCORE: [4.0 / 655.36, 3.0 / 655.36],
            schema.LENGTH: np.array([16, 16]),
        }
    )
    # Row 0 (value 4): 3 live addresses in 10.0.1/24, 1 in 10.0.2/24. Row 1 (value 3): one /24.
    live = np.array([0x0A000101, 0x0A000102, 0x0A000103, 0x0A000201, 0x0B000501], np.uint32)
    narrow = live_tail(plan, live)
    assert narrow[schema.PREFIX].tolist() == [0x0A000100, 0x0B000500, 0x0A000200]
    np.testing.assert_allclose(narrow[schema.VALUE], [3.0, 3.0, 1.0])
    assert narrow["rank"].tolist() == [0, 1, 2] and narrow["row"].tolist() == [0, 1, 0]
    # A /24 row skips the addresses known live there (the tail looks for hosts not found yet).
    assert narrow[schema.PROBES].tolist() == [253, 255, 255]
    assert row_probes(narrow).tolist() == [253, 255, 255]
    # Still expected services per probe: the value over the row's probes at the seed fraction.
    np.testing.assert_allclose(narrow[schema.SCORE], narrow[schema.VALUE] / (0.01 * narrow[schema.PROBES]))
    assert (live_tail(plan, live, skip_live=False)[schema.PROBES] == 256).all()
    # A /24 whose every address is known live has nothing left to scan.
    full = np.arange(0x0A000300, 0x0A000400, dtype=np.uint32)
    assert 0x0A000300 not in live_tail(plan, np.concatenate([live, full]))[schema.PREFIX].tolist()
    # A row's value is spread over its live /24s, never more.
    assert narrow.groupby("row")[schema.VALUE].sum().tolist() == [4.0, 3.0]


def test_part_yield_counts_only_new_services() -> None:
    found = schema.pack_service(np.array([1, 2, 3, 3], np.uint32), np.array([80, 80, 22, 22], np.uint16))
    known = np.sort(schema.pack_service(np.array([2], np.uint32), np.array([80], np.uint16)))
    assert part_yield(found, known, 1000) == pytest.approx(2 / 1000)
    assert part_yield(found[:0], known, 0) == 0.0


def test_calibration_counts_add_up_by_score_band() -> None:
    scores = np.array([0.4, 0.5, 0.002, 0.0021, 0.0001])
    hit = np.array([True, False, False, True, False])
    table = calibration_counts(scores, hit)
    # Quarter decades: 0.4 and 0.5 share band -2 (10**-0.5 .. 10**-0.25), 0.002 and 0.0021 band -11.
    assert table["band"].tolist() == [-16, -11, -2]
    assert table["probes"].tolist() == [1, 2, 2] and table["hits"].tolist() == [0, 1, 1]
    both = add_calibration(table, calibration_counts(scores[:2], hit[:2]), None)
    assert both["probes"].tolist() == [1, 2, 4] and both["hits"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(both["score_sum"], [0.0001, 0.0041, 1.8])
    assert len(add_calibration()) == 0 and list(add_calibration().columns) == list(CALIBRATION_COLUMNS)


def _bands(rows: list[tuple[int, int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(CALIBRATION_COLUMNS))


def test_release_score_trusts_what_probing_found() -> None:
    # Nothing probed yet: the score is taken at its word.
    assert release_score(None, 0.001) == 0.001 and release_score(add_calibration(), 0.001) == 0.001
    # Scores 4x too high: band -8 (0.01..0.0178) hits 0.3% of the time, band -9 0.1%.
    table = _bands([(-8, 10_000, 30, 120.0), (-9, 10_000, 10, 75.0)])
    # A rate of 0.002: band -9 falls short, so only scores from its upper edge (0.01) up.
    assert release_score(table, 0.002) == pytest.approx(0.01)
    # A rate of 0.0005: every calibrated band beats it; below them a score is worth
    # 10 / 75 hits per unit (band -9's), so the scores from 0.0005 * 7.5 = 0.00375 on.
    assert release_score(table, 0.0005) == pytest.approx(0.0005 * 75 / 10)
    # ... but never above the lowest band's lower edge (10**(-9/4)) once its rate beats the target.
    assert release_score(_bands([(-9, 10_000, 100, 75.0)]), 0.0001) == pytest.approx(0.0001 * 75 / 100)
    # Bands with too few probes are not evidence.
    assert release_score(_bands([(-9, MIN_BAND_PROBES - 1, 0, 7.0)]), 0.001) == 0.001


def test_release_score_pools_bands_that_violate_the_order() -> None:
    # Band -9 hits less than band -10 below it: pooled (0.2% together), both beat 0.0015 ...
    table = _bands([(-8, 10_000, 50, 120.0), (-9, 10_000, 10, 75.0), (-10, 10_000, 30, 42.0)])
    assert release_score(table, 0.0015) < 10 ** (-10 / 4)
    # ... and both fall short of 0.0025, released down to the pooled block's upper edge only.
    assert release_score(table, 0.0025) == pytest.approx(10 ** (-8 / 4))


def test_drop_mask_by_binary_search_or_hash_table_is_the_same() -> None:
    """Known services are dropped alike whether the keys are sorted (a binary search each), or not
    (a hash table), or far fewer than the known ones; scanned rows and the blocklist on top."""
    rng = np.random.default_rng(3)
    service = np.unique(rng.integers(0, 1 << 40, 100_000).astype(np.uint64))
    others = rng.integers(0, 1 << 40, 5_000).astype(np.uint64)
    known = np.concatenate([rng.choice(service, 20_000, replace=False), others])
    rules = pd.DataFrame({"neededP": [80], "fkey": [1], "p": [443], "score": [0.5]}).astype(
        {"neededP": np.uint16, "fkey": np.uint64, "p": np.uint16}
    )
    ip, port = schema.unpack_service(service)
    scanned = {16: np.unique((port[:50].astype(np.uint64) << np.uint64(32)) | schema.prefix_of(ip[:50], 16))}
    tables = prepare_predict(rules, known=known, scanned=scanned)
    ordered = drop_mask(service, tables, ordered=True)
    shuffled = rng.permutation(service.size)
    assert np.array_equal(drop_mask(service[shuffled], tables)[np.argsort(shuffled)], ordered)
    expected = np.isin(service, known) | in_scanned(ip, port, tables.scanned)
    assert np.array_equal(ordered, expected) and ordered[:50].all()
    few = service[::1000]  # far fewer keys than known services: the binary search, unsorted or not
    assert np.array_equal(drop_mask(few[::-1], tables)[::-1], ordered[::1000])


def test_improved_predictions_do_not_depend_on_chunks_threads_or_row_order() -> None:
    """Chunks cut at host boundaries finish their own predictions (combined, host rules added, known
    dropped) when the rows are in address order; rows in any other order are combined over the
    whole partition. Both give the one-chunk predictions, scores and rule counts."""
    seed = make_services(800, seed=5)
    priors = make_priors(seed, 600, seed=6).sort_values([schema.IP, schema.PORT], ignore_index=True)
    tables = prepare_predict(
        learn_ranked_rules(seed).rules,
        known=np.sort(schema.pack_service(seed[schema.IP].to_numpy(), seed[schema.PORT].to_numpy())),
        host_rules=learn_host_rules(seed, prior_hosts=2.0, min_score=0.0),
    )
    whole = predict_services(priors, tables, combine="noisy-or", n_rules=True, workers=1)
    assert len(whole) > 100 and (whole[schema.N_RULES] > 1).any()
    chunked = predict_services(priors, tables, combine="noisy-or", n_rules=True, chunk_rows=97, workers=3)
    pd.testing.assert_frame_equal(chunked, whole)
    shuffled = priors.sample(frac=1.0, random_state=1).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        predict_services(shuffled, tables, combine="noisy-or", n_rules=True, chunk_rows=97, workers=3), whole
    )
    best = predict_services(priors, tables, combine="max", chunk_rows=97, workers=2)
    pd.testing.assert_frame_equal(best, predict_services(shuffled, tables, combine="max", workers=1))

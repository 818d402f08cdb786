"""Phases 1b and 2 against the DuckDB oracle, the blocklist, and the learn/plan/predict commands."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import numpy as np
import oracle_gps
import pandas as pd
import pyarrow.parquet as pq
import pytest
from gps_data import make_priors, make_services

from gpsgpu import cli, schema
from gpsgpu.backend import Backend, to_backend
from gpsgpu.blocklist import Blocklist
from gpsgpu.io.parquet import write_services
from gpsgpu.learn import learn_patterns
from gpsgpu.partition import split_by_host
from gpsgpu.plan import cut_blocklisted, plan_priors
from gpsgpu.predict import predict_services

STEP, HITRATE = 20, 0.001  # a /20 plan keeps only dense rows, so predictions remain


@pytest.fixture(scope="module")
def data() -> dict:
    seed = make_services(900, seed=21)
    priors = make_priors(seed, 900, seed=22)
    con = oracle_gps.connect()
    patterns = oracle_gps.learn(con, seed, hitrate=HITRATE)
    result = learn_patterns(seed, hitrate=HITRATE)
    return {"seed": seed, "priors": priors, "con": con, "oracle_patterns": patterns, "result": result}


@pytest.mark.parametrize(
    ("step", "hitrate"), [(16, 1e-5), (STEP, HITRATE), (24, 0.01), (32, 0.5), (0, 1e-12)]
)
def test_plan_rows_and_order_equal_the_oracle(data: dict, step: int, hitrate: float) -> None:
    expected = oracle_gps.plan(data["con"], data["oracle_patterns"], step=step, hitrate=hitrate)
    got = plan_priors(data["result"].patterns, step=step, hitrate=hitrate)
    assert len(got) > 0
    assert got[schema.NEEDED_P].astype(int).tolist() == expected["neededP"].tolist()
    assert got[schema.PREFIX].astype(int).tolist() == expected["prefix"].tolist()
    assert got[schema.N_PATTERNS].tolist() == expected["c"].tolist()


def test_blocklist_cut_drops_whole_rows_and_trims_partial_ones(data: dict) -> None:
    plan = plan_priors(data["result"].patterns, step=STEP, hitrate=HITRATE)
    whole = ipaddress.IPv4Address(int(plan[schema.PREFIX].iat[0]))
    partial = ipaddress.IPv4Address(int(plan[schema.PREFIX].iat[1]) + 256)
    blocklist = Blocklist.default().union(Blocklist.from_cidrs([f"{whole}/{STEP}", f"{partial}/24"]))
    cut = cut_blocklisted(plan, step=STEP, blocklist=blocklist)
    assert len(cut) == len(plan) - 1
    trimmed = cut.iloc[0]
    assert trimmed["n_allowed"] == (1 << (32 - STEP)) - 256 and len(trimmed["allowed"]) > 1
    for cidrs in cut["allowed"]:
        for cidr in cidrs:
            net = ipaddress.IPv4Network(cidr)
            ends = np.array([int(net.network_address), int(net.broadcast_address)], dtype=np.uint32)
            assert not blocklist.contains(ends).any() and not blocklist.overlaps(
                int(net.network_address), net.prefixlen
            )


def _bl_pairs(blocklist: Blocklist) -> list[tuple[int, int]]:
    return list(zip(blocklist.starts.tolist(), blocklist.ends.tolist(), strict=True))


@pytest.mark.parametrize("n_partitions", [1, 2, 7])
def test_predictions_equal_the_oracle(data: dict, backend: Backend, n_partitions: int) -> None:
    result = data["result"]
    plan = plan_priors(result.patterns, step=STEP, hitrate=HITRATE)
    first = ipaddress.IPv4Address(int(data["priors"]["ip"].iat[0]) & 0xFFFFFF00)
    blocklist = Blocklist.default().union(Blocklist.from_cidrs([f"{first}/24"]))
    expected = oracle_gps.predict(
        data["con"],
        data["oracle_patterns"],
        data["priors"],
        result.seed,
        step=STEP,
        hitrate=HITRATE,
        blocklist=_bl_pairs(blocklist),
    )
    assert len(expected) > 100
    priors = to_backend(data["priors"], backend)
    parts = [
        predict_services(part, result.rules, plan=plan, seed=result.seed, step=STEP, blocklist=blocklist)
        for part in split_by_host(priors, n_partitions=n_partitions)
    ]
    got = pd.concat(parts, ignore_index=True).sort_values(["ip", "port"])
    assert got["ip"].astype(int).tolist() == expected["ip"].astype(int).tolist()
    assert got["port"].astype(int).tolist() == expected["port"].astype(int).tolist()
    assert np.array_equal(got["score"].to_numpy(), expected["score"].to_numpy().astype(np.float32))
    assert (
        got["ip"].dtype == np.uint32 and got["port"].dtype == np.uint16 and got["score"].dtype == np.float32
    )


def test_nothing_is_predicted_in_the_seed_the_plan_or_blocklisted_space(data: dict) -> None:
    result = data["result"]
    plan = plan_priors(result.patterns, step=STEP, hitrate=HITRATE)
    got = predict_services(data["priors"], result.rules, plan=plan, seed=result.seed, step=STEP)
    seed_keys = set(
        schema.pack_service(result.seed["ip"].to_numpy(), result.seed["port"].to_numpy()).tolist()
    )
    assert not seed_keys & set(schema.pack_service(got["ip"].to_numpy(), got["port"].to_numpy()).tolist())
    planned = set(zip(plan[schema.NEEDED_P].tolist(), plan[schema.PREFIX].tolist(), strict=True))
    prefixes = schema.prefix_of(got["ip"].to_numpy(), STEP).tolist()
    assert not planned & set(zip(got["port"].tolist(), prefixes, strict=True))
    everything = Blocklist.from_cidrs(["0.0.0.0/0"])
    assert (
        len(
            predict_services(
                data["priors"], result.rules, plan=plan, seed=result.seed, step=STEP, blocklist=everything
            )
        )
        == 0
    )


# --- the commands -----------------------------------------------------------------------------------


def run(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """Run ``gpsgpu ARGS`` through the console entry point, in process."""
    monkeypatch.setattr(sys, "argv", ["gpsgpu", "-q", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(data: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    seed, priors = root / "seed.parquet", root / "priors.parquet"
    write_services(data["seed"], seed)
    write_services(data["priors"], priors)
    return {"root": root, "seed": seed, "priors": priors}


def test_learn_plan_predict_commands(
    data: dict, files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = files["root"]
    code, _, err = run(
        [
            "learn",
            str(files["seed"]),
            "-o",
            str(root / "model"),
            "--hitrate",
            str(HITRATE),
            "--step",
            str(STEP),
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    patterns = pq.read_table(root / "model" / "patterns.parquet")
    assert patterns.column_names == list(schema.PATTERNS_COLUMNS)
    rows = patterns.to_pandas()
    expected = data["oracle_patterns"]
    assert rows["ip"].tolist() == schema.ip_to_str(expected["ip"].to_numpy(np.uint32)).tolist()
    assert rows["server"].fillna("").tolist() == expected["server"].fillna("").tolist()
    meta = json.loads((root / "model" / "metadata.json").read_text())
    assert meta["params"] == {"preset": "gps2022", "hitrate": HITRATE, "step": STEP, "use_asn": True}

    blocklist = root / "block.txt"
    blocklist.write_text("# mine\n1.0.0.0/8\n")
    code, _, err = run(
        ["plan", str(root / "model"), "-o", str(root / "plan"), "-b", str(blocklist), "-r", "500"],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    plan = oracle_gps.plan(data["con"], expected, step=STEP, hitrate=HITRATE)
    plan = plan[(plan["prefix"] // (1 << 24)) != 1]  # wholly blocklisted rows are dropped
    lines = (root / "plan" / f"priors_scan_{STEP}.csv").read_text().splitlines()
    assert lines == [
        f"{p},{ipaddress.IPv4Address(int(x))}/{STEP}"
        for p, x in zip(plan["neededP"], plan["prefix"], strict=True)
    ]
    commands = (root / "plan" / "commands.sh").read_text()
    port = int(plan["neededP"].iat[0])
    assert (
        f"zmap -p {port} -w zmap/{port}.txt -b blocklist.txt -r 500 -O csv -f saddr,sport "
        f"-o results/{port}.csv" in commands
    )
    allowed = (root / "plan" / "zmap" / f"{port}.txt").read_text().split()
    assert allowed and not any(cidr.startswith("1.") for cidr in allowed)
    plan_meta = json.loads((root / "plan" / "metadata.json").read_text())
    assert plan_meta["counts"]["probes"] == len(plan) * (1 << (32 - STEP))

    for export, sep in (("gps", ":"), ("lzr", ";"), ("zgrab2", ",,,")):
        out = root / f"pred-{export}"
        code, _, err = run(
            [
                "predict",
                str(root / "model"),
                str(files["priors"]),
                "-o",
                str(out),
                "--export",
                export,
                "--priors-per-partition",
                "700",
            ],
            capsys,
            monkeypatch,
        )
        assert code == 0, err
        table = pq.read_table(out / "parts").to_pandas().sort_values(["ip", "port"])
        want = oracle_gps.predict(
            data["con"],
            expected,
            data["priors"],
            data["result"].seed,
            step=STEP,
            hitrate=HITRATE,
            blocklist=_bl_pairs(Blocklist.default()),
        )
        assert table["ip"].astype(int).tolist() == want["ip"].astype(int).tolist()
        text = (out / "predictions.txt").read_text().splitlines()
        assert sorted(text) == sorted(
            f"{ipaddress.IPv4Address(int(i))}{sep}{int(p)}"
            for i, p in zip(want["ip"], want["port"], strict=True)
        )
    assert len(list((root / "pred-gps" / "parts").glob("part-*.parquet"))) > 1


def test_bad_inputs_are_one_line_errors(
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    model = tmp_path / "model"
    assert run(["learn", str(files["seed"]), "-o", str(model)], capsys, monkeypatch)[0] == 0

    def error(args: list[str]) -> str:
        code, _, err = run(args, capsys, monkeypatch)
        assert code != 0
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        return err

    assert "not a model folder" in error(["plan", str(tmp_path / "missing"), "-o", str(tmp_path / "p")])
    assert "not a gpsgpu model" in error(["plan", str(tmp_path), "-o", str(tmp_path / "p")])
    meta_path = model / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "model_format": 99}))
    assert "model format 99" in error(["plan", str(model), "-o", str(tmp_path / "p")])
    meta_path.write_text(json.dumps({**meta, "params": {**meta["params"], "preset": "extended2030"}}))
    assert "preset" in error(["predict", str(model), str(files["priors"]), "-o", str(tmp_path / "x")])
    meta_path.write_text(json.dumps(meta))

    not_a_scan = tmp_path / "plan.csv"
    not_a_scan.write_text("80,1.2.0.0/16\n443,5.6.0.0/16\n")
    error(["predict", str(model), str(not_a_scan), "-o", str(tmp_path / "x")])
    error(["predict", str(model), str(meta_path), "-o", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()

    empty = tmp_path / "empty.parquet"
    write_services(make_services(1).iloc[:0], empty)
    assert "no services" in error(["learn", str(empty), "-o", str(tmp_path / "m2")])
    error(["learn", str(files["seed"]), "-o", str(tmp_path / "m3"), "--hitrate", "2"])
    error(["predict", str(model), str(files["priors"]), "-o", str(tmp_path / "x"), "--export", "nmap"])


def test_a_seed_without_usable_hosts_warns_and_predicts_nothing(
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    singles = make_services(50, seed=5, single_share=1.0, pseudo_share=0.0, duplicate_share=0.0)
    seed = tmp_path / "singles.parquet"
    write_services(singles.drop_duplicates(["ip"]), seed)
    code, _, err = run(["learn", str(seed), "-o", str(tmp_path / "model")], capsys, monkeypatch)
    assert code == 0 and "no host with 2..10 ports" in err and "Traceback" not in err
    code, _, err = run(
        ["predict", str(tmp_path / "model"), str(files["priors"]), "-o", str(tmp_path / "pred")],
        capsys,
        monkeypatch,
    )
    assert code == 0 and "no rules" in err
    assert pq.read_table(tmp_path / "pred" / "parts").num_rows == 0


def test_learn_without_asn_in_partitions_saving_counts(
    data: dict, files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = files["root"] / "model-no-asn"
    args = ["learn", str(files["seed"]), "-o", str(model), "--hitrate", str(HITRATE), "--no-asn"]
    code, _, err = run(
        [*args, "--partitions", "3", "--chunk-pairs", "2048", "--save-counts"], capsys, monkeypatch
    )
    assert code == 0, err
    meta = json.loads((model / "metadata.json").read_text())
    assert meta["params"]["use_asn"] is False and meta["config"]["partitions"] == 3
    assert (model / "count_p2.parquet").is_file() and (model / "cp_server.parquet").is_file()
    expected = oracle_gps.learn(data["con"], data["seed"], hitrate=HITRATE, use_asn=False)
    got = pq.read_table(model / "patterns.parquet").to_pandas()
    assert got["server"].fillna("").tolist() == expected["server"].fillna("").tolist()
    assert got["hitrate"].fillna(-1).tolist() == expected["hitrate"].fillna(-1).tolist()


def test_predictions_do_not_depend_on_chunks_or_threads(data: dict) -> None:
    result = data["result"]
    plan = plan_priors(result.patterns, step=STEP, hitrate=HITRATE)
    whole = predict_services(data["priors"], result.rules, plan=plan, seed=result.seed, step=STEP, workers=1)
    chunked = predict_services(
        data["priors"], result.rules, plan=plan, seed=result.seed, step=STEP, chunk_rows=97, workers=3
    )
    pd.testing.assert_frame_equal(whole, chunked)

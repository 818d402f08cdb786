"""The user's blocklist given to ``plan`` binds what follows from the plan: ``predict --plan`` makes
no prediction in it (even from a priors scan that ignored it), and the plan's rows.csv (what a
scanner may read as is) holds no reserved space."""

from __future__ import annotations

import collections
import ipaddress
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_output_contract import gpsgpu

from gpsgpu.blocklist import Blocklist


def _predicted_ips(folder: Path) -> np.ndarray:
    parts = [
        np.asarray(pq.read_table(p, columns=["ip"]).column("ip"))
        for p in (folder / "parts").glob("*.parquet")
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint32)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("binding")
    steps = [
        ["simulate", "-o", str(root / "net"), "--hosts", "20000", "--seed-fraction", "0.05",
         "--truth", "never"],
        ["learn", str(root / "net" / "seed.parquet"), "-o", str(root / "model")],
        ["plan", str(root / "model"), "-o", str(root / "plan")],
        ["sim-scan", str(root / "net"), str(root / "plan"), "-o", str(root / "priors.parquet")],
        ["predict", str(root / "model"), str(root / "priors.parquet"), "-o", str(root / "pred"),
         "--plan", str(root / "plan")],
    ]  # fmt: skip
    for args in steps:
        done = gpsgpu(*args)
        assert done.returncode == 0, done.stderr
    # The user blocks the /20 with the most predictions, after the priors scan ignored it.
    by_block = collections.Counter((_predicted_ips(root / "pred") >> 12).tolist())
    block = ipaddress.ip_network((by_block.most_common(1)[0][0] << 12, 20))
    (root / "mine.txt").write_text(f"# not ours to probe\n{block}\n")
    done = gpsgpu("plan", str(root / "model"), "-o", str(root / "plan_b"), "-b", str(root / "mine.txt"))
    assert done.returncode == 0, done.stderr
    return {"root": root, "block": block}  # type: ignore[dict-item]


def test_predict_honours_the_plans_user_blocklist(run: dict) -> None:  # type: ignore[type-arg]
    root, block = run["root"], run["block"]
    before = _predicted_ips(root / "pred")
    inside = (before >> 12) == (int(block.network_address) >> 12)
    assert inside.sum() > 0  # the test can fail: these were predicted without the blocklist
    done = gpsgpu(
        "predict", str(root / "model"), str(root / "priors.parquet"), "-o", str(root / "pred_b"),
        "--plan", str(root / "plan_b"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = _predicted_ips(root / "pred_b")
    assert not ((after >> 12) == (int(block.network_address) >> 12)).any()
    assert np.array_equal(np.sort(after), np.sort(before[~inside]))  # nothing else changed


def test_rows_csv_is_exactly_what_to_scan(run: dict) -> None:  # type: ignore[type-arg]
    root, block = run["root"], run["block"]
    for plan in ("plan", "plan_b"):
        rows = (root / plan / "rows.csv").read_text().splitlines()
        zmap_lines = sorted(
            f"{p.stem},{cidr}" for p in (root / plan / "zmap").glob("*.txt") for cidr in p.read_text().split()
        )
        assert rows and sorted(rows) == zmap_lines
        blocked = (
            Blocklist.default()
            if plan == "plan"
            else Blocklist.default().union(Blocklist.from_cidrs([str(block)]))
        )
        for line in rows:
            network = ipaddress.ip_network(line.split(",")[1])
            assert not blocked.overlaps(int(network.network_address), network.prefixlen), line

"""A model is checked when read: a corrupted or edited MODEL/ is one line and exit 3, never a port
that wraps (70000 -> 4464) or an address that silently changes predict's exclusions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_output_contract import gpsgpu, make_seed, one_error_line


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_seed(tmp_path_factory.mktemp("seed"))


@pytest.fixture(scope="module")
def model(seed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "model"
    done = gpsgpu("learn", str(seed), "-o", str(folder))
    assert done.returncode == 0, done.stderr
    return folder


def _edit_table(path: Path, column: str, change: Callable[[pa.Array], pa.Array]) -> None:
    table = pq.read_table(path)
    index = table.column_names.index(column)
    pq.write_table(table.set_column(index, column, change(table[column].combine_chunks())), path)


def _patterns_port(value: int) -> Callable[[Path], None]:
    def corrupt(model: Path) -> None:
        _edit_table(
            model / "patterns.parquet",
            "neededP",
            lambda a: pa.array([value, *a.to_pylist()[1:]], pa.int64()),
        )

    return corrupt


def _patterns_ip(model: Path) -> None:
    _edit_table(model / "patterns.parquet", "ip", lambda a: pa.array(["300.1.2.3", *a.to_pylist()[1:]]))


def _rules_without_score(model: Path) -> None:
    table = pq.read_table(model / "rules.parquet")
    pq.write_table(table.drop(["score"]), model / "rules.parquet")


def _rules_score(model: Path) -> None:
    _edit_table(model / "rules.parquet", "score", lambda a: pa.array([7.5, *a.to_pylist()[1:]], pa.float64()))


def _metadata_garbage(model: Path) -> None:
    (model / "metadata.json").write_text("{not json")


def _metadata_step(model: Path) -> None:
    meta = json.loads((model / "metadata.json").read_text())
    meta["params"]["step"] = 40
    (model / "metadata.json").write_text(json.dumps(meta))


def _truncated_rules(model: Path) -> None:
    data = (model / "rules.parquet").read_bytes()
    (model / "rules.parquet").write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("corrupt", "words"),
    [
        (_patterns_port(70000), "neededP"),
        (_patterns_port(-1), "neededP"),
        (_patterns_ip, "not IPv4 addresses"),
        (_rules_without_score, "no column score"),
        (_rules_score, "outside 0..1"),
        (_metadata_garbage, "unreadable"),
        (_metadata_step, "step 40"),
        (_truncated_rules, "rules.parquet"),
    ],
    ids=["port-70000", "port-negative", "bad-ip", "no-score", "score-7.5", "metadata", "step", "truncated"],
)
def test_a_corrupted_model_is_refused_in_one_line(
    corrupt: Callable[[Path], None],
    words: str,
    model: Path,
    seed: Path,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    corrupt(broken)
    for args in (["plan", str(broken), "-o", str(tmp_path / "plan")],
                 ["predict", str(broken), str(seed), "-o", str(tmp_path / "pred")]):  # fmt: skip
        done = gpsgpu(*args)
        if args[0] == "plan" and corrupt in (_rules_without_score, _rules_score, _truncated_rules):
            assert done.returncode == 0, done.stderr  # plan reads only the patterns
            continue
        assert done.returncode == 3, done.stderr
        assert words in one_error_line(done)
    assert not (tmp_path / "pred").exists()


def test_the_intact_model_still_plans_and_predicts(model: Path, seed: Path, tmp_path: Path) -> None:
    assert gpsgpu("plan", str(model), "-o", str(tmp_path / "plan")).returncode == 0
    done = gpsgpu(
        "predict", str(model), str(seed), "-o", str(tmp_path / "pred"), "--plan", str(tmp_path / "plan")
    )
    assert done.returncode == 0, done.stderr

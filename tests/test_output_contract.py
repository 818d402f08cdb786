"""The output contract and honest exit codes: -o never destroys an input or what gpsgpu did not write,
outputs are replaced only whole, stale temporaries of killed runs are cleaned, and every outcome has
its exit status with one line on stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpsgpu.errors import UsageError
from gpsgpu.io import atomic
from gpsgpu.io.outputs import check_output, written_by_gpsgpu

GPS_LINES = [
    {
        "ip": f"10.{i // 250}.{i % 250}.1",
        "p": port,
        "asn": 64500 + i % 7,
        "data": "SSH-2.0-OpenSSH_8.9" if port == 22 else "HTTP/1.1 200 OK\r\nServer: nginx",
        "fingerprint": "ssh" if port == 22 else "http",
        "w": 64240,
    }
    for i in range(400)
    for port in (22, 80 + i % 3)
]


def gpsgpu(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpsgpu", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def make_seed(folder: Path) -> Path:
    """A small GPS-schema seed scan ingested into ``folder/seed.parquet``."""
    records = folder / "seed.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in GPS_LINES))
    table = folder / "seed.parquet"
    done = gpsgpu("ingest", str(records), "-o", str(table))
    assert done.returncode == 0, done.stderr
    return table


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_seed(tmp_path_factory.mktemp("seed"))


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("gpsgpu: ") and "error" in line]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_a_folder_gpsgpu_did_not_write_is_refused_and_kept(seed: Path, tmp_path: Path) -> None:
    important = tmp_path / "important"
    important.mkdir()
    (important / "notes.txt").write_text("mine")
    done = gpsgpu("learn", str(seed), "-o", str(important))
    assert done.returncode == 2
    assert "not written by gpsgpu" in one_error_line(done)
    assert (important / "notes.txt").read_text() == "mine"
    forced = gpsgpu("learn", str(seed), "-o", str(important), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (important / "notes.txt").exists()
    assert written_by_gpsgpu(important)


def test_a_gpsgpu_output_is_replaced_without_force(seed: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    for _ in range(2):
        done = gpsgpu("learn", str(seed), "-o", str(model))
        assert done.returncode == 0, done.stderr
    table = tmp_path / "again.parquet"
    for _ in range(2):
        done = gpsgpu("ingest", str(seed), "-o", str(table))
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "make_args",
    [
        lambda seed, model: ["learn", str(seed), "-o", str(seed)],
        lambda seed, model: ["learn", str(seed), "-o", str(seed.parent)],
        lambda seed, model: ["plan", str(model), "-o", str(model)],
        lambda seed, model: ["predict", str(model), str(seed), "-o", str(model)],
        lambda seed, model: ["ingest", str(seed), "-o", str(seed)],
        lambda seed, model: ["ingest", str(seed), "-o", str(seed.with_name("x.parquet")), "--force"],
    ],
    ids=["learn-seed", "learn-parent", "plan", "predict", "ingest", "ingest-sidecar-ok"],
)
def test_an_output_never_points_at_an_input(make_args, seed: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "model"
    assert gpsgpu("learn", str(seed), "-o", str(model)).returncode == 0
    before = {p: p.read_bytes() for p in seed.parent.iterdir() if p.is_file()}
    args = make_args(seed, model)
    done = gpsgpu(*args)
    if args[-1] == "--force":  # a different output beside the input is fine
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2
    assert "input" in one_error_line(done)
    assert {p: p.read_bytes() for p in before} == before
    assert (model / "metadata.json").exists()


def test_rejects_and_metadata_beside_the_output_cannot_be_inputs(tmp_path: Path) -> None:
    records = tmp_path / "x.rejects.jsonl"
    records.write_text(json.dumps(GPS_LINES[0]) + "\n")
    with pytest.raises(UsageError, match="is the input"):
        check_output(tmp_path / "x.parquet", inputs=[records], derived=[records], folder=False)


def test_a_failed_ingest_keeps_the_previous_table(seed: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.parquet"
    assert gpsgpu("ingest", str(seed), "-o", str(table)).returncode == 0
    before = table.read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n" * 50 + json.dumps(GPS_LINES[0]) + "\n")
    done = gpsgpu("ingest", str(bad), "-o", str(table), "-f", "gps")
    assert done.returncode == 3
    assert table.read_bytes() == before
    assert table.with_name("t.metadata.json").exists()


def test_the_table_carries_its_metadata(seed: Path) -> None:
    import pyarrow.parquet as pq

    footer = pq.read_metadata(seed).metadata
    recorded = json.loads(footer[b"gpsgpu"])
    sidecar = json.loads(seed.with_name("seed.metadata.json").read_text())
    assert recorded["tool"] == "gpsgpu" and recorded["counts"] == sidecar["counts"]
    assert "created" not in recorded  # the same run writes the same bytes


def test_stale_temporaries_of_dead_writers_are_cleaned(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(dead.stdout)
    target = tmp_path / "model"
    stale_dir = tmp_path / f".model.{pid}.abcd1234.tmp"
    stale_dir.mkdir()
    (stale_dir / "half.parquet").write_bytes(b"x")
    live = tmp_path / f".model.{os.getpid()}.live0000.tmp"
    live.mkdir()
    moved_aside = tmp_path / f".model.old-{pid}"
    moved_aside.mkdir()
    (moved_aside / "metadata.json").write_text('{"tool": "gpsgpu"}')
    removed = atomic.clean_stale(target)
    assert stale_dir in removed and not stale_dir.exists()
    assert live.exists()  # this process is alive: its temporary is not stale
    # the writer died between its two renames: the earlier output comes back
    assert (target / "metadata.json").exists() and not moved_aside.exists()


def test_kill_9_during_a_write_leaves_the_earlier_output_and_the_next_run_cleans_up(
    seed: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    assert gpsgpu("learn", str(seed), "-o", str(model)).returncode == 0
    before = (model / "metadata.json").read_bytes()
    code = (
        "import sys, time; from gpsgpu.io.atomic import atomic_dir\n"
        f"with atomic_dir({str(model)!r}) as tmp:\n"
        "    (tmp / 'part').write_text('x'); print('ready', flush=True); time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert (model / "metadata.json").read_bytes() == before
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert gpsgpu("learn", str(seed), "-o", str(model)).returncode == 0
    assert not any(p.name.startswith(".model.") for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        (["learn", "--bogus"], 2, "No such option"),
        (["nosuch"], 2, "No such command"),
        (["learn"], 2, "Missing argument"),
        (["learn", "x", "-o", "y", "--top-k", "abc"], 2, "--top-k"),
        (["--log-file", "/nonexistent-dir/log", "stats", "x"], 2, "cannot write the log"),
        (["stats", "/nonexistent.parquet"], 3, "no such file"),
    ],
)
def test_usage_and_input_errors_are_one_line_with_their_status(
    args: list[str], status: int, words: str
) -> None:
    done = gpsgpu(*args)
    assert done.returncode == status, done.stderr
    assert words in one_error_line(done)


def test_an_unwritable_output_is_one_line(seed: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    done = gpsgpu("learn", str(seed), "-o", str(afile / "model"))
    assert done.returncode == 2 and "not a folder" in one_error_line(done)
    done = gpsgpu("learn", str(seed), "-o", "/proc/gpsgpu-model")
    assert done.returncode in (1, 2) and "/proc/gpsgpu-model" in one_error_line(done)


def test_ctrl_c_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "net"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpsgpu", "simulate", "-o", str(out), "--hosts", "3e6", "--truth", "never"],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # pragma: no cover - a very fast machine finished first
        pytest.skip("simulate finished before the interrupt")
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "gpsgpu: interrupted"
    assert not out.exists()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())

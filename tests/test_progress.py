"""gpsgpu.progress: drawn only on a terminal (or when forced), rate-limited, ending in a final line."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

import pytest

from gpsgpu import progress
from gpsgpu.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_enabled_follows_the_terminal_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.enabled(Tty()) is True
    assert progress.enabled(io.StringIO()) is False
    monkeypatch.setenv(progress.ENV, "0")
    assert progress.enabled(Tty()) is False
    monkeypatch.setenv(progress.ENV, "1")
    assert progress.enabled(io.StringIO()) is True
    monkeypatch.setenv(progress.ENV, "")
    closed = io.StringIO()
    closed.close()
    assert progress.enabled(closed) is False


def test_nothing_is_written_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.ENV, raising=False)
    out = io.StringIO()
    clock = Clock()
    with Progress("work", total=10, stream=out, clock=clock, interval=0) as bar:
        for _ in range(10):
            clock.now += 1
            bar.advance()
    assert out.getvalue() == ""


def test_phase_counts_elapsed_rate_and_time_left() -> None:
    out = io.StringIO()
    clock = Clock()
    bar = Progress("portdist peers: replay", total=1_000, unit="events", stream=out, clock=clock, show=True)
    clock.now += 2.0
    bar.advance(250)
    text = out.getvalue()
    assert text.startswith("\rgpsgpu: portdist peers: replay: 250/1,000 events (25%) 2.0 s, 125 events/s")
    assert "~6.0 s left" in text
    bar.note("word2vec k=10")
    clock.now += 2.0
    bar.update(500)
    assert "[word2vec k=10]: 500/1,000 events (50%) 4.0 s" in out.getvalue()
    bar.close()
    final = out.getvalue().rsplit("\r", 1)[-1]
    assert not final.startswith(" ")
    assert final.endswith("\n") and "500 events in 4.0 s (125 events/s)" in final


def test_redraws_are_rate_limited() -> None:
    out = io.StringIO()
    clock = Clock()
    bar = Progress("loop", total=10_000, stream=out, clock=clock, show=True, interval=0.5)
    for _ in range(10_000):
        clock.now += 0.001  # 10 s in all, 10,000 calls
        bar.advance()
    assert 15 <= bar.drawn <= 21
    assert out.getvalue().count("\r") == bar.drawn


def test_short_steps_leave_no_line_and_long_ones_a_final_one() -> None:
    out = io.StringIO()
    clock = Clock()
    with Progress("quick", total=3, stream=out, clock=clock, show=True, interval=0.5) as bar:
        bar.advance(3)
    assert out.getvalue() == ""
    with Progress("slow", total=3, stream=out, clock=clock, show=True, interval=0.5) as bar:
        clock.now += 1
        bar.advance(3)
    assert out.getvalue().endswith("gpsgpu: slow: 3 items in 1.0 s (3.00 items/s)\n")


def test_a_shorter_line_blanks_the_rest_of_the_longer_one() -> None:
    out = io.StringIO()
    clock = Clock()
    bar = Progress("x", stream=out, clock=clock, show=True, interval=0)
    bar.note("a long note that makes the line long")
    bar.note("")
    first, second = out.getvalue().split("\r")[1:3]
    assert len(second) >= len(first) and second.endswith(" ")


def test_bytes_and_unknown_totals() -> None:
    out = io.StringIO()
    clock = Clock()
    bar = Progress(
        "ingest a.pcap", total=10 << 20, unit="bytes", stream=out, clock=clock, show=True, interval=0
    )
    clock.now += 1
    bar.update(5 << 20)
    assert "5.0 MiB/10.0 MiB (50%) 1.0 s, 5.0 MiB/s" in out.getvalue()
    plain = Progress("epochs", unit="epochs", stream=out, clock=clock, show=True, interval=0)
    clock.now += 1
    plain.advance(2)
    assert out.getvalue().rstrip().endswith("epochs: 2 epochs 1.0 s, 2.00 epochs/s")
    assert "min" in progress._seconds(125) and "h" in progress._seconds(4000)


def test_heartbeat_redraws_without_advances() -> None:
    out = io.StringIO()
    with Progress("opaque call", stream=out, show=True, interval=0.01, heartbeat=True) as bar:
        deadline = time.monotonic() + 5
        while bar.drawn < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert bar.drawn >= 3
    # Nothing counted: the line shows the time only, and the final line says it is done.
    assert out.getvalue().split("\r")[1].startswith("gpsgpu: opaque call: 0.")
    assert re.search(r"\rgpsgpu: opaque call: done in [0-9.]+ s\n$", out.getvalue())


def test_the_context_manager_keeps_ingest_working() -> None:
    with progress.progress("ingest x", 100) as bar:
        bar.update(50)
        bar.advance(10)
    assert bar.done == 60 and bar.closed


def test_a_piped_command_writes_no_progress(tmp_path) -> None:
    # `portdist simulate` loops over days with a bar; piped, stderr holds only the summary line.
    done = subprocess.run(
        [
            *(sys.executable, "-m", "gpsgpu.cli", "portdist", "simulate", "-o", str(tmp_path / "d")),
            *("--probes-per-day", "2000", "--days", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "GPSGPU_PROGRESS": ""},
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr


def test_log_lines_do_not_land_on_a_progress_line() -> None:
    import logging

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        clock = Clock()
        with Progress("counting", total=4, stream=out, clock=clock, show=True, interval=0) as bar:
            bar.advance()
            logging.getLogger("gpsgpu.test").warning("a day counted")
            bar.advance()
        assert not handler.filters  # the guard leaves with the last bar
    finally:
        root.removeHandler(handler)
    lines = out.getvalue().split("\n")
    # The log line starts after the progress line was blanked: "\r<spaces>\r" then the message.
    assert any(line.endswith("\ra day counted") for line in lines)
    assert lines[-2].startswith("\r") and lines[-2].endswith("counting: 2 items in 0.0 s (0.00 items/s)")


def test_a_current_bar_is_advanced_from_deep_in_a_call() -> None:
    out = io.StringIO()
    assert progress.current_bar() is None
    with Progress("round 1", total=10, stream=out, show=True, interval=0) as bar, progress.current(bar):
        inner = progress.current_bar()
        assert inner is bar
        inner.advance(4)
    assert progress.current_bar() is None
    assert bar.done == 4

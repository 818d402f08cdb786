"""Progress of long steps on stderr: one line redrawn in place, only where someone is watching.

A step that runs for more than a moment shows its phase, ``done/total`` (with the share and the
time left when the total is known), the elapsed time and the rate, redrawn with ``\\r`` at most
every ``interval`` seconds, and ends with a final line that stays on the screen. Nothing is written
when stderr is not a terminal (pipes, CI, log files), so commands' output stays what their
summary lines say. ``GPSGPU_PROGRESS`` overrides the terminal test: ``0``/``off`` never draws,
``1``/``on`` always does (how the tests see the lines).

Commands report what they did in one summary line either way; progress only shows that work is
going on, how far it got and how fast.

Usage::

    with Progress("peers: replay", total=n, unit="events") as bar:
        for ...:
            bar.advance(1000)
            bar.note("word2vec k=10")

    with Progress("peers: word2vec", total=epochs, unit="epochs", heartbeat=True) as bar:
        ...  # one opaque call; the line still ticks the elapsed time
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, ClassVar

#: The environment variable that forces progress on (1) or off (0).
ENV = "GPSGPU_PROGRESS"
_OFF = ("0", "false", "no", "off", "never")
_ON = ("1", "true", "yes", "on", "always", "force")


def enabled(stream: IO[str] | None = None) -> bool:
    """Draw progress? ``GPSGPU_PROGRESS`` if set, else whether ``stream`` (stderr) is a terminal."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _count(value: float, unit: str) -> str:
    if unit == "bytes":
        for scale, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if value >= scale:
                return f"{value / scale:,.1f} {name}"
        return f"{value:,.0f} B"
    return f"{value:,.0f}" if float(value).is_integer() or value >= 100 else f"{value:,.2f}"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, s = divmod(round(s), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """One phase of work: ``done`` of ``total`` units, drawn on ``stream`` when :func:`enabled`.

    Parameters
    ----------
    phase : str
        What is being done, e.g. ``"portdist peers: replay"``; shown after ``gpsgpu: ``.
    total : float, optional
        Units in the whole phase (unknown: no share, no time left).
    unit : str
        ``"bytes"`` (shown as KiB/MiB/GiB) or a plural noun, e.g. ``"events"``.
    interval : float
        Least seconds between two redraws: a hot loop may call :meth:`advance` every item.
    heartbeat : bool
        Also redraw from a background thread every ``interval``, so the elapsed time moves while
        one long call (a library's training loop, a file write) gives no chance to advance.
    show : bool, optional
        Draw or not; default :func:`enabled` for ``stream``.
    stream : text stream, optional
        Default ``sys.stderr`` (looked up when drawing, so test captures see it).
    clock : callable
        Seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        phase: str,
        total: float | None = None,
        *,
        unit: str = "items",
        interval: float = 0.25,
        heartbeat: bool = False,
        show: bool | None = None,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.phase = phase
        self.total = total
        self.unit = unit
        self.done: float = 0
        self.interval = interval
        self._stream = stream
        self._clock = clock
        self.show = enabled(stream) if show is None else show
        self.start = clock()
        self._last = self.start
        self._width = 0
        self._note = ""
        self.drawn = 0
        self.closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.show:
            _LogGuard.attach(self)
        if self.show and heartbeat:
            self._thread = threading.Thread(target=self._beat, name="gpsgpu-progress", daemon=True)
            self._thread.start()

    # -- feeding -----------------------------------------------------------------------------------

    def advance(self, amount: float = 1) -> None:
        """``amount`` more units done (from any thread)."""
        with self._lock:
            self.done += amount
        if self.show:
            self._maybe_draw()

    def update(self, done: float, total: float | None = None) -> None:
        """``done`` units done so far (and a new ``total``, if given)."""
        self.done = done
        if total is not None:
            self.total = total
        if self.show:
            self._maybe_draw()

    def note(self, text: str) -> None:
        """A short detail shown after the phase, e.g. the metric being replayed."""
        self._note = text
        if self.show:
            self._maybe_draw()

    @property
    def elapsed(self) -> float:
        return self._clock() - self.start

    # -- drawing -----------------------------------------------------------------------------------

    def line(self, *, final: bool = False) -> str:
        """The text of the progress line (without ``\\r``)."""
        elapsed = max(self.elapsed, 0.0)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        head = f"gpsgpu: {self.phase}" + (f" [{self._note}]" if self._note and not final else "")
        unit = "" if self.unit == "bytes" else f" {self.unit}"
        done = _count(self.done, self.unit)
        per_s = f"{_count(rate, self.unit) if self.unit == 'bytes' else _rate(rate)}{unit}/s"
        if self.total is None and not self.done:  # a phase with nothing to count: time only
            return f"{head}: done in {_seconds(elapsed)}" if final else f"{head}: {_seconds(elapsed)}"
        if final:
            return f"{head}: {done}{unit} in {_seconds(elapsed)} ({per_s})"
        if self.total:
            share = min(self.done / self.total, 1.0)
            left = ""
            if rate > 0 and self.done < self.total:
                left = f", ~{_seconds((self.total - self.done) / rate)} left"
            total = _count(self.total, self.unit)
            return f"{head}: {done}/{total}{unit} ({share:.0%}) {_seconds(elapsed)}, {per_s}{left}"
        return f"{head}: {done}{unit} {_seconds(elapsed)}, {per_s}"

    def _maybe_draw(self) -> None:
        now = self._clock()
        if now - self._last >= self.interval:
            self._draw(now)

    def _draw(self, now: float | None = None, *, final: bool = False) -> None:
        with self._lock:
            if self.closed:
                return
            self._last = self._clock() if now is None else now
            text = self.line(final=final)
            columns = shutil.get_terminal_size((100, 24)).columns - 1
            if len(text) > columns > 20 and not final:
                text = text[: columns - 1] + "…"
            stream = self._stream if self._stream is not None else sys.stderr
            if final:  # blank the last drawn line, so the final one has no trailing spaces
                stream.write(f"\r{' ' * self._width}\r{text}\n")
            else:
                stream.write(f"\r{text}{' ' * max(self._width - len(text), 0)}")
            stream.flush()
            self._width = len(text)
            self.drawn += 1

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()

    # -- ending ------------------------------------------------------------------------------------

    def close(self, *, final: bool | None = None) -> None:
        """Stop; write the final line when anything was drawn (or ``final=True``)."""
        if self.closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.show and (self.drawn if final is None else final):
            self._draw(final=True)
        self.closed = True
        if self.show:
            _LogGuard.detach(self)

    def erase(self) -> None:
        """Blank the drawn line (before someone else writes to the stream); the next draw restores it."""
        with self._lock:
            if self._width and not self.closed:
                stream = self._stream if self._stream is not None else sys.stderr
                stream.write(f"\r{' ' * self._width}\r")
                stream.flush()
                self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_CURRENT: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("gpsgpu_progress", default=None)


@contextlib.contextmanager
def current(bar: Progress) -> Iterator[Progress]:
    """Make ``bar`` the bar that stages deep in a call advance (:func:`current_bar`), so a loop
    its caller owns (partitions of a predict round, say) shows progress without threading a
    callback through every layer in between."""
    token = _CURRENT.set(bar)
    try:
        yield bar
    finally:
        _CURRENT.reset(token)


def current_bar() -> Progress | None:
    """The bar set by :func:`current` in this context, if any (read it in the calling thread and
    hand it to worker threads: thread pools do not inherit context)."""
    return _CURRENT.get()


@contextlib.contextmanager
def progress(description: str, total: float | None = None, *, unit: str = "bytes") -> Iterator[Any]:
    """A :class:`Progress` as a context manager: ``update(completed)`` and ``advance(amount)``."""
    with Progress(description, total, unit=unit) as bar:
        yield bar


class _LogGuard(logging.Filter):
    """Erases the live progress lines before a log record is written to the same terminal, so a
    log line never lands on the end of a progress line."""

    bars: ClassVar[list[Progress]] = []
    guard: ClassVar[_LogGuard | None] = None

    def filter(self, record: logging.LogRecord) -> bool:
        for bar in list(self.bars):
            bar.erase()
        return True

    @classmethod
    def attach(cls, bar: Progress) -> None:
        if cls.guard is None:
            cls.guard = cls()
            for handler in logging.getLogger().handlers:
                handler.addFilter(cls.guard)
        cls.bars.append(bar)

    @classmethod
    def detach(cls, bar: Progress) -> None:
        if bar in cls.bars:
            cls.bars.remove(bar)
        if not cls.bars and cls.guard is not None:
            for handler in logging.getLogger().handlers:
                handler.removeFilter(cls.guard)
            cls.guard = None

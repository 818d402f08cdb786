"""Progress on stderr: a live bar when stderr is a terminal, nothing otherwise (pipes, CI, logs).

Commands report what they did in one summary line either way; the bar only shows that work is
going on and how fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any


class _Silent:
    def update(self, completed: float) -> None:
        pass

    def advance(self, amount: float = 1) -> None:
        pass


def enabled() -> bool:
    """A bar is drawn only on an interactive stderr, and never when GPSGPU_PROGRESS=0."""
    if os.environ.get("GPSGPU_PROGRESS", "").lower() in ("0", "false", "no", "off"):
        return False
    return sys.stderr.isatty()


@contextlib.contextmanager
def progress(description: str, total: float | None = None, *, unit: str = "bytes") -> Iterator[Any]:
    """Yield an object with ``update(completed)`` and ``advance(amount)``."""
    if not enabled():
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn()]
    columns += [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
    columns.append(TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)

        class _Task:
            def update(self, completed: float) -> None:
                bar.update(task, completed=completed)

            def advance(self, amount: float = 1) -> None:
                bar.advance(task, amount)

        yield _Task()

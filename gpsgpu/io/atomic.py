"""Atomic outputs: write to a temporary name beside the target, then rename over it.

A reader never sees a half-written file, and a failed or interrupted command leaves no output
behind (the temporary is removed). Temporaries carry the writer's process id, so a later run
removes those of writers that were killed (``kill -9`` skips every cleanup) and puts back an earlier
output that a killed writer had moved aside but not yet replaced.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _temp_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(target.name)}\.(?:(\d+)\.[^.]+\.tmp|old-(\d+))$")


_ANY_TEMP = re.compile(r"^\.(.+?)\.(?:\d+\.[^.]+\.tmp|old-\d+)$")


def target_of_temp(path: str | os.PathLike[str]) -> Path | None:
    """The output a temporary of this module stands for (``dir/.x.123.abc.tmp`` -> ``dir/x``), or None."""
    path = Path(path)
    match = _ANY_TEMP.match(path.name)
    return path.with_name(match.group(1)) if match else None


def clean_stale(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``target`` left by writers that died; return what was removed.

    An ``.old-PID`` of a dead writer is the previous complete output: when ``target`` itself is
    missing (the writer died between its two renames) it is put back instead of removed.
    """
    target = Path(target)
    parent = target.parent
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    removed = []
    pattern = _temp_pattern(target)
    for name in names:
        match = pattern.match(name)
        if match is None:
            continue
        pid = int(match.group(1) or match.group(2))
        if _alive(pid):
            continue
        path = parent / name
        if match.group(2) and not target.exists():
            os.replace(path, target)
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; rename it to ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    fd, tmp_name = tempfile.mkstemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w", **kwargs: object) -> Iterator[IO]:
    """``open()`` a temporary file that replaces ``target`` atomically when the block ends cleanly."""
    if "w" not in mode:
        raise ValueError("atomic_open is for writing")
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as handle:  # type: ignore[call-overload]
        yield handle


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder; it replaces the folder ``target`` when the block ends cleanly.

    An existing ``target`` is moved aside first and removed only after the new one is in place.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)

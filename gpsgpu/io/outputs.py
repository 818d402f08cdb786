"""The output contract: ``-o`` never destroys what gpsgpu did not write, and never an input.

Every command checks its output path before it starts work: a path that does not exist, an empty
folder, or an earlier gpsgpu output (a folder with gpsgpu's ``metadata.json``, a file with its
``NAME.metadata.json`` sidecar or gpsgpu's key in its Parquet footer) may be replaced; anything else
is refused with one line unless the user says ``--force``. An output that is, contains, or is
derived into one of the command's inputs is refused even with ``--force``. The replacement itself is
atomic (:mod:`gpsgpu.io.atomic`): the earlier output stays until the new one is complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from gpsgpu.errors import UsageError
from gpsgpu.io.metadata import metadata_path_for

#: Parquet footer key under which gpsgpu records what wrote a table (see io/parquet.py).
PARQUET_METADATA_KEY = b"gpsgpu"


def _is_gpsgpu_metadata(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("tool") == "gpsgpu"


def _has_gpsgpu_footer(path: Path) -> bool:
    try:
        import pyarrow.parquet as pq

        metadata = pq.read_metadata(path).metadata or {}
    except Exception:  # not Parquet, unreadable, truncated: not ours as far as we can tell
        return False
    return PARQUET_METADATA_KEY in metadata


def written_by_gpsgpu(path: str | os.PathLike[str], *, folder_entries: Iterable[str] = ()) -> bool:
    """Whether replacing ``path`` loses nothing gpsgpu did not write.

    ``folder_entries``: names that a folder output of this kind may hold without a metadata.json yet
    (a ``portdist build`` interrupted before its first metadata write).
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return True
    if path.is_dir():
        entries = [e for e in os.listdir(path) if not e.startswith(".")]
        if not entries or _is_gpsgpu_metadata(path / "metadata.json"):
            return True
        allowed = set(folder_entries)
        return bool(allowed) and all(e in allowed for e in entries)
    if path.is_file():
        return (
            path.stat().st_size == 0
            or _is_gpsgpu_metadata(metadata_path_for(path))
            or _has_gpsgpu_footer(path)
        )
    return False  # a device, a socket, a dangling link: never ours


def _resolved(path: str | os.PathLike[str]) -> Path | None:
    text = os.fspath(path)
    if not text or text == "-":
        return None
    try:
        return Path(text).expanduser().resolve()
    except (OSError, RuntimeError):
        return None


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output(
    output: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    derived: Iterable[str | os.PathLike[str]] = (),
    force: bool = False,
    folder: bool = True,
    folder_entries: Iterable[str] = (),
    option: str = "-o",
) -> None:
    """Refuse (:class:`UsageError`, one line) an output that would destroy data; see the module.

    ``derived``: further paths the command writes beside ``output`` (metadata, rejects), which must
    not be inputs either. ``folder``: the output is a folder (else a file).
    """
    target = _resolved(output)
    if target is None:
        return
    written = [target, *(p for p in (_resolved(d) for d in derived) if p is not None)]
    for given in inputs:
        if given is None:
            continue
        source = _resolved(given)
        if source is None:
            continue
        for path in written:
            if _inside(source, path) or source == path:
                what = "is" if source == path else "contains"
                raise UsageError(
                    f"{option} {output}: {what} the input {given}; writing there would destroy it, "
                    "choose another output path"
                )
    if target.exists() and target.is_dir() != folder:
        kind = "a folder" if target.is_dir() else "a file"
        wanted = "folder" if folder else "file"
        raise UsageError(f"{option} {output}: is {kind}; give the {wanted} to write")
    if target.exists() and not target.is_dir() and not target.is_file():
        raise UsageError(f"{option} {output}: is not a regular file (a device or a socket); not replacing it")
    if not force and not written_by_gpsgpu(target, folder_entries=folder_entries):
        raise UsageError(
            f"{option} {output}: exists and was not written by gpsgpu (no gpsgpu metadata); "
            "choose another path, or add --force to replace it"
        )
    _check_writable(target.parent, option, output)


def _check_writable(parent: Path, option: str, output: str | os.PathLike[str]) -> None:
    """Fail now, in one line, when the output's folder cannot be made or written (not after the work)."""
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {output}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {output}: cannot write in {existing} (permission denied)")

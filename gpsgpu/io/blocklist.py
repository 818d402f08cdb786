"""Reading blocklist files (ZMap's format) into a :class:`gpsgpu.blocklist.Blocklist`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gpsgpu.blocklist import Blocklist, BlocklistSyntaxError
from gpsgpu.errors import UsageError

log = logging.getLogger(__name__)


def read_blocklist(path: str | os.PathLike[str], *, what: str = "--blocklist") -> Blocklist:
    """Parse a ZMap blocklist file: one IPv4 address or CIDR per line, ``#`` comments (``what``
    names the file in errors)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise UsageError(f"{what} {path}: cannot read it ({exc})") from None
    try:
        blocklist = Blocklist.from_lines(text.splitlines())
    except BlocklistSyntaxError as exc:
        raise UsageError(f"{what} {path}: {exc}") from None
    if blocklist.n_ipv6_skipped:
        log.warning(
            "%s %s: skipped %d IPv6 entries (gpsgpu plans IPv4 only)", what, path, blocklist.n_ipv6_skipped
        )
    return blocklist


def effective_blocklist(
    paths: list[str | os.PathLike[str]] | None = None, *, builtin: bool = True
) -> Blocklist:
    """The built-in IANA blocklist (unless ``builtin`` is false) plus every file in ``paths``."""
    blocklist = Blocklist.default() if builtin else Blocklist.empty()
    for path in paths or []:
        blocklist = blocklist.union(read_blocklist(path))
    return blocklist

"""Reading an IP -> ASN routing table file (pyasn's IPASN format, optionally gzip/zstd)."""

from __future__ import annotations

import os

from gpsgpu.asn import AsnSyntaxError, AsnTable
from gpsgpu.errors import UsageError
from gpsgpu.io.sources import open_input, read_all


def read_asn_table(path: str | os.PathLike[str]) -> AsnTable:
    with open_input(path) as source:
        data = read_all(source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--asn-file {path}: not UTF-8 text ({exc})") from None
    try:
        table = AsnTable.from_lines(text.splitlines())
    except AsnSyntaxError as exc:
        raise UsageError(f"--asn-file {path}: {exc}") from None
    if len(table) == 0:
        raise UsageError(f"--asn-file {path}: no IPv4 prefixes in it")
    return table

"""Phase 1b: the priors scanning plan (``GPS_REFERENCE.md`` §4) and its blocklist cut.

The patterns table is grouped by ``(neededP, /step prefix of ip)``; a group of ``c`` rows is kept
when ``c / 2**(32 - step) > hitrate``. Rows are ordered by ``c`` descending; the reference leaves
ties in no particular order, so gpsgpu fixes one: then ``neededP`` ascending, then ``prefix``
ascending (the DuckDB oracle orders the same way). Each row costs ``2**(32 - step)`` probes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gpsgpu import schema
from gpsgpu.backend import to_numpy
from gpsgpu.blocklist import Blocklist
from gpsgpu.ops import cpu

ALLOWED = "allowed"
N_ALLOWED = "n_allowed"


def probes_per_row(step: int) -> int:
    """Probes one plan row costs: every address of a ``/step`` prefix."""
    return 1 << (32 - step)


def plan_priors(patterns: Any, /, *, step: int, hitrate: float) -> pd.DataFrame:
    """The plan rows of a patterns frame.

    Parameters
    ----------
    patterns : frame
        ``ip uint32, neededP uint16`` (other columns ignored), pandas or cuDF.
    step : int
        Prefix length of a plan row (``Step_Size``), 0..32.
    hitrate : float
        Keep groups with ``c / 2**(32 - step) > hitrate``.

    Returns
    -------
    pandas.DataFrame
        ``neededP uint16, prefix uint32, c int64`` in plan order (``c`` desc, port, prefix).
    """
    if not 0 <= step <= 32:
        raise ValueError(f"step must be within 0..32, not {step}")
    ip = np.asarray(to_numpy(patterns[schema.IP]), dtype=np.uint32)
    port = np.asarray(to_numpy(patterns[schema.NEEDED_P]), dtype=np.uint16)
    # One sortable key per row, (port, network number): 32 bits wide up to /16, else 64.
    wide = np.uint64 if step > 16 else np.uint32
    network = (ip >> np.uint32(32 - step)).astype(wide) if step else np.zeros(ip.size, dtype=wide)
    key = (port.astype(wide) << wide(step)) | network
    groups, counts = cpu.count_keys(key)
    keep = counts / float(probes_per_row(step)) > hitrate
    groups, counts = groups[keep], counts[keep].astype(np.int64)
    g_port = (groups >> wide(step)).astype(np.uint16)
    g_network = (groups & wide((1 << step) - 1)).astype(np.uint64)
    g_prefix = (g_network << np.uint64(32 - step)).astype(np.uint32) if step else g_network.astype(np.uint32)
    # Groups are sorted by (port, prefix) already; a stable sort on -c keeps that as the tie order.
    order = np.argsort(-counts, kind="stable")
    return pd.DataFrame(
        {schema.NEEDED_P: g_port[order], schema.PREFIX: g_prefix[order], schema.N_PATTERNS: counts[order]}
    )


def cut_blocklisted(plan: pd.DataFrame, /, *, step: int, blocklist: Blocklist) -> pd.DataFrame:
    """Plan rows minus blocklisted space: rows wholly blocklisted are dropped, the others get the
    CIDRs they may scan.

    Parameters
    ----------
    plan : pandas.DataFrame
        ``neededP uint16, prefix uint32, c int64`` (from :func:`plan_priors`).

    Returns
    -------
    pandas.DataFrame
        The kept rows, in plan order, plus ``allowed`` (list of CIDR strings) and ``n_allowed``
        (int64, addresses in them).
    """
    prefix = plan[schema.PREFIX].to_numpy(np.uint32)
    size = probes_per_row(step)
    first = prefix.astype(np.int64)
    last = first + size - 1
    covered = np.zeros(prefix.size, dtype=bool)
    overlapping = np.zeros(prefix.size, dtype=bool)
    if len(blocklist) and prefix.size:
        starts, ends = blocklist.starts.astype(np.int64), blocklist.ends.astype(np.int64)
        # The interval starting at or before `first` covers the row if it reaches `last`; any
        # interval starting at or before `last` overlaps it if it reaches `first`.
        at_first = np.searchsorted(starts, first, side="right") - 1
        covered = (at_first >= 0) & (ends[np.maximum(at_first, 0)] >= last)
        at_last = np.searchsorted(starts, last, side="right") - 1
        overlapping = (at_last >= 0) & (ends[np.maximum(at_last, 0)] >= first)
    kept = plan.loc[~covered].reset_index(drop=True)
    whole = [f"{ip}/{step}" for ip in schema.ip_to_str(prefix[~covered]).tolist()]
    allowed: list[list[str]] = [[cidr] for cidr in whole]
    n_allowed = np.full(len(kept), size, dtype=np.int64)
    for i in np.flatnonzero(overlapping[~covered]).tolist():
        cidrs = blocklist.allowed_cidrs(int(kept[schema.PREFIX].iat[i]), step)
        allowed[i] = cidrs
        n_allowed[i] = sum(1 << (32 - int(c.rsplit("/", 1)[1])) for c in cidrs)
    kept[ALLOWED] = allowed
    kept[N_ALLOWED] = n_allowed
    return kept

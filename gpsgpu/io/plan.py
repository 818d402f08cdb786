"""``PLAN/``: the priors plan as the reference writes it, plus what ZMap needs to run it.

- ``priors_scan_<step>.csv``: ``neededP,a.b.c.d/step`` lines, no header, in plan order (the
  reference's file; a row partly blocklisted is still listed whole here, the allowlists below
  leave the blocklisted part out);
- ``zmap/<port>.txt``: ZMap allowlist (``-w``) of each port: the CIDRs of its plan rows minus
  blocklisted space;
- ``blocklist.txt``: the effective blocklist (built-in IANA ranges + ``--blocklist`` files; a tail
  plan, ``skips_known``, adds the addresses already known live in its /24s), for ``zmap -b``;
- ``commands.sh``: one ZMap command line per port, in plan order (nothing is executed);
- ``metadata.json`` (written by the pipeline).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gpsgpu import schema
from gpsgpu.blocklist import Blocklist
from gpsgpu.io.atomic import atomic_open
from gpsgpu.plan.priors import ALLOWED

#: (port, CIDR) lines, blocklists cut: exactly the pairs to scan.
ROWS_FILE = "rows.csv"
#: The blocklist a plan was made with (IANA + the user's files), when blocklist.txt holds more.
SCOPE_BLOCKLIST = "scope-blocklist.txt"


def read_plan_blocklist(directory: str | os.PathLike[str]) -> Blocklist:
    """The blocklist a ``PLAN/`` folder was made with (IANA + the user's files), which binds the
    predictions made from its scan."""
    from gpsgpu.errors import InputError
    from gpsgpu.io.blocklist import read_blocklist

    directory = Path(directory)
    for name in (SCOPE_BLOCKLIST, "blocklist.txt"):
        if (directory / name).is_file():
            return read_blocklist(directory / name, what=f"--plan {directory}:")
    raise InputError(f"--plan {directory}: no blocklist.txt; not a plan folder written by 'gpsgpu plan'")


def priors_scan_name(step: int) -> str:
    return f"priors_scan_{step}.csv"


def write_plan(
    plan: pd.DataFrame,
    directory: str | os.PathLike[str],
    *,
    step: int,
    blocklist: Blocklist,
    rate: int,
    zmap: str = "zmap",
    skips_known: bool = False,
    scope: Blocklist | None = None,
) -> dict[str, str]:
    """Write the plan files into ``directory``; returns their names by role.

    Parameters
    ----------
    plan : pandas.DataFrame
        ``neededP uint16, prefix uint32, c int64, allowed list[str]`` in plan order
        (:func:`gpsgpu.plan.cut_blocklisted`).
    """
    directory = Path(directory)
    csv_name = priors_scan_name(step)
    ports = plan[schema.NEEDED_P].to_numpy()
    prefixes = schema.ip_to_str(plan[schema.PREFIX].to_numpy()).tolist() if len(plan) else []
    with atomic_open(directory / csv_name, "w", encoding="ascii", newline="\n") as handle:
        handle.writelines(
            f"{int(port)},{prefix}/{step}\n" for port, prefix in zip(ports, prefixes, strict=True)
        )
    with atomic_open(directory / "blocklist.txt", "w", encoding="ascii", newline="\n") as handle:
        handle.write(
            "# gpsgpu: built-in IANA special-purpose ranges plus --blocklist files"
            + (" plus the hosts already known live in the plan's /24s\n" if skips_known else "\n")
        )
        handle.writelines(f"{line}\n" for line in blocklist.to_lines())
    if skips_known and scope is not None:
        # blocklist.txt also skips hosts already known live (ZMap need not probe them again); what
        # later steps must stay out of is the IANA ranges plus the user's files alone.
        with atomic_open(directory / SCOPE_BLOCKLIST, "w", encoding="ascii", newline="\n") as handle:
            handle.write("# gpsgpu: built-in IANA special-purpose ranges plus --blocklist files\n")
            handle.writelines(f"{line}\n" for line in scope.to_lines())
    # rows.csv: exactly what to scan, blocklists cut, in plan order (priors_scan_<step>.csv is the
    # reference's record of the plan, whose rows may overlap reserved space).
    allowed = plan[ALLOWED].tolist()
    counts = np.fromiter((len(a) for a in allowed), np.int64, len(allowed))
    write_rows(
        directory,
        np.repeat(np.asarray(ports, np.uint16), counts),
        pa.array([cidr for row in allowed for cidr in row], pa.string()),
        rate=rate,
        zmap=zmap,
        title="gpsgpu plan: the priors scan",
        then='feed them to LZR/ZGrab2, then to "gpsgpu predict"',
    )
    return {
        "priors_scan": csv_name,
        "allowlists": "zmap/",
        "blocklist": "blocklist.txt",
        "rows": ROWS_FILE,
        **({"scope_blocklist": SCOPE_BLOCKLIST} if skips_known and scope is not None else {}),
        "commands": "commands.sh",
    }


def write_rows(
    directory: str | os.PathLike[str],
    ports: np.ndarray,
    cidrs: pa.Array,
    *,
    rate: int,
    zmap: str = "zmap",
    title: str,
    then: str,
) -> None:
    """``rows.csv`` (``port,cidr`` lines in order), ``zmap/<port>.txt`` allowlists and ``commands.sh``
    (one ZMap run per port, in order of first appearance; ``-b blocklist.txt`` must sit beside them).

    ``ports`` and ``cidrs`` (strings such as ``10.1.0.0/16``): the pairs in scan order, blocklisted
    space already cut.
    """
    from gpsgpu.io.predictions import text_lines

    directory = Path(directory)
    ports = np.asarray(ports, np.uint16)
    port_text = pc.cast(pa.array(ports), pa.string())
    with atomic_open(directory / ROWS_FILE, "wb") as handle:
        handle.write(text_lines(pc.binary_join_element_wise(port_text, cidrs, ",")))
    first_seen = np.unique(ports, return_index=True)[1]
    order = ports[np.sort(first_seen)]  # ports in plan order
    by_port = np.argsort(ports, kind="stable")
    lo = np.searchsorted(ports[by_port], order)
    hi = np.searchsorted(ports[by_port], order, side="right")
    for port, a, b in zip(order.tolist(), lo.tolist(), hi.tolist(), strict=True):
        with atomic_open(directory / "zmap" / f"{port}.txt", "wb") as handle:
            handle.write(text_lines(cidrs.take(pa.array(by_port[a:b]))))
    script = [
        "#!/bin/sh",
        f"# {title}, one ZMap run per port (review, then run this script yourself).",
        f"# Results land in results/<port>.csv; {then}.",
        "set -eu",
        'cd "$(dirname "$0")"',
        "mkdir -p results",
    ]
    script += [
        " ".join(
            [
                shlex.quote(zmap),
                f"-p {port}",
                f"-w zmap/{port}.txt",
                "-b blocklist.txt",
                f"-r {int(rate)}",
                # saddr alone (ZMap's default) would lose which port answered
                "-O csv -f saddr,sport",
                f"-o results/{port}.csv",
            ]
        )
        for port in order.tolist()
    ]
    with atomic_open(directory / "commands.sh", "w", encoding="ascii", newline="\n") as handle:
        handle.write("\n".join(script) + "\n")
    os.chmod(directory / "commands.sh", 0o755)

"""The parameters that, with the random seed, fix a simulated Internet completely."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from gpsgpu.errors import InputError, UsageError

#: Bumped whenever a change to :mod:`gpsgpu.sim` changes what the same parameters generate.
SIM_VERSION = 1

#: Default number of responsive hosts of ``gpsgpu simulate``.
DEFAULT_HOSTS = 1_000_000

#: ``port_spread`` of today's simulator (``--port-spread default``).
DEFAULT_PORT_SPREAD = 1.0
#: ``--port-spread talk``: closest to the talk's 5% on the top 10 ports and 63% missed by the top 7.6%
#: (5.4% and 63.6% on 2e5 hosts, seed 7; bench/RESULTS.md "Simulator port spread").
TALK_PORT_SPREAD = 20.0
#: Largest ``port_spread``: at 100, 99% of hosts have moved to the tail already.
MAX_PORT_SPREAD = 100.0

#: Names ``--port-spread`` accepts besides numbers.
PORT_SPREAD_NAMES = {"default": DEFAULT_PORT_SPREAD, "talk": TALK_PORT_SPREAD}


def parse_port_spread(value: float | str) -> float:
    """``--port-spread``: a number within 1..:data:`MAX_PORT_SPREAD`, ``default`` (1) or ``talk``."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in PORT_SPREAD_NAMES:
            return PORT_SPREAD_NAMES[name]
        try:
            value = float(name)
        except ValueError:
            raise UsageError(
                f"--port-spread must be a number within 1..{MAX_PORT_SPREAD:g}, 'default' or 'talk', "
                f"not {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"--port-spread must be a number, not {value!r}")
    spread = float(value)
    if not math.isfinite(spread) or not DEFAULT_PORT_SPREAD <= spread <= MAX_PORT_SPREAD:
        raise UsageError(f"--port-spread must be within 1..{MAX_PORT_SPREAD:g}, not {value}")
    return spread


@dataclasses.dataclass(frozen=True)
class SimParams:
    """A simulated Internet: ``(params, seed)`` -> every service of every address, on demand.

    Attributes
    ----------
    hosts : expected number of responsive hosts (the universe of /16s is sized to hold them).
    seed : the random seed; every random quantity is a hash of it.
    day : the day of the snapshot; churn moves a share of hosts and random ports from day to day.
    min_prefixes : the universe has at least this many /16s (smaller populations are spread thinner,
        so a small simulation still has many networks and ASes).
    host_lifetime_days : mean number of days an address keeps the same host (exponential).
    port_lifetime_days : mean number of days a random-port device keeps its port.
    port_ranking : ``builtin``, or ``nmap`` to order the head of the high-port tail by the open
        frequencies of ``/usr/share/nmap/nmap-services`` (read at run time when installed).
    port_spread : how spread services are over the port space, 1 (today's simulator) to 100. At
        ``s``, the high-port tail's Zipf head is flattened (offset ``300 s``, floor ``1e-5 s``) and
        a share ``1 - 1/s`` of hosts moves its services (random-port ones aside) to ports of that
        tail, one per (/16, family, model, slot); see
        :meth:`gpsgpu.sim.internet.SimInternet._spread_ports`. :data:`TALK_PORT_SPREAD` comes
        closest to the GPS talk's figures.
    version : :data:`SIM_VERSION` of the generator that wrote these parameters.
    """

    hosts: int = DEFAULT_HOSTS
    seed: int = 0
    day: int = 0
    min_prefixes: int = 16
    host_lifetime_days: float = 120.0
    port_lifetime_days: float = 30.0
    port_ranking: str = "builtin"
    port_spread: float = DEFAULT_PORT_SPREAD
    version: int = SIM_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.hosts, bool) or not isinstance(self.hosts, int | float):
            raise UsageError(f"--hosts must be a number, not {self.hosts!r}")
        if not math.isfinite(float(self.hosts)) or self.hosts < 1 or float(self.hosts) != int(self.hosts):
            raise UsageError(f"--hosts must be a positive whole number, not {self.hosts}")
        object.__setattr__(self, "hosts", int(self.hosts))
        if self.hosts > 400_000_000:
            raise UsageError(
                f"--hosts {self.hosts:,} is more than the simulated IPv4 space holds (400,000,000)"
            )
        if not 0 <= int(self.seed) < 2**63:
            raise UsageError(f"--seed must be within 0..2**63-1, not {self.seed}")
        if int(self.day) < 0:
            raise UsageError(f"--day must be 0 or more, not {self.day}")
        if not 1 <= int(self.min_prefixes) <= 65536:
            raise UsageError(f"min_prefixes must be within 1..65536, not {self.min_prefixes}")
        for name in ("host_lifetime_days", "port_lifetime_days"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 1.0:
                raise UsageError(f"{name} must be at least 1 day, not {value}")
        if self.port_ranking not in ("builtin", "nmap"):
            raise UsageError(f"port_ranking must be 'builtin' or 'nmap', not {self.port_ranking!r}")
        # A float, so that parameters read back from JSON (2 or 2.0) compare and hash alike.
        object.__setattr__(self, "port_spread", parse_port_spread(self.port_spread))
        if self.version != SIM_VERSION:
            raise InputError(
                f"these simulation parameters are of generator version {self.version}; this gpsgpu "
                f"generates version {SIM_VERSION} and would not reproduce them"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SimParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown simulation parameters: {', '.join(unknown)}")
        return cls(**values)


PARAMS_FILE = "params.json"


def write_params(params: SimParams, folder: str | os.PathLike[str], extra: dict[str, Any]) -> Path:
    """Write ``params.json``: the parameters plus the scan settings (``extra``) that regenerate a run."""
    from gpsgpu.io.atomic import atomic_open

    path = Path(folder) / PARAMS_FILE
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump({"sim": params.to_dict(), **extra}, handle, indent=2)
        handle.write("\n")
    return path


def read_params(folder: str | os.PathLike[str]) -> tuple[SimParams, dict[str, Any]]:
    """Read ``NET/params.json`` back: the :class:`SimParams` and the other recorded settings."""
    folder = Path(folder)
    path = folder / PARAMS_FILE if folder.is_dir() else folder
    if not path.exists():
        raise InputError(f"{folder}: no {PARAMS_FILE}; is this a folder written by 'gpsgpu simulate'?")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        params = SimParams.from_dict(document["sim"])
    except (ValueError, KeyError, TypeError) as exc:  # bad JSON, bad UTF-8, missing or odd fields
        raise InputError(f"{path}: not a simulation parameters file ({type(exc).__name__})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
    return params, {k: v for k, v in document.items() if k != "sim"}

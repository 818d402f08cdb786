"""A simulated Internet and a simulated scanner: the built-in data to learn from and to be judged on.

:class:`SimInternet` generates every service of any address as a pure function of
:class:`SimParams` and the seed (counter-based hashing, NumPy or CuPy, identical results);
:class:`SimScanner` answers scans of ``(port, prefix)`` plan rows and probes of ``ip:port`` lists
from it, counting probes and never probing blocklisted space.
"""

from __future__ import annotations

from gpsgpu.sim.internet import ServiceArrays, SimInternet
from gpsgpu.sim.params import SIM_VERSION, SimParams, read_params, write_params

__all__ = ["SIM_VERSION", "ServiceArrays", "SimInternet", "SimParams", "read_params", "write_params"]

"""The simulated Internet generated in partitions of the universe, in one process or on Dask workers.

A :class:`~gpsgpu.sim.internet.SimInternet` is a pure function of its parameters, the seed and the
address, so the universe's /16s (ascending) can be cut into contiguous blocks, each block generated
alone (on any worker, in any order) and the blocks' outputs concatenated in block order: every
service of every address comes out the same, in the same ``(ip, port)`` order, for any number of
blocks and workers. The blocks run through a :class:`~gpsgpu.distributed.Mapper`.

A block task returns what the command needs of it: the ground truth's services, the seed scan's
services (the truth's rows of sampled, non-blocklisted addresses: the same rows a seed scan of those
addresses generates), the number of sampled addresses and, optionally, the seed (and truth) rendered
as Arrow tables (banners are rendered on the host, the slowest step, so workers share it).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from gpsgpu.backend import Backend
from gpsgpu.blocklist import Blocklist
from gpsgpu.distributed import SERIAL, Mapper, free_device_pools, retry_on_oom
from gpsgpu.sim.internet import _FIELDS, ServiceArrays, SimInternet, _empty_arrays
from gpsgpu.sim.params import SimParams

#: /16s a block task generates at once (4,194,304 addresses with 64): the memory of one batch.
BATCH_PREFIXES = 16

#: /16s per block (one Dask task) at the first attempt; halved on each out-of-memory retry.
PREFIXES_PER_BLOCK = 64


@dataclass(frozen=True)
class Block:
    """What one block of the universe holds (see the module).

    Attributes
    ----------
    truth : ServiceArrays or None
        Every service of the block (``None`` unless asked for).
    seed : ServiceArrays or None
        The seed scan's services of the block (``None`` without a seed fraction).
    n_sampled : int
        Addresses of the block in the seed sample (blocklisted ones left out).
    seed_table, truth_table : pyarrow.Table or None
        ``seed`` and ``truth`` rendered in the services schema, when asked for.
    """

    truth: ServiceArrays | None
    seed: ServiceArrays | None
    n_sampled: int
    seed_table: pa.Table | None = None
    truth_table: pa.Table | None = None


@functools.lru_cache(maxsize=4)
def internet_for(params: SimParams, backend: str) -> SimInternet:
    """The :class:`SimInternet` of ``params`` on ``backend``, built once per process (per worker)."""
    return SimInternet(params, Backend(backend))


@functools.lru_cache(maxsize=1)
def _blocklist() -> Blocklist:
    return Blocklist.default()


def universe_blocks(internet: SimInternet, n_blocks: int) -> list[np.ndarray]:
    """The universe's /16 networks (uint32, ascending) in ``n_blocks`` contiguous blocks (none empty)."""
    nets = internet.prefixes
    n = max(1, min(int(n_blocks), int(nets.size)))
    return [block for block in np.array_split(nets, n) if block.size]


def first_block_count(internet: SimInternet, mapper: Mapper = SERIAL) -> int:
    """Blocks of the first attempt: :data:`PREFIXES_PER_BLOCK` /16s each, at least two per worker."""
    by_size = math.ceil(internet.n_prefixes / PREFIXES_PER_BLOCK)
    return max(by_size, 2 * mapper.n_workers if mapper.distributed else 1)


def generate_block(
    prefixes: np.ndarray,
    /,
    *,
    params: SimParams,
    backend: str,
    seed_fraction: float | None = None,
    want_truth: bool = True,
    render_seed: bool = False,
    render_truth: bool = False,
) -> Block:
    """Generate the services of the /16s ``prefixes`` (a :class:`Block`); a :class:`Mapper` task.

    Parameters
    ----------
    prefixes : uint32 host array of /16 network addresses, ascending.
    params, backend : the simulated Internet and where to generate it.
    seed_fraction : the seed scan's sample of addresses (``None``: no seed).
    want_truth : return the block's ground truth (else only the seed and its count).
    render_seed, render_truth : also return the seed / truth as Arrow tables (banners rendered).
    """
    internet = internet_for(params, backend)
    xp = internet.xp
    offsets = xp.arange(65536, dtype=xp.uint32)
    truths: list[ServiceArrays] = []
    seeds: list[ServiceArrays] = []
    n_sampled = 0
    for i in range(0, prefixes.size, BATCH_PREFIXES):
        chunk = xp.asarray(prefixes[i : i + BATCH_PREFIXES].astype(np.uint32))
        ips = (chunk[:, None] + offsets[None, :]).ravel()
        services = internet.services_of(ips) if want_truth else None
        if services is not None:
            truths.append(services)
        if seed_fraction is not None:
            sample = ips[internet.seed_mask(ips, seed_fraction)]
            sample = sample[~_blocklist().contains(sample)]
            n_sampled += int(sample.shape[0])
            if services is None:
                seeds.append(internet.services_of(sample))
            else:
                # The truth's rows of the sampled addresses: what generating them again gives
                # (services are a pure function of the address), without generating them twice.
                ip = services.ip
                in_seed = internet.seed_mask(ip, seed_fraction) & ~_blocklist().contains(ip)
                seeds.append(services.take(xp.flatnonzero(in_seed)))
    truth = _concat(xp, truths) if want_truth else None
    seed = _concat(xp, seeds) if seed_fraction is not None else None
    return Block(
        truth=truth,
        seed=seed,
        n_sampled=n_sampled,
        seed_table=internet.to_arrow(seed) if render_seed and seed is not None else None,
        truth_table=internet.to_arrow(truth) if render_truth and truth is not None else None,
    )


def _concat(xp: Any, parts: list[ServiceArrays]) -> ServiceArrays:
    if not parts:
        return _empty_arrays(xp)
    return parts[0] if len(parts) == 1 else ServiceArrays.concat(xp, parts)


def generate_universe(
    internet: SimInternet,
    /,
    *,
    mapper: Mapper = SERIAL,
    seed_fraction: float | None = None,
    want_truth: bool = True,
    render_seed: bool = False,
    render_truth: bool = False,
    what: str = "simulate",
) -> list[Block]:
    """Every block of ``internet``'s universe, in order (see :func:`generate_block`).

    Blocks run through ``mapper`` (in this process or on Dask workers); an out-of-memory error
    reruns them with twice the blocks, telling the user. The blocks' concatenation does not depend
    on the number of blocks or workers.
    """
    params = internet.params
    backend = internet.backend.value
    shared = {
        "params": params,
        "backend": backend,
        "seed_fraction": seed_fraction,
        "want_truth": want_truth,
        "render_seed": render_seed,
        "render_truth": render_truth,
    }

    def stage(n_blocks: int) -> list[Block]:
        return mapper.map(generate_block, universe_blocks(internet, n_blocks), **shared)

    return retry_on_oom(stage, first_block_count(internet, mapper), what=what, on_retry=free_device_pools)


def concat_truth(internet: SimInternet, blocks: list[Block]) -> ServiceArrays:
    """The ground truth of every block, in order, on ``internet``'s backend."""
    xp = internet.xp
    parts = [_on(xp, b.truth) for b in blocks if b.truth is not None]
    return _concat(xp, parts)


def concat_seed(internet: SimInternet, blocks: list[Block]) -> ServiceArrays:
    """The seed scan of every block, in order, on ``internet``'s backend."""
    xp = internet.xp
    return _concat(xp, [_on(xp, b.seed) for b in blocks if b.seed is not None])


def _on(xp: Any, arrays: ServiceArrays) -> ServiceArrays:
    """``arrays`` on ``xp`` (a worker's result may come back on another namespace)."""
    if isinstance(arrays.ip, np.ndarray) == (xp is np):
        return arrays
    from gpsgpu.backend import to_numpy

    return ServiceArrays(*(xp.asarray(to_numpy(getattr(arrays, f))) for f in _FIELDS))


# --- scans of (port, prefix) rows ------------------------------------------------------------------


def touched_prefixes(internet: SimInternet, networks: np.ndarray, length: int) -> np.ndarray:
    """The universe's /16s (uint32 network addresses, ascending) that rows ``networks/length`` touch."""
    universe = internet.prefixes.astype(np.int64)
    nets = np.unique(np.asarray(networks, dtype=np.int64))
    if length >= 16:
        wanted = np.isin(universe >> 16, nets >> 16)
    else:
        mask = ~((1 << (32 - length)) - 1) & 0xFFFFFFFF
        wanted = np.isin(universe & mask, nets)
    return universe[wanted].astype(np.uint32)


def scan_block(
    prefixes: np.ndarray,
    /,
    *,
    params: SimParams,
    backend: str,
    row_keys: np.ndarray,
    networks: np.ndarray,
    length: int,
) -> ServiceArrays:
    """What exhaustive scans of the rows find in the /16s ``prefixes``; a :class:`Mapper` task.

    Parameters
    ----------
    prefixes : uint32 host array of universe /16 network addresses, ascending.
    row_keys : int64 host array, ascending: ``network << 16 | port`` of every row.
    networks : int64 host array, ascending: the rows' distinct networks (host bits cleared).
    length : prefix length of every row.
    """
    from gpsgpu import schema
    from gpsgpu.sim.scanner import _isin_sorted

    internet = internet_for(params, backend)
    xp = internet.xp
    keys = xp.asarray(row_keys)
    nets = xp.asarray(networks)
    parts = []
    for p16 in prefixes.tolist():
        ips = internet.addresses(int(p16), 16)
        if length >= 16:
            ips = ips[_isin_sorted(xp, schema.prefix_of(ips, length).astype(xp.int64), nets)]
        found = internet.services_of(ips)
        key = (schema.prefix_of(found.ip, length).astype(xp.int64) << xp.int64(16)) | found.port.astype(
            xp.int64
        )
        hit = _isin_sorted(xp, key, keys) & ~_blocklist().contains(found.ip)
        parts.append(found.take(xp.flatnonzero(hit)))
    return _concat(xp, parts)


def scan_rows(
    internet: SimInternet,
    ports: np.ndarray,
    networks: np.ndarray,
    length: int,
    /,
    *,
    mapper: Mapper = SERIAL,
) -> ServiceArrays:
    """The services exhaustive scans of rows ``(ports[i], networks[i]/length)`` find, sorted by
    ``(ip, port)``: the universe /16s the rows touch are scanned in blocks through ``mapper``.

    The same services as :meth:`gpsgpu.sim.scanner.SimScanner.scan` (which also counts probes), for
    any number of blocks and workers. Parameters as there (host arrays; host bits are ignored).
    """
    ports = np.asarray(ports, dtype=np.int64)
    mask = ~((1 << (32 - length)) - 1) & 0xFFFFFFFF
    networks = np.asarray(networks, dtype=np.int64) & np.int64(mask)
    if ports.size == 0:
        return _empty_arrays(internet.xp)
    shared = {
        "params": internet.params,
        "backend": internet.backend.value,
        "row_keys": np.unique((networks << 16) | ports),
        "networks": np.unique(networks),
        "length": length,
    }
    touched = touched_prefixes(internet, networks, length)
    if touched.size == 0:
        return _empty_arrays(internet.xp)
    shared["row_keys"] = mapper.broadcast(shared["row_keys"])
    shared["networks"] = mapper.broadcast(shared["networks"])
    by_size = math.ceil(touched.size / PREFIXES_PER_BLOCK)
    blocks = max(by_size, 2 * mapper.n_workers if mapper.distributed else 1)

    def stage(n_blocks: int) -> list[ServiceArrays]:
        chunks = [c for c in np.array_split(touched, min(n_blocks, touched.size)) if c.size]
        return mapper.map(scan_block, chunks, **shared)

    found = retry_on_oom(stage, blocks, what="sim-scan", on_retry=free_device_pools)
    return _concat(internet.xp, [_on(internet.xp, f) for f in found])

"""Clusters for ``--cluster`` and partitioned runs of the same stage functions.

``--cluster`` is one of:

- ``none`` (default): one process; partitions run one after the other;
- ``local``: a :class:`dask.distributed.LocalCluster` of worker processes on this machine
  (``--workers`` of them, default every core);
- ``local-cuda``: a :class:`dask_cuda.LocalCUDACluster`, one worker per GPU, an RMM pool on each
  and spilling of device buffers to host memory (dask-cuda is imported only here);
- a scheduler address (``tcp://host:port``): an existing Dask cluster.

The stages never see Dask: they receive a :class:`Mapper`, which applies a function to every
partition (serially, or as Dask tasks on the workers) and returns the results in partition order.
:meth:`Mapper.keep` leaves the results where they were made (a partition stays on the worker that
indexed it, and later steps run there); a local cluster's workers read their own partitions of a
Parquet table (:meth:`Mapper.partitions`), a remote one's are sent to them once by the caller;
:meth:`Mapper.reduce` sums what they counted by key on the workers, so only totals travel. Objects
every task needs (the rules of phase 2) are broadcast once with :meth:`Mapper.broadcast`. Counts are
additive and reductions associative, so results are identical for any number of partitions and
workers.

Out of core: :func:`retry_on_oom` runs a stage and, when the device (or host) runs out of memory,
runs it again with twice the partitions, telling the user in one log line.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from gpsgpu.errors import UsageError
from gpsgpu.partition import PartitionReader, split_by_host

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``--cluster`` values that are not a scheduler address.
CLUSTER_CHOICES = ("none", "local", "local-cuda")

#: Names of the out-of-memory exceptions of CuPy and RMM (matched by name: neither is imported).
_OOM_NAMES = frozenset({"OutOfMemoryError"})

#: Partitions :meth:`Mapper.imap` keeps submitted per worker ahead of the one it yields.
IN_FLIGHT_PER_WORKER = 2

#: How many times a stage is retried with more partitions before the error is raised.
MAX_OOM_RETRIES = 6


class Mapper:
    """Applies functions to partitions: in this process (``client=None``) or on Dask workers.

    Parameters
    ----------
    client : dask.distributed.Client, optional
        The cluster's client; ``None`` runs every call in this process.
    shares_files : bool
        The workers see this machine's files (a local cluster): a table's partitions are read by
        the workers themselves (:meth:`partitions`), not sent to them from here.
    """

    def __init__(self, client: Any = None, *, shares_files: bool = False) -> None:
        self.client = client
        self.shares_files = shares_files

    @property
    def distributed(self) -> bool:
        """True when calls run on a Dask cluster."""
        return self.client is not None

    @property
    def n_workers(self) -> int:
        """Workers of the cluster (1 in this process)."""
        if self.client is None:
            return 1
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def broadcast(self, value: T) -> T:
        """``value`` sent once to every worker (a future standing for it); ``value`` itself locally."""
        if self.client is None:
            return value
        return self.client.scatter(value, broadcast=True, hash=False)  # type: ignore[no-any-return]

    def partitions(self, source: Any, n_partitions: int) -> Iterator[Any]:
        """``source``'s host partitions as the items of :meth:`keep` or :meth:`imap`
        (:func:`gpsgpu.partition.split_by_host`): on workers that share this machine's files, a
        table on disk goes as readers, and each worker reads its own partitions."""
        return split_by_host(
            source, n_partitions=n_partitions, readers=self.distributed and self.shares_files
        )

    def _scatter(self, items: Iterable[Any]) -> list[Any]:
        """The items sent to the workers as data (not inside the task graph), one future each."""
        return self.client.scatter(list(items), hash=False)  # type: ignore[no-any-return]

    def map(
        self, function: Callable[..., T], items: Iterable[Any], /, *extra: Iterable[Any], **shared: Any
    ) -> list[T]:
        """``[function(item, *more, **shared) for item, *more in zip(items, *extra)]``, in order
        (Dask tasks on a cluster), the results brought here.

        In this process, ``items`` may be a generator: each item is made just before its call.
        Items may be what :meth:`keep` returned: on a cluster they are used where they live.
        """
        return self.gather(self.keep(function, items, *extra, **shared))

    def keep(
        self, function: Callable[..., T], items: Iterable[Any], /, *extra: Iterable[Any], **shared: Any
    ) -> list[Any]:
        """Like :meth:`map`, but the results stay where they were made: on a cluster, futures
        standing for results held by the workers (pass them to :meth:`map`, :meth:`keep` or
        :meth:`reduce`, and :meth:`gather` only what the caller needs); here, the results.

        A task's result may replace its input (a partition updated in place and returned): the
        input handle is not used again.
        """
        if self.client is None:
            results = []
            for args in zip(items, *extra, strict=True):
                results.append(function(*args, **shared))
                del args  # before the next item is made (a partition read out of core)
            return results
        if not extra:
            items = list(items)
            if all(isinstance(item, PartitionReader) for item in items):
                # The workers read their partitions: only the small readers travel.
                return self.client.map(  # type: ignore[no-any-return]
                    _apply, items, pure=False, function=function, shared=shared
                )
            if not any(_is_future(item) for item in items):
                # One scatter for every item: the items go to the workers as data, spread evenly.
                return self.client.map(  # type: ignore[no-any-return]
                    _apply, self._scatter(items), pure=False, function=function, shared=shared
                )
        return [
            self.client.submit(_apply, *map(self._put, args), pure=False, function=function, shared=shared)
            for args in zip(items, *extra, strict=True)
        ]

    def gather(self, handles: list[Any]) -> list[Any]:
        """The results that :meth:`keep` left on the workers, here (the results themselves in this
        process)."""
        if self.client is None:
            return list(handles)
        return self.client.gather(handles)  # type: ignore[no-any-return]

    def reduce(self, function: Callable[[list[Any]], T], handles: list[Any], /, *, fan_in: int = 4) -> T:
        """``function(results)`` of what :meth:`keep` returned, brought here; on a cluster reduced on
        the workers in a tree of ``fan_in`` (so ``function`` must be associative: a sum of counts
        by key), and only the total travels to the caller."""
        if self.client is None:
            return function(list(handles))
        level = list(handles)
        if not level:
            return function([])
        while len(level) > 1:
            level = [
                self.client.submit(_apply_list, *level[i : i + fan_in], pure=False, function=function)
                for i in range(0, len(level), fan_in)
            ]
        return self.client.gather(level[0])  # type: ignore[no-any-return]

    def _put(self, value: Any) -> Any:
        """``value`` as a task argument: a future or a partition reader as it is, anything else
        sent to the workers."""
        if _is_future(value) or isinstance(value, PartitionReader):
            return value
        return self.client.scatter(value, hash=False)

    def imap(self, function: Callable[..., T], items: Iterable[Any], /, **shared: Any) -> Iterator[T]:
        """Like :meth:`map`, yielding each result in order as soon as it is ready (to write it).

        Items are taken from ``items`` lazily: one at a time in this process, and at most
        :data:`IN_FLIGHT_PER_WORKER` per worker ahead of the result being yielded on a cluster, so a
        generator of partitions (read out of core) is never held whole.
        """
        if self.client is None:
            for item in items:
                result = function(item, **shared)
                del item  # before the next item is made (a partition read out of core)
                yield result
                del result
            return
        window = max(2, IN_FLIGHT_PER_WORKER * self.n_workers)
        pending: collections.deque[Any] = collections.deque()
        source = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                data = self._put(item)
                pending.append(self.client.submit(_apply, data, pure=False, function=function, shared=shared))
            if not pending:
                return
            future = pending.popleft()
            yield future.result()
            future.release()


def _apply(*args: Any, function: Callable[..., T], shared: dict[str, Any]) -> T:
    """``function(*args, **shared)`` on a worker (``shared``'s futures are resolved by Dask first).

    The shared arguments travel in one dict so that their names cannot collide with the keywords
    of :meth:`distributed.Client.map` (``workers``, ``key``, ...).
    """
    # A partition reader is read here, on the worker, just before its task runs.
    args = tuple(arg() if isinstance(arg, PartitionReader) else arg for arg in args)
    return function(*args, **shared)


def _apply_list(*results: Any, function: Callable[[list[Any]], T]) -> T:
    """``function([...])`` of a group of results on a worker (one node of :meth:`Mapper.reduce`)."""
    return function(list(results))


def _is_future(value: Any) -> bool:
    """Whether ``value`` is a Dask future (asked only with a client: Dask is imported by then)."""
    from dask.distributed import Future

    return isinstance(value, Future)


#: The mapper of ``--cluster none``.
SERIAL = Mapper()


CONNECT_TIMEOUT = "10s"  # a scheduler on the same network answers in milliseconds


def check_cluster(spec: str) -> str:
    """``spec`` if it is a valid ``--cluster`` value, else a :class:`UsageError`."""
    if spec in CLUSTER_CHOICES or "://" in spec:
        return spec
    raise UsageError(
        f"--cluster must be none, local, local-cuda or a scheduler address (tcp://host:port), not {spec!r}"
    )


@contextlib.contextmanager
def open_cluster(spec: str = "none", *, workers: int = 0) -> Iterator[Mapper]:
    """A :class:`Mapper` on the cluster ``spec`` (see the module), closed on exit.

    Parameters
    ----------
    spec : str
        ``none``, ``local``, ``local-cuda`` or a scheduler address.
    workers : int
        Workers of a ``local`` cluster (0: every core) or of ``local-cuda`` (0: every GPU).
    """
    check_cluster(spec)
    if workers < 0:
        raise UsageError(f"--workers must be 0 (all) or more, not {workers}")
    if spec == "none":
        yield SERIAL
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise UsageError("--cluster needs dask.distributed: pip install 'dask[distributed]'") from exc
    with contextlib.ExitStack() as stack:
        if spec == "local":
            n = workers or os.cpu_count() or 1
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",
                )
            )
            client = stack.enter_context(Client(cluster))
        elif spec == "local-cuda":
            cluster = stack.enter_context(_local_cuda_cluster(workers))
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(spec, timeout=CONNECT_TIMEOUT))
            except (OSError, TimeoutError) as exc:
                raise UsageError(
                    f"--cluster {spec}: no Dask scheduler answered within {CONNECT_TIMEOUT} "
                    f"({exc.__class__.__name__})"
                ) from None
        log.info("cluster %s: %d workers", spec, len(client.scheduler_info().get("workers", {})))
        # A local cluster's workers read the tables' partitions themselves; a scheduler's workers
        # may run on other machines, so partitions are sent to them.
        yield Mapper(client, shares_files=spec in ("local", "local-cuda"))


def _local_cuda_cluster(workers: int) -> Any:
    """A ``LocalCUDACluster``: one worker per GPU, an RMM pool that CuPy shares, results spilled to
    host memory past 85% of the device."""
    from gpsgpu.backend import cuda_device_count

    n_devices = cuda_device_count()
    if n_devices == 0:
        raise UsageError("--cluster local-cuda needs an NVIDIA GPU, and none was found (try --cluster local)")
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as exc:
        raise UsageError(
            "--cluster local-cuda needs dask-cuda: pip install 'gpsgpu[gpu-cu12]' (or gpu-cu13)"
        ) from exc
    visible = ",".join(str(i) for i in range(min(workers or n_devices, n_devices)))
    return LocalCUDACluster(
        CUDA_VISIBLE_DEVICES=visible,
        # Fractions of the device's memory as floats: dask-cuda 26.10 rejects "80%" strings.
        rmm_pool_size=0.8,
        device_memory_limit=0.85,
        # CuPy's allocations (the pair kernels) come from the same RMM pool, not beside it.
        rmm_allocator_external_lib_list=["cupy"],
        # Spilling is dask-cuda's (device_memory_limit: stored results go to host memory), not
        # cuDF's: cuDF's spillable buffers cannot be unpickled in a client whose cuDF made any
        # buffer before the cluster started (seen on an H200, 2026-12-04), and partitions' cuDF
        # columns do come back to the client.
        enable_cudf_spill=False,
        dashboard_address=None,
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the out-of-memory errors of CuPy (``cupy.cuda.memory.OutOfMemoryError``), RMM
    (``MemoryError``) and Python (``MemoryError``), whatever library raised them."""
    if isinstance(exc, MemoryError):
        return True
    return any(cls.__name__ in _OOM_NAMES for cls in type(exc).__mro__)


def retry_on_oom(
    stage: Callable[[int], T],
    n_partitions: int,
    /,
    *,
    what: str,
    max_retries: int = MAX_OOM_RETRIES,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """``stage(n_partitions)``, run again with twice the partitions after an out-of-memory error.

    The stage must be a pure function of the partition count (its result does not depend on it),
    so a retry changes only how much memory one partition needs. Each retry is logged once.
    ``on_retry`` runs before each retry (to free device memory pools).
    """
    n = n_partitions
    for attempt in range(max_retries + 1):
        try:
            return stage(n)
        except Exception as exc:
            if not is_out_of_memory(exc) or attempt == max_retries:
                raise
            log.warning(
                "%s: out of memory with %d partition(s) (%s); retrying with %d smaller partitions",
                what,
                n,
                type(exc).__name__,
                n * 2,
            )
            n *= 2
            if on_retry is not None:
                on_retry()
    raise AssertionError("unreachable")  # pragma: no cover


def free_device_pools() -> None:
    """Release CuPy's cached device blocks (only if CuPy is already imported)."""
    import sys

    cupy = sys.modules.get("cupy")
    if cupy is not None:  # pragma: no cover - GPU only
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()

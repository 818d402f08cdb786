"""``metadata.json`` beside every output: what was run, on what, with what, and how long it took."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpsgpu import __version__
from gpsgpu.io.atomic import atomic_open


def metadata_path_for(output: str | os.PathLike[str]) -> Path:
    """``out/`` -> ``out/metadata.json``; ``out.parquet`` -> ``out.metadata.json``."""
    output = Path(output)
    if output.is_dir() or not output.suffix:
        return output / "metadata.json"
    return output.with_name(output.name.removesuffix(output.suffix) + ".metadata.json")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if hasattr(value, "value") and type(value).__module__.startswith("gpsgpu"):  # our enums
        return value.value
    return value


def environment() -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for name in ("numpy", "pandas", "pyarrow", "cudf", "cupy", "rmm", "dask", "dask_cuda"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return {"host": platform.node(), "platform": platform.platform(), "versions": versions}


def build_metadata(
    *,
    command: str,
    config: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
    backend: Any = None,
    counts: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "tool": "gpsgpu",
        "version": __version__,
        "command": command,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": config,
        "inputs": inputs or {},
        "backend": backend,
        "counts": counts or {},
        "timings_s": {k: round(v, 6) for k, v in (timings or {}).items()},
        "environment": environment(),
    }
    if extra:
        meta.update(extra)
    return _jsonable(meta)


def write_metadata(path: str | os.PathLike[str], metadata: Mapping[str, Any]) -> Path:
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(_jsonable(metadata), handle, indent=2, sort_keys=False)
        handle.write("\n")
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class Timings(dict[str, float]):
    """Wall-clock seconds per named step: ``with timings.step("parse"): ...``."""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start

"""Configuration: frozen dataclasses, filled from defaults < TOML file < environment < flags.

A TOML file (``--config FILE``) has one table per command (``[ingest]``, ``[learn]``, ...) whose keys
are the dataclass's field names; the environment overrides with ``GPSGPU_<FIELD>`` (upper case);
flags given on the command line win. The effective config is written into ``metadata.json``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from gpsgpu.errors import UsageError

T = TypeVar("T")

ENV_PREFIX = "GPSGPU_"

#: Default cap on one banner, in UTF-8 bytes; longer records are rejected (configurable).
DEFAULT_MAX_BANNER_BYTES = 64 * 1024
#: Default share of input records that may be rejected before ingest refuses the input.
DEFAULT_MAX_REJECT_RATE = 0.01


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """``gpsgpu ingest``: scan records of any supported format -> services table."""

    format: str = "auto"
    backend: str = "auto"
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE
    max_banner_bytes: int = DEFAULT_MAX_BANNER_BYTES
    asn_file: str | None = None
    default_port: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_reject_rate <= 1.0:
            raise UsageError(f"--max-reject-rate must be within 0..1, not {self.max_reject_rate}")
        if self.max_banner_bytes <= 0:
            raise UsageError(f"--max-banner-bytes must be positive, not {self.max_banner_bytes}")
        if self.default_port is not None and not 0 <= self.default_port <= 65535:
            raise UsageError(f"--default-port must be within 0..65535, not {self.default_port}")


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Coerce a TOML/env value to a dataclass field's (string) annotation."""
    hint = annotation if not isinstance(annotation, str) else eval(annotation, vars(typing) | vars(types))
    args = typing.get_args(hint)
    if value is None or (
        isinstance(value, str) and value.lower() in ("", "none", "null") and type(None) in args
    ):
        return None
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    try:
        if base is bool and isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes", "on")
        if base in (int, float, str, bool):
            return base(value)
        if typing.get_origin(base) in (tuple, list) and isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value
    except (TypeError, ValueError):
        raise UsageError(
            f"config value {name}={value!r} is not a valid {getattr(base, '__name__', base)}"
        ) from None


def load_config(
    cls: type[T],
    section: str,
    *,
    file: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Build ``cls`` from defaults < ``[section]`` of a TOML ``file`` < environment < ``flags``.

    ``flags`` whose value is ``None`` count as "not given" and do not override.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    if file is not None:
        path = Path(file)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"--config {path}: no such file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"--config {path}: not valid TOML ({exc})") from None
        table = document.get(section, {})
        if not isinstance(table, dict):
            raise UsageError(f"--config {path}: [{section}] must be a table")
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise UsageError(f"--config {path}: unknown key(s) in [{section}]: {', '.join(unknown)}")
        values.update({k: _coerce(v, fields[k].type, k) for k, v in table.items()})
    env = os.environ if environ is None else environ
    for name, field in fields.items():
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = _coerce(env[key], field.type, key)
    for name, value in (flags or {}).items():
        if value is not None:
            if name not in fields:
                raise KeyError(f"{cls.__name__} has no field {name!r}")
            values[name] = value
    return cls(**values)


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)

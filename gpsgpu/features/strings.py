"""A feature dictionary's strings, kept as the recipe that builds them until a string is needed.

Most of a seed's feature strings are crosses, ``16:<data feature>-<hex8>`` and ``asn:<data
feature>-asn: <n>``: each repeats a long data feature (a banner line, a certificate) for every /16
and AS it is seen in, so built they hold ~70% of the dictionary's bytes. Yet learn needs the
strings of a few thousand features (its rules) and the keys of all of them. :class:`FeatureStrings`
keeps a cross as the index of its data feature and its number, hashes the strings a block at a
time, and builds only the strings that are taken. The strings, the keys and their order are those
of the built dictionary, on either backend.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gpsgpu.backend import Backend, backend_of
from gpsgpu.ops import ops_for

#: Strings built at once when a dictionary is hashed, taken or compared on the host: a block's
#: strings repeat long banner lines, so a block is a few MB (more, and the blocks freed into the
#: heap's middle pile up in the resident set); the device takes 64 times more at once (a block is
#: a few kernel launches).
BLOCK = 1 << 14
DEVICE_BLOCKS = 64


@dataclass(frozen=True)
class ComposedStrings:
    """The strings ``head + base[base_at] + middle + number(values)``, where the number is the
    value's 8-digit lower-case hex (``hexadecimal``) or its decimal; with ``values`` None there is
    no number (a subset of ``base``)."""

    head: str
    base: Any
    base_at: Any
    middle: str = ""
    values: Any | None = None
    hexadecimal: bool = False

    def __len__(self) -> int:
        return int(self.base_at.size)

    def render(self, at: Any | None = None) -> Any:
        """The strings (at the positions ``at``, or all) as a text array of the backend."""
        ops = ops_for(backend_of(self.base_at))
        base_at = self.base_at if at is None else self.base_at[at]
        if int(base_at.size) == 0:
            return ops.text([])
        taken = ops.text_take(self.base, base_at)
        if self.values is None:
            return ops.text_join(self.head, taken, self.middle) if self.head or self.middle else taken
        values = self.values if at is None else self.values[at]
        number = ops.text_hex8(values) if self.hexadecimal else ops.text_decimal(values)
        return ops.text_join(self.head, taken, self.middle, number)

    def subset(self, at: Any) -> ComposedStrings:
        values = None if self.values is None else self.values[at]
        return replace(self, base_at=self.base_at[at], values=values)


class FeatureStrings:
    """The strings of a feature dictionary, laid end to end from parts that are built text arrays
    or :class:`ComposedStrings`."""

    def __init__(self, parts: list[Any], backend: Backend) -> None:
        self.backend = backend
        self.parts = [p for p in parts if _size(p)]
        self._bounds = np.cumsum([0, *(_size(p) for p in self.parts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._bounds[-1])

    def keys(self, seed: int) -> Any:
        """XXH64 (with ``seed``) of every string's UTF-8 bytes, in order (uint64)."""
        ops = ops_for(self.backend)
        xp = ops.namespace()
        keys = xp.empty(len(self), dtype=xp.uint64)
        step = BLOCK * (DEVICE_BLOCKS if self.backend is Backend.GPU else 1)
        for part, lo in zip(self.parts, self._bounds[:-1].tolist(), strict=True):
            if not isinstance(part, ComposedStrings):
                keys[lo : lo + _size(part)] = ops.xxh64_strings(part, seed)
                continue
            for start in range(0, len(part), step):
                block = xp.arange(start, min(start + step, len(part)), dtype=xp.int64)
                keys[lo + start : lo + start + block.size] = ops.xxh64_strings(part.render(block), seed)
        return keys

    def take(self, index: Any) -> Any:
        """The strings at ``index`` (any order, repeats allowed) as a text array, built a block of
        strings at a time (a block's temporaries, not the whole result's, beside the result)."""
        ops = ops_for(self.backend)
        xp = ops.namespace()
        index = xp.asarray(index, dtype=xp.int64)
        if index.size == 0:
            return ops.text([])
        step = BLOCK * (DEVICE_BLOCKS if self.backend is Backend.GPU else 1)
        blocks = [self._take_block(index[start : start + step]) for start in range(0, int(index.size), step)]
        return blocks[0] if len(blocks) == 1 else ops.text_concat_drain(blocks)

    def _take_block(self, index: Any) -> Any:
        ops = ops_for(self.backend)
        xp = ops.namespace()
        bounds = xp.asarray(self._bounds)
        owner = xp.searchsorted(bounds[1:], index, side="right")
        order = ops.argsort_stable(owner)
        owner_sorted = owner[order]
        cut = xp.searchsorted(owner_sorted, xp.arange(len(self.parts) + 1)).tolist()
        pieces = []
        for k, part in enumerate(self.parts):
            if cut[k] == cut[k + 1]:
                continue
            local = index[order[cut[k] : cut[k + 1]]] - int(self._bounds[k])
            pieces.append(_render(part, local))
        by_owner = ops.text_concat_drain(pieces)
        if bool(xp.all(order == xp.arange(order.size))):
            return by_owner
        position = xp.empty_like(order)
        position[order] = xp.arange(order.size, dtype=order.dtype)
        return ops.text_take(by_owner, position)

    def materialize(self) -> Any:
        """Every string, built, as one text array."""
        ops = ops_for(self.backend)
        return ops.text_concat_drain([_render(p) for p in self.parts])

    def subset(self, index: Any) -> FeatureStrings:
        """The strings at the increasing positions ``index``, still composed where they were."""
        ops = ops_for(self.backend)
        xp = ops.namespace()
        index = xp.asarray(index, dtype=xp.int64)
        cut = xp.searchsorted(index, xp.asarray(self._bounds)).tolist()
        parts = []
        for k, part in enumerate(self.parts):
            local = index[cut[k] : cut[k + 1]] - int(self._bounds[k])
            if isinstance(part, ComposedStrings):
                parts.append(part.subset(local))
            else:
                parts.append(ComposedStrings("", part, local))
        return FeatureStrings(parts, self.backend)

    @staticmethod
    def concat(dictionaries: list[FeatureStrings], backend: Backend) -> FeatureStrings:
        """The dictionaries' strings one after the other."""
        return FeatureStrings([p for d in dictionaries for p in d.parts], backend)


def _size(part: Any) -> int:
    if isinstance(part, ComposedStrings):
        return len(part)
    return ops_for(backend_of(part)).text_size(part)


def _render(part: Any, at: Any | None = None) -> Any:
    if isinstance(part, ComposedStrings):
        return part.render(at)
    if at is None:
        return part
    return ops_for(backend_of(part)).text_take(part, at)

"""Counter-based randomness for the simulated Internet.

The simulation never keeps random-number-generator state: every random quantity is a hash of
``(seed, salt, key...)`` where the key is an address, a /24, an AS index, a slot number, ... . So any
subset of addresses can be generated alone, in any order, in any batch size, on NumPy or CuPy, and
gives the same values. The mixer is the splitmix64 finalizer (Steele, Lea, Flood 2014), written with
uint64 array arithmetic that wraps identically on both libraries.

Floating point is kept out of per-element device arithmetic on purpose: a probability becomes a
uint32 *threshold* (computed once on the host) and a draw is ``hash >> 32 < threshold``; a
categorical draw is a ``searchsorted`` of the draw in a uint32 cumulative table. Integer comparisons
cannot round differently on a GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB

#: 2**32 as a float, to turn probabilities into uint32 thresholds.
_TWO32 = float(1 << 32)


def mix64_int(z: int) -> int:
    """The splitmix64 finalizer of one Python int (for scalars computed on the host)."""
    z &= _M64
    z = ((z ^ (z >> 30)) * _C1) & _M64
    z = ((z ^ (z >> 27)) * _C2) & _M64
    return z ^ (z >> 31)


def stream(seed: int, salt: int) -> int:
    """The 64-bit base of one random stream: distinct (seed, salt) pairs give unrelated streams."""
    return mix64_int(mix64_int((seed * _GOLDEN) & _M64) ^ ((salt * _C2 + 0x632BE59BD9B4E019) & _M64))


def mix64(xp: Any, z: Any) -> Any:
    """The splitmix64 finalizer of a uint64 array (NumPy or CuPy; wraps modulo 2**64)."""
    z = z ^ (z >> xp.uint64(30))
    z = z * xp.uint64(_C1)
    z = z ^ (z >> xp.uint64(27))
    z = z * xp.uint64(_C2)
    return z ^ (z >> xp.uint64(31))


def hash_keys(xp: Any, base: int, *keys: Any) -> Any:
    """A uint64 hash of ``keys`` (integer arrays of one shape, or Python ints) in stream ``base``.

    Each key is folded in with one splitmix64 round, so ``hash_keys(b, a, c)`` and ``hash_keys(b, c, a)``
    differ and neither collides systematically with a one-key hash.
    """
    if not keys:
        raise ValueError("hash_keys needs at least one key")
    # Broadcast first so that every step works on arrays (NumPy warns on wrapping *scalar* products).
    arrays = xp.broadcast_arrays(*[xp.asarray(k) for k in keys])
    h = mix64(xp, arrays[0].astype(xp.uint64) ^ xp.uint64(base))
    for k in arrays[1:]:
        h = mix64(xp, (h + xp.uint64(_GOLDEN)) ^ k.astype(xp.uint64))
    return h


def draw32(xp: Any, h: Any) -> Any:
    """The top 32 bits of a hash as uint32: the draw compared against thresholds."""
    return (h >> xp.uint64(32)).astype(xp.uint32)


def below(xp: Any, h: Any, threshold: Any) -> Any:
    """Boolean: a Bernoulli draw with probability ``threshold / 2**32`` (threshold uint32 or int64)."""
    return (h >> xp.uint64(32)).astype(xp.int64) < xp.asarray(threshold).astype(xp.int64)


def threshold(p: Any) -> Any:
    """Probabilities (host floats in [0, 1]) as int64 thresholds in [0, 2**32] for :func:`below`."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return np.floor(p * _TWO32).astype(np.int64)


def cdf_table(weights: Any) -> np.ndarray:
    """Cumulative uint32-scaled thresholds (int64, last = 2**32) of non-negative weights.

    ``searchsorted(table, draw32, side="right")`` picks index ``i`` with probability ``w[i]/sum(w)``;
    zero weights are never picked. All-zero weights pick index 0.
    """
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    if total <= 0:
        out = np.full(w.shape, 1 << 32, dtype=np.int64)
        return out
    cum = np.floor(np.cumsum(w) / total * _TWO32).astype(np.int64)
    cum[-1] = 1 << 32
    # A zero weight must never be picked: its threshold equals the previous one.
    return cum


def pick(xp: Any, table: Any, h: Any) -> Any:
    """Categorical draw: index into ``table`` (from :func:`cdf_table`, on ``xp``) for hashes ``h``."""
    d = (h >> xp.uint64(32)).astype(xp.int64)
    return xp.searchsorted(table, d, side="right").astype(xp.int64)


def pick_rows(xp: Any, tables: Any, row: Any, h: Any) -> Any:
    """Categorical draw from a per-row table: ``tables[row]`` is row ``row``'s :func:`cdf_table`.

    All rows are searched at once in the flattened table by offsetting each row's thresholds by
    ``row * 2**33`` (thresholds are at most 2**32, so rows never interleave).
    """
    n_rows, width = tables.shape
    offsets = xp.arange(n_rows, dtype=xp.int64)[:, None] * xp.int64(1 << 33)
    flat = (tables + offsets).ravel()
    d = (h >> xp.uint64(32)).astype(xp.int64) + row.astype(xp.int64) * xp.int64(1 << 33)
    return xp.searchsorted(flat, d, side="right").astype(xp.int64) - row.astype(xp.int64) * width


def modulo(xp: Any, h: Any, n: Any) -> Any:
    """A draw uniform on ``0..n-1`` (n a Python int or an int64 array), from the hash's top bits.

    ``(top32 * n) >> 32`` (Lemire's multiply-shift) instead of ``h % n``: the low bits of a
    splitmix output are as good, but the multiply keeps the draw monotone in the hash.
    """
    top = (h >> xp.uint64(32)).astype(xp.uint64)
    n64 = xp.asarray(n).astype(xp.uint64)
    return ((top * n64) >> xp.uint64(32)).astype(xp.int64)

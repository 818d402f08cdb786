"""Rival port metrics, as neighbour lists over the same vocabulary, and the neighbour-quality score.

Every metric ranks the same candidate ports: the *vocabulary*, the ports of the port2dist graph
(ports some tailored scans chained). Restricting the naive metrics to it helps them (their nearest
ports are ports scanners actually probe), so the comparison is, if anything, generous to them.

- **numeric**: ``|a - b|`` (ties: the lower port first);
- **iana**: 0 within the same IANA range (well-known 0-1023, registered 1024-49151, dynamic
  49152-65535), 1 across; a range is hundreds of equidistant ports, so ties are broken by numeric
  distance, i.e. "the numerically nearest ports of the same range first";
- **word2vec**: cosine distance ``1 - cos`` between gensim Word2Vec embeddings trained on the same
  tailored sequences port2dist counted (skip-gram, the DANTE / DarkVec idea applied to ports; ports
  seen fewer than ``min_count`` times have no vector and are never predicted).

The neighbour-quality score of a metric at ``k``: over the ports of the ground-truth families that
are in the vocabulary, the mean share of a port's ``k`` nearest ports that belong to its family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from gpsgpu.portdist import columns as C
from gpsgpu.portdist.apsp import top_k
from gpsgpu.portdist.replay import NeighborIndex

#: IANA port ranges (RFC 6335): well-known, registered (user), dynamic (private).
IANA_BOUNDS = (1024, 49152)

#: Word2Vec defaults: small vectors suffice for a vocabulary of a few thousand ports.
W2V_DIM = 32
W2V_WINDOW = 5
W2V_EPOCHS = 10
#: gensim's default: a port seen fewer times gets no vector (and is no candidate neighbour), which
#: keeps rare noise ports with untrained, random vectors out of Word2Vec's neighbour lists.
W2V_MIN_COUNT = 5


def iana_range(ports: np.ndarray) -> np.ndarray:
    """0 well-known, 1 registered, 2 dynamic."""
    return np.searchsorted(np.asarray(IANA_BOUNDS), np.asarray(ports, dtype=np.int64), side="right")


def _blocks(n: int, budget: int = 1 << 24) -> list[np.ndarray]:
    step = max(1, budget // max(1, n))
    return [np.arange(lo, min(n, lo + step)) for lo in range(0, n, step)]


def numeric_index(vocab: np.ndarray, /, *, k: int) -> NeighborIndex:
    """Neighbour lists of ``|a - b|`` over ``vocab`` (uint16 ports)."""
    vocab = np.unique(np.asarray(vocab, dtype=np.int64))
    lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for rows in _blocks(vocab.size):
        dist = np.abs(vocab[rows][:, None] - vocab[None, :]).astype(np.float32)
        idx, d = top_k(dist, rows, k)
        for r, i in enumerate(rows):
            lists[int(vocab[i])] = (vocab[idx[r]], d[r].astype(np.float64))
    return NeighborIndex(lists=lists, name="numeric")


def iana_index(vocab: np.ndarray, /, *, k: int) -> NeighborIndex:
    """Neighbour lists of the IANA-range metric over ``vocab`` (ties by numeric distance)."""
    vocab = np.unique(np.asarray(vocab, dtype=np.int64))
    rng = iana_range(vocab)
    lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for rows in _blocks(vocab.size):
        other = (rng[rows][:, None] != rng[None, :]).astype(np.float64)
        # Rank key: the range first, the numeric distance (< 65536) as the tie-break.
        key = (other * 65_536 + np.abs(vocab[rows][:, None] - vocab[None, :])).astype(np.float32)
        idx, _ = top_k(key, rows, k)
        for r, i in enumerate(rows):
            lists[int(vocab[i])] = (vocab[idx[r]], other[r, idx[r]])
    return NeighborIndex(lists=lists, name="iana")


def _stable_hash(text: str) -> int:
    # gensim seeds each vector with hash(word + seed); Python's str hash changes per process.
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def train_word2vec(
    tokens: np.ndarray,
    starts: np.ndarray,
    /,
    *,
    dim: int = W2V_DIM,
    window: int = W2V_WINDOW,
    epochs: int = W2V_EPOCHS,
    min_count: int = W2V_MIN_COUNT,
    seed: int = 0,
    on_epoch: Callable[[], Any] | None = None,
) -> Any:
    """A gensim skip-gram Word2Vec over port sequences (one thread, so it is deterministic).

    Parameters
    ----------
    tokens : uint16 ports of all sequences, one after another (repeats collapsed).
    starts : int64 offsets of each sequence in ``tokens``, plus the end.
    on_epoch : called after each training epoch (progress displays).
    """
    import itertools
    import logging

    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    class _EpochEnd(CallbackAny2Vec):  # type: ignore[misc]
        def on_epoch_end(self, model: Any) -> None:
            if on_epoch is not None:
                on_epoch()

    # gensim logs every epoch at INFO; our stderr is for our own summary lines.
    logging.getLogger("gensim").setLevel(logging.WARNING)
    words = np.asarray(tokens).astype(str)
    sentences = [list(words[lo:hi]) for lo, hi in itertools.pairwise(starts) if hi - lo >= 2]
    return Word2Vec(
        sentences=sentences,
        vector_size=dim,
        window=window,
        min_count=min_count,
        sg=1,
        workers=1,
        seed=seed,
        epochs=epochs,
        hashfxn=_stable_hash,
        callbacks=[_EpochEnd()] if on_epoch is not None else (),
    )


def word2vec_index(model: Any, vocab: np.ndarray, /, *, k: int) -> NeighborIndex:
    """Neighbour lists of cosine distance between ``model``'s vectors, over ``vocab`` ports it knows."""
    vocab = np.unique(np.asarray(vocab, dtype=np.int64))
    known = np.asarray([str(p) in model.wv.key_to_index for p in vocab.tolist()], dtype=bool)
    vocab = vocab[known]
    if vocab.size == 0:
        return NeighborIndex(lists={}, name="word2vec")
    vectors = np.stack([model.wv[str(p)] for p in vocab.tolist()]).astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for rows in _blocks(vocab.size):
        dist = np.clip(1.0 - vectors[rows] @ vectors.T, 0.0, 2.0).astype(np.float32)
        idx, d = top_k(dist, rows, k)
        for r, i in enumerate(rows):
            lists[int(vocab[i])] = (vocab[idx[r]], d[r].astype(np.float64))
    return NeighborIndex(lists=lists, name="word2vec")


def restrict_index(index: NeighborIndex, vocab: np.ndarray, /) -> NeighborIndex:
    """Only neighbours (and ports) within ``vocab``."""
    allowed = set(np.asarray(vocab, dtype=np.int64).tolist())
    lists = {}
    for port, (nbr, dist) in index.lists.items():
        if port in allowed:
            keep = np.asarray([int(q) in allowed for q in nbr.tolist()], dtype=bool)
            lists[port] = (nbr[keep], dist[keep])
    return NeighborIndex(lists=lists, name=index.name)


def neighbor_quality(index: NeighborIndex, families: pd.DataFrame, /, *, k: int) -> pd.DataFrame:
    """Share of each family port's ``k`` nearest ports that are in its family.

    Parameters
    ----------
    families : pandas.DataFrame
        ``family string, port uint16`` (a port in one family), restricted by the caller to the
        vocabulary every metric ranks.

    Returns
    -------
    pandas.DataFrame
        ``port uint16, family string, quality float64``. The denominator is
        ``min(k, family size - 1)``, so a metric that ranks a port's whole family first scores 1
        even for families smaller than ``k``; ports of one-port families are left out.
    """
    family_of = dict(zip(families[C.PORT].astype(int), families["family"], strict=True))
    size = families["family"].value_counts().to_dict()
    rows = []
    for port, fam in family_of.items():
        if size[fam] < 2:
            continue
        near = index.nearest(port, k)
        same = sum(family_of.get(int(q)) == fam for q in near.tolist())
        rows.append((port, fam, same / min(k, size[fam] - 1)))
    return pd.DataFrame(rows, columns=[C.PORT, "family", "quality"]).astype({C.PORT: np.uint16})

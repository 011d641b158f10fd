"""Which neurons to graft or prune: rank normalisation and the selection criteria of paper 000.

Scores arrive per activation site (arrays of the site's shape). ``SiteLayout`` flattens them into
one vector in forward order, so a neuron is a flat index here and (site, index) everywhere else.
Selection is global over all sites by default ("rank all neurons", Section 4; Figure 7 shows the
grafted share differing by layer), or per site with ``scope='layer'``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from vfbench.errors import VfbenchError
from vfbench.transforms.entries import criterion_needs


@dataclass(frozen=True)
class SiteLayout:
    """Activation sites in forward order and their per-sample shapes."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, tuple[int, ...]]) -> SiteLayout:
        return cls(tuple(shapes), tuple(tuple(int(s) for s in v) for v in shapes.values()))

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, size in zip(self.names, self.sizes, strict=True):
            out[name] = slice(start, start + size)
            start += size
        return out

    def flatten(self, arrays: Mapping[str, np.ndarray], what: str = "scores") -> np.ndarray:
        """One vector from per-site arrays; a missing site or a wrong shape is a VfbenchError."""
        missing = [n for n in self.names if n not in arrays]
        if missing:
            raise VfbenchError(f"{what}: no values for activation sites {missing}; "
                               f"have {sorted(arrays)}")
        parts = []
        for name, shape in zip(self.names, self.shapes, strict=True):
            values = np.asarray(arrays[name])
            if values.size != math.prod(shape):
                raise VfbenchError(f"{what}: site {name!r} has {values.size} values, the model's "
                                   f"site has shape {shape}")
            parts.append(values.reshape(-1))
        return np.concatenate(parts) if parts else np.zeros(0)

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """Per-site arrays (site shapes) from one vector."""
        vector = np.asarray(vector)
        if vector.shape != (self.total,):
            raise VfbenchError(f"vector of shape {vector.shape} does not fit {self.total} neurons")
        return {name: vector[sl].reshape(shape)
                for (name, sl), shape in zip(self.slices().items(), self.shapes, strict=True)}


def rank_normalise(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1]: the largest value gets 1, the smallest 0, ties share their mean
    rank (so a score on which all neurons agree carries no preference)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size <= 1:
        return np.full(values.shape, 0.5)
    return (rankdata(values, method="average") - 1.0) / (values.size - 1.0)


def _top(scores: np.ndarray, candidates: np.ndarray, count: int, tiebreak: np.ndarray
         ) -> np.ndarray:
    """The ``count`` candidates with the highest score; ties broken by ``tiebreak`` (random)."""
    order = np.lexsort((tiebreak[candidates], -scores[candidates]))
    return candidates[order[:count]]


def chunk_size(chunk: float, neurons: int) -> int:
    """Neurons per decay chunk: the ``chunk`` fraction of the neurons in scope, at least one."""
    return max(1, int(round(chunk * neurons)))


def decay_gammas(count: int, chunk: int, gamma_start: float = 2.0, gamma_end: float = 0.0
                 ) -> list[tuple[float, int]]:
    """(gamma, chunk size) for each chunk of the decayed-gamma selection.

    Paper 000 grafts 20% "in chunks of 5% with gamma = 2 -> 1.5 -> 1 -> ...": gamma drops by
    (start - end) / n_chunks per chunk, starting at ``gamma_start``. The last chunk may be smaller.
    """
    if chunk < 1:
        raise VfbenchError(f"chunk size must be at least one neuron, got {chunk}")
    n_chunks = max(1, math.ceil(count / chunk))
    step = (gamma_start - gamma_end) / n_chunks
    sizes = [min(chunk, count - k * chunk) for k in range(n_chunks)]
    return [(gamma_start - k * step, size) for k, size in enumerate(sizes) if size > 0]


def select_decay(r_u: np.ndarray, r_s: np.ndarray, count: int, chunk: int,
                 rng: np.random.Generator, gamma_start: float = 2.0, gamma_end: float = 0.0
                 ) -> np.ndarray:
    """argmax of gamma*r_u - r_s chunk by chunk with gamma decayed (paper 000's default).

    Returns the selected flat indices in the order chosen (first chunk first).
    """
    tiebreak = rng.permutation(r_u.size)
    remaining = np.ones(r_u.size, dtype=bool)
    chosen = []
    for gamma, size in decay_gammas(count, chunk, gamma_start, gamma_end):
        picked = _top(gamma * r_u - r_s, np.flatnonzero(remaining), size, tiebreak)
        remaining[picked] = False
        chosen.append(picked)
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def _fixed(gamma: float, use_rs: bool = True):
    def select(r_u, r_s, count, chunk, rng, **_):
        tiebreak = rng.permutation(r_u.size)
        score = gamma * r_u - (r_s if use_rs else 0.0)
        return _top(score, np.arange(r_u.size), count, tiebreak)
    return select


def select_random(r_u, r_s, count, chunk, rng, **_) -> np.ndarray:
    """Random grafting: the sanity check of Table 1 (no score is read)."""
    size = r_u.size if r_u is not None else r_s.size
    return rng.permutation(size)[:count]


# Criterion name -> function (which scores each reads: entries.CRITERION_NEEDS).
CRITERIA: dict[str, Callable[..., np.ndarray]] = {
    "decay": select_decay,
    "neg_rs": _fixed(0.0),
    "ru_minus_rs": _fixed(1.0),
    "2ru_minus_rs": _fixed(2.0),
    "ru": _fixed(1.0, use_rs=False),
    "random": select_random,
}


def select_neurons(layout: SiteLayout, ratio: float, criterion: str,
                   raw_u: Mapping[str, np.ndarray] | None, raw_s: Mapping[str, np.ndarray] | None,
                   rng: np.random.Generator, scope: str = "global", chunk: float = 0.05,
                   gamma_start: float = 2.0, gamma_end: float = 0.0) -> np.ndarray:
    """Flat indices of the ``round(ratio * n)`` neurons to graft, in selection order.

    ``raw_u`` / ``raw_s``: raw instability counts / significance values per site; they are
    rank-normalised here, over all neurons (``scope='global'``) or within each site
    (``scope='layer'``, where every site grafts its own ``ratio``). ``chunk`` is the decay
    chunk as a fraction of the neurons in scope.
    """
    if not 0.0 <= ratio <= 1.0:
        raise VfbenchError(f"ratio must be in [0, 1], got {ratio}")
    needs_u, needs_s = criterion_needs(criterion)
    fn = CRITERIA[criterion]
    u = layout.flatten(raw_u, "instability score") if needs_u else np.zeros(layout.total)
    s = layout.flatten(raw_s, "significance score") if needs_s else np.zeros(layout.total)
    if scope == "global":
        groups = [np.arange(layout.total)]
    elif scope == "layer":
        groups = [np.arange(sl.start, sl.stop) for sl in layout.slices().values()]
    else:
        raise VfbenchError(f"scope must be 'global' or 'layer', got {scope!r}")
    chosen = []
    for group in groups:
        count = int(round(ratio * group.size))
        picked = fn(rank_normalise(u[group]), rank_normalise(s[group]), count,
                    chunk_size(chunk, group.size), rng,
                    gamma_start=gamma_start, gamma_end=gamma_end)
        chosen.append(group[np.asarray(picked, dtype=np.int64)])
    return np.concatenate(chosen)


def masks_from_indices(layout: SiteLayout, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Per-site 0/1 float masks (site shapes) with 1 at the given flat indices."""
    flat = np.zeros(layout.total, dtype=np.float32)
    flat[np.asarray(indices, dtype=np.int64)] = 1.0
    return layout.split(flat)

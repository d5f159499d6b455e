"""Input drift: each feature's live distribution against the version's sample input, as a population stability index.

The reference is built once, when a version is loaded: for every numeric feature (each column of each input, up to
MAX_FEATURES per version) the deciles of the sample cut the line into bins, and the sample's share in each bin is
what live traffic should look like. A sampled fraction of live requests is binned with the same edges (vectorized;
only sampled requests pay) and PSI = sum((live - ref) * ln(live / ref)) is reported per feature over the last
window. Rule of thumb: under 0.1 stable, 0.1 to 0.25 moderate shift, above 0.25 a significant one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

import numpy as np

BINS = 10
MAX_FEATURES = 64
# Empty bins would make ln(0): both sides are floored at this share.
FLOOR = 1e-4


@dataclass(frozen=True)
class FeatureReference:
    name: str  # "x[3]" for column 3 of input x, "x" for an input with one value per row
    input: str
    column: int


@dataclass(frozen=True)
class DriftReference:
    """Bin edges (features x BINS-1) and the sample's share per bin (features x BINS)."""

    features: list[FeatureReference]
    edges: np.ndarray
    expected: np.ndarray

    @classmethod
    def from_sample(cls, inputs: dict[str, np.ndarray]) -> DriftReference | None:
        """Build the reference from a version's sample inputs (None when it has no numeric feature to follow)."""
        features: list[FeatureReference] = []
        columns: list[np.ndarray] = []
        for name, array in inputs.items():
            if array.dtype.kind not in "fiub" or array.ndim == 0 or array.shape[0] < 2:
                continue
            table = array.reshape(array.shape[0], -1).astype(np.float64)
            for column in range(table.shape[1]):
                if len(features) >= MAX_FEATURES:
                    break
                label = name if table.shape[1] == 1 else f"{name}[{column}]"
                features.append(FeatureReference(label, name, column))
                columns.append(table[:, column])
        if not features:
            return None
        sample = np.stack(columns)  # features x rows
        edges = np.quantile(sample, np.linspace(0, 1, BINS + 1)[1:-1], axis=1).T  # features x (BINS - 1)
        expected = _shares(_bin_counts(sample, edges))
        return cls(features=features, edges=edges, expected=expected)

    @cached_property
    def _column_groups(self) -> tuple[tuple[str, np.ndarray], ...]:
        """The followed columns of each input, in feature order: a sampled request costs one indexing per input, not
        one per feature (up to MAX_FEATURES of them)."""
        groups: list[tuple[str, list[int]]] = []
        for feature in self.features:
            if not groups or groups[-1][0] != feature.input:
                groups.append((feature.input, []))
            groups[-1][1].append(feature.column)
        return tuple((name, np.array(columns, dtype=np.intp)) for name, columns in groups)

    def columns(self, inputs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The followed features of a request, features x rows (None if the request lacks an input)."""
        picked = []
        for name, columns in self._column_groups:
            array = inputs.get(name)
            if array is None or array.ndim == 0:
                return None
            picked.append(array.reshape(array.shape[0], -1)[:, columns].T)
        return np.concatenate(picked).astype(np.float64)


def _bin_counts(columns: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Count each feature's values per bin: features x BINS (a value on an edge goes to the bin above it)."""
    index = (columns[:, :, None] >= edges[:, None, :]).sum(axis=2)  # features x rows, in 0..BINS-1
    features = columns.shape[0]
    # One bincount over (feature, bin) cells: the same counts as np.add.at, which is far slower on small arrays.
    cells = (index + np.arange(features)[:, None] * BINS).ravel()
    return np.bincount(cells, minlength=features * BINS).reshape(features, BINS).astype(np.int64, copy=False)


def _shares(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    return np.maximum(counts / np.maximum(totals, 1), FLOOR)


def psi(expected: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Population stability index per feature, from reference shares and live counts (features x BINS)."""
    actual = _shares(counts)
    return ((actual - expected) * np.log(actual / expected)).sum(axis=1)


class DriftCounter:
    """Live bin counts of one version's followed features since the last `take`."""

    def __init__(self, reference: DriftReference) -> None:
        self.reference = reference
        self.counts = np.zeros_like(reference.expected, dtype=np.int64)
        self.rows = 0

    def add(self, inputs: dict[str, np.ndarray]) -> None:
        columns = self.reference.columns(inputs)
        if columns is None or not columns.shape[1]:
            return
        self.counts += _bin_counts(columns, self.reference.edges)
        self.rows += columns.shape[1]

    def take(self) -> tuple[int, dict[str, float]]:
        """Rows seen and PSI per feature since the last take; then start over."""
        rows, counts = self.rows, self.counts
        self.counts = np.zeros_like(counts)
        self.rows = 0
        if not rows:
            return 0, {}
        values = psi(self.reference.expected, counts)
        return rows, {f.name: round(float(v), 4) for f, v in zip(self.reference.features, values, strict=True)}


class DriftMonitor:
    """Follow a sampled fraction of each live version's inputs; called on the event loop thread only (no lock)."""

    def __init__(self, sample_rate: float) -> None:
        self.sample_rate = sample_rate
        self.counters: dict[tuple[str, int], DriftCounter] = {}
        # The standard library's generator: one draw costs a small fraction of numpy's Generator.random(), and nearly
        # every request pays only that draw (bench/dataplane.py).
        self._random = random.Random()  # noqa: S311 - sampling, not security

    def observe(
        self, endpoint: str, version: int, reference: DriftReference | None, inputs: dict[str, np.ndarray]
    ) -> None:
        """Bin this request's features if it is sampled (most requests return after one random draw)."""
        if reference is None or self._random.random() >= self.sample_rate:
            return
        key = (endpoint, version)
        counter = self.counters.get(key)
        if counter is None or counter.reference is not reference:
            counter = self.counters[key] = DriftCounter(reference)
        counter.add(inputs)

    def take(self) -> dict[tuple[str, int], tuple[int, dict[str, float]]]:
        """Rows and PSI per feature of every followed version since the last take (versions with rows only)."""
        taken = {}
        for key, counter in list(self.counters.items()):
            rows, values = counter.take()
            if rows:
                taken[key] = (rows, values)
            else:
                del self.counters[key]  # no traffic for a whole window: forget it until it comes back
        return taken


drift_monitor = DriftMonitor(sample_rate=0.1)

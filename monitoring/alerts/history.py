"""The traffic history alert rules are judged on: per-second running totals, so that any window's sum is two lookups."""

from __future__ import annotations

import bisect
import operator
from array import array

from monitoring.choices import AlertMetric
from monitoring.recorder import LATENCY_BOUNDS, Series

# count, errors, disagreements, then the latency buckets
Totals = tuple[int, ...]
WIDTH = 3 + len(LATENCY_BOUNDS) + 1
_ZERO: Totals = (0,) * WIDTH


class RunningTotals:
    """Running totals of one (endpoint, version, role) series at each second it had traffic.

    Summing an hour-long window second by second for every rule, every second, would cost the event loop that
    serves requests; running totals make any window the difference of two bisected lookups. They are kept in
    flat 64-bit arrays (an hour of one busy series is about 600 KB, not the several MB of tuples of ints).
    """

    __slots__ = ("base", "seconds", "totals")

    def __init__(self) -> None:
        self.seconds = array("q")
        self.totals = array("q")  # WIDTH running totals per kept second
        self.base: Totals = _ZERO  # the running total before the oldest second kept

    def _at(self, i: int) -> Totals:
        return tuple(self.totals[i * WIDTH : (i + 1) * WIDTH])

    def add(self, second: int, series: Series) -> None:
        values = (series.count, series.errors, series.disagreements, *series.latency_buckets)
        kept = len(self.seconds)
        summed = map(operator.add, self._at(kept - 1) if kept else self.base, values)
        if kept and second <= self.seconds[-1]:
            self.totals[(kept - 1) * WIDTH :] = array("q", summed)  # the same second again (a final flush)
        else:
            self.seconds.append(second)
            self.totals.extend(summed)

    def _upto(self, second: int) -> Totals:
        i = bisect.bisect_right(self.seconds, second)
        return self._at(i - 1) if i else self.base

    def between(self, first: int, last: int) -> Totals:
        """The sums over the seconds first..last, both included."""
        return tuple(map(operator.sub, self._upto(last), self._upto(first - 1)))

    def prune(self, oldest: int) -> None:
        """Forget seconds before `oldest`, a quarter of what is kept at a time (each cut moves the arrays)."""
        i = bisect.bisect_left(self.seconds, oldest)
        if i and i * 4 >= len(self.seconds):
            self.base = self._at(i - 1)
            del self.seconds[:i]
            del self.totals[: i * WIDTH]


def metric_value(metric: str, totals: Totals) -> float:
    """A rule's metric over summed totals (which hold at least one request)."""
    count, errors, disagreements = totals[0], totals[1], totals[2]
    if metric == AlertMetric.ERROR_RATE:
        return errors / count
    if metric == AlertMetric.DISAGREEMENT_RATE:
        return disagreements / count
    p95 = Series(count=count, latency_buckets=list(totals[3:])).quantile(0.95)
    assert p95 is not None
    return min(p95, LATENCY_BOUNDS[-1]) * 1000  # beyond the last finite bucket reads as that bucket's bound

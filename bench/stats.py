"""What the benchmarks report of a list of latencies: median, p95, messages a second."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import TypeVar


def p95(values: list[float]) -> float:
    """The 95th percentile (interpolated, as ``statistics.quantiles`` does)."""
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


@dataclass(frozen=True, kw_only=True, slots=True)
class Latencies:
    latencies: list[float]
    elapsed: float  # seconds over the pattern

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p95(self) -> float:
        return p95(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed


L = TypeVar("L", bound=Latencies)


def pooled(results: list[L]) -> L:
    """Several rounds as one: their latencies together, every other figure summed."""
    first = results[0]
    totals = {
        f.name: sum(getattr(r, f.name) for r in results)
        for f in dataclasses.fields(first)
        if f.name != "latencies"
    }
    return dataclasses.replace(first, latencies=[x for r in results for x in r.latencies], **totals)

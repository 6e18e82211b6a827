"""Process metrics, rendered in the Prometheus text format at ``/metrics``."""

from __future__ import annotations

import bisect
from collections import defaultdict

_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._values: dict[str, float] = defaultdict(float)

    def inc(self, adapter: str = "", amount: float = 1.0) -> None:
        self._values[adapter] += amount

    def value(self, adapter: str = "") -> float:
        if adapter:
            return self._values.get(adapter, 0.0)
        return sum(self._values.values())

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for adapter, value in sorted(self._values.items()):
            lines.append(f'{self.name}{{adapter="{adapter}"}} {value:g}')
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = _BUCKETS) -> None:
        self.name = name
        self.help = help_text
        self.buckets = buckets
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = defaultdict(float)
        self.samples: list[float] = []

    def observe(self, value: float, adapter: str = "") -> None:
        counts = self._counts.setdefault(adapter, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sums[adapter] += value
        self.samples.append(value)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for adapter, counts in sorted(self._counts.items()):
            running = 0
            for bound, count in zip(self.buckets, counts, strict=False):
                running += count
                lines.append(f'{self.name}_bucket{{adapter="{adapter}",le="{bound:g}"}} {running}')
            total = sum(counts)
            lines.append(f'{self.name}_bucket{{adapter="{adapter}",le="+Inf"}} {total}')
            lines.append(f'{self.name}_sum{{adapter="{adapter}"}} {self._sums[adapter]:g}')
            lines.append(f'{self.name}_count{{adapter="{adapter}"}} {total}')
        return lines


class Metrics:
    def __init__(self) -> None:
        p = "agent_gateway_"
        self.messages_in = Counter(p + "messages_in_total", "Inbound messages accepted.")
        self.runs = Counter(p + "runs_total", "Runs started.")
        self.steers = Counter(p + "steers_total", "Messages steered into a running turn.")
        self.sends = Counter(p + "sends_total", "Messages sent.")
        self.edits = Counter(p + "edits_total", "Message edits made.")
        self.rate_limited = Counter(p + "rate_limited_total", "429 answers from a platform.")
        self.duplicates = Counter(p + "duplicates_dropped_total", "Redelivered messages dropped.")
        self.refused = Counter(p + "access_refused_total", "Messages refused by access control.")
        self.first_visible = Histogram(
            p + "first_visible_seconds", "Time from message received to first visible reply."
        )

    def render(self) -> str:
        parts: list[str] = []
        for metric in (
            self.messages_in,
            self.runs,
            self.steers,
            self.sends,
            self.edits,
            self.rate_limited,
            self.duplicates,
            self.refused,
            self.first_visible,
        ):
            parts.extend(metric.render())
        return "\n".join(parts) + "\n"

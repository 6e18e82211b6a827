"""The gateway's metrics on ``prometheus-client``, one registry per gateway.

A registry per ``Metrics`` keeps tests (several gateways in one process) isolated and
gives ``/metrics`` the process and platform collectors for free. The small facade keeps
the call sites short (``metrics.runs.inc(platform)``) and lets tests read a value back
(``metrics.runs.value(platform)``) without parsing the exposition text.
"""

from __future__ import annotations

from typing import Final

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest

CONTENT_TYPE: Final = prometheus_client.CONTENT_TYPE_LATEST
PREFIX: Final = "agent_gateway_"
# Seconds from a message received to the first visible reply: a streamed first token
# lands well under a second, a cold model or a queued run takes several.
FIRST_VISIBLE_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_LABEL: Final = "adapter"


class Counter:
    """A counter labelled by adapter."""

    def __init__(self, registry: CollectorRegistry, name: str, help_text: str) -> None:
        self._registry = registry
        # prometheus-client adds the ``_total`` suffix of a counter's sample itself.
        self._sample = f"{PREFIX}{name}_total"
        self._counter = prometheus_client.Counter(
            PREFIX + name, help_text, [_LABEL], registry=registry
        )

    def inc(self, adapter: str = "", amount: float = 1.0) -> None:
        self._counter.labels(adapter).inc(amount)

    def value(self, adapter: str | None = None) -> float:
        """The count for one adapter, or the sum over all of them."""
        return _read(self._registry, self._sample, adapter)


class Histogram:
    """A histogram labelled by adapter: bucket counts and a sum, never the samples."""

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        help_text: str,
        buckets: tuple[float, ...],
    ) -> None:
        self._registry = registry
        self._name = PREFIX + name
        self._histogram = prometheus_client.Histogram(
            self._name, help_text, [_LABEL], registry=registry, buckets=buckets
        )

    def observe(self, value: float, adapter: str = "") -> None:
        self._histogram.labels(adapter).observe(value)

    def count(self, adapter: str | None = None) -> int:
        return int(_read(self._registry, f"{self._name}_count", adapter))

    def total(self, adapter: str | None = None) -> float:
        return _read(self._registry, f"{self._name}_sum", adapter)


def _read(registry: CollectorRegistry, sample: str, adapter: str | None) -> float:
    total = 0.0
    for family in registry.collect():
        for s in family.samples:
            if s.name == sample and (adapter is None or s.labels.get(_LABEL) == adapter):
                total += s.value
    return total


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        prometheus_client.ProcessCollector(registry=self.registry)
        prometheus_client.PlatformCollector(registry=self.registry)
        prometheus_client.GCCollector(registry=self.registry)
        r = self.registry
        self.messages_in = Counter(r, "messages_in", "Inbound messages accepted.")
        self.runs = Counter(r, "runs", "Runs started.")
        self.steers = Counter(r, "steers", "Messages steered into a running turn.")
        self.sends = Counter(r, "sends", "Messages sent.")
        self.edits = Counter(r, "edits", "Message edits made.")
        self.rate_limited = Counter(r, "rate_limited", "429 answers from a platform.")
        self.duplicates = Counter(r, "duplicates_dropped", "Redelivered messages dropped.")
        self.refused = Counter(r, "access_refused", "Messages refused by access control.")
        self.first_visible = Histogram(
            r,
            "first_visible_seconds",
            "Time from message received to first visible reply.",
            FIRST_VISIBLE_BUCKETS,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition, served with ``CONTENT_TYPE``."""
        return generate_latest(self.registry)

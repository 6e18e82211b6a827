"""When the model's first token reached the gateway, per chat (issue 11).

A run listener subscribes to every run the pipeline starts and stamps its first
``TextDelta`` as the run emits it (``time.monotonic``, the fakes' clock) under the chat
it answers (``ChatTarget.chat_id``, ``thread_id``), so a benchmark can report the time
from the model's first token to the first visible text the fake recorded.
"""

from __future__ import annotations

import statistics
import time

from gateway.app import Gateway
from gateway.intake import Origin
from runtime.events import RunEvent, TextDelta
from runtime.run import Run

ChatKey = tuple[str, str | None]
TARGET = 0.050  # seconds from first token to first visible text


class FirstTokens:
    def __init__(self, gateway: Gateway) -> None:
        assert gateway.runtime is not None
        self.at: dict[ChatKey, float] = {}
        gateway.runtime.add_run_listener(self._on_run)

    def _on_run(self, run: Run) -> None:
        if not isinstance(run.origin, Origin):
            return
        target = run.origin.message.target
        key = (target.chat_id, target.thread_id)

        def stamp(event: RunEvent) -> None:  # as the run emits it, not when a task wakes
            if isinstance(event, TextDelta):
                self.at.setdefault(key, time.monotonic())

        run.listen(stamp)

    def in_channel(self, channel: str) -> float | None:
        """The first token of the reply in ``channel`` (a chat, or a thread by its id)."""
        for (chat, thread), at in self.at.items():
            if channel in (chat, thread):
                return at
        return None


def nearest_p95(gaps: list[float]) -> float:
    """The 95th percentile by nearest rank (these figures have always been read so)."""
    ordered = sorted(gaps)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def summary(gaps: list[float], what: str = "first token -> first visible text") -> str:
    """One line: median, p95 and max of ``gaps``, against 50 ms."""
    p95 = nearest_p95(gaps)
    verdict = "met" if p95 <= TARGET else "NOT met"
    return (
        f"{what}: median {statistics.median(gaps) * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms "
        f"(target p95 <= {TARGET * 1000:.0f} ms: {verdict})"
    )

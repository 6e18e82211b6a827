"""Metrics: a registry per gateway, histograms with buckets, /metrics in the Prometheus
text format with process metrics."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.http_server import HttpServer
from gateway.metrics import CONTENT_TYPE, Metrics


def test_each_gateway_counts_on_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.runs.inc("telegram")
    first.runs.inc("telegram")
    first.runs.inc("slack", 3)

    assert first.runs.value("telegram") == 2
    assert first.runs.value() == 5
    assert second.runs.value() == 0


def test_first_visible_is_a_bucketed_histogram_not_a_list_of_samples() -> None:
    metrics = Metrics()
    for seconds in (0.07, 0.3, 0.3, 12.0):
        metrics.first_visible.observe(seconds, "discord")

    assert metrics.first_visible.count("discord") == 4
    assert metrics.first_visible.total("discord") == pytest.approx(12.67)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    buckets = {
        s.labels["le"]: s.value
        for s in families["agent_gateway_first_visible_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert (buckets["0.05"], buckets["0.1"], buckets["0.5"], buckets["10.0"]) == (0, 1, 3, 3)
    assert buckets["+Inf"] == 4


async def test_metrics_endpoint_serves_the_exposition_with_process_metrics() -> None:
    metrics = Metrics()
    metrics.messages_in.inc("webchat")
    server = HttpServer("127.0.0.1", 0, metrics=metrics, ready=lambda: (True, {}))
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/metrics") as resp,
        ):
            body = await resp.text()
            content_type = resp.headers["Content-Type"]
    finally:
        await server.stop()

    assert resp.status == 200
    assert content_type == CONTENT_TYPE
    samples = {
        (s.name, s.labels.get("adapter")): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("agent_gateway_messages_in_total", "webchat")] == 1
    assert ("python_info", None) in samples
    assert ("process_resident_memory_bytes", None) in samples

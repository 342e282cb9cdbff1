"""Prometheus metrics of the HTTP side; one registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "parley_http_requests_total",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "parley_http_request_seconds",
            "HTTP request latency by method and route",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

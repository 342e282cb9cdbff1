"""Prometheus metrics of the HTTP side; one registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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


class MediaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.uploads = Counter(
            "parley_media_uploads_total",
            "Media uploads by kind (image, blob) and outcome (ok or error code)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.process_seconds = Histogram(
            "parley_media_process_seconds",
            "Time to process one image in the pool (waiting included)",
            registry=registry,
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.stored_bytes = Counter(
            "parley_media_stored_bytes_total",
            "Bytes of variants and blobs stored",
            registry=registry,
        )
        self.in_flight = Gauge(
            "parley_media_jobs_in_flight",
            "Images being processed or waiting for a worker",
            registry=registry,
        )


class TipMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rpc_seconds = Histogram(
            "parley_eth_rpc_seconds",
            "Ethereum JSON-RPC calls by method and outcome (ok, unavailable, bad_answer, error)",
            ["method", "outcome"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.transitions = Counter(
            "parley_tips_total",
            "Tips entering each state",
            ["state"],
            registry=registry,
        )
        self.tracked = Gauge(
            "parley_tips_tracked",
            "Submitted tips this node's tracker follows (0 on nodes not holding the lease)",
            registry=registry,
        )

    def observe_rpc(self, method: str, outcome: str, seconds: float) -> None:
        self.rpc_seconds.labels(method, outcome).observe(seconds)

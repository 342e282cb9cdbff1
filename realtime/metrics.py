"""Prometheus metrics of the socket hub."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sockets = Gauge(
            "parley_sockets_connected", "Sockets connected to this node", registry=registry
        )
        self.connects = Counter(
            "parley_socket_connects_total",
            "Socket connection attempts by outcome",
            ["outcome"],
            registry=registry,
        )
        self.events_in = Counter(
            "parley_socket_events_in_total",
            "Events received from clients by event and outcome",
            ["event", "outcome"],
            registry=registry,
        )
        self.events_out = Counter(
            "parley_socket_events_out_total",
            "Events emitted to user rooms by event",
            ["event"],
            registry=registry,
        )
        self.slow_consumers = Counter(
            "parley_slow_consumers_dropped_total",
            "Sockets dropped because too much was queued for them",
            registry=registry,
        )
        self.event_seconds = Histogram(
            "parley_socket_event_seconds",
            "Time to handle a client event, ack included",
            ["event"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

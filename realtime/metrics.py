"""Prometheus metrics of the socket hub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class DeliveryCounts(Protocol):
    """Local deliveries by path, counted by realtime.fanout.DirectEmitManager."""

    frames_written: int
    packets_queued: int


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
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

        self.remote_delivery_seconds = Histogram(
            "parley_fanout_remote_seconds",
            "From another node's emit to its delivery to this node's sockets (Redis pub/sub)",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def count_deliveries(self, counts: object) -> None:
        """Export the fan-out's delivery counts (if ``counts`` keeps them) when scraped."""
        if hasattr(counts, "frames_written") and hasattr(counts, "packets_queued"):
            self._registry.register(_DeliveryCollector(counts))


class _DeliveryCollector(Collector):
    # Read at scrape time: the emit only adds to two ints, not to a locked counter
    # per recipient.
    def __init__(self, counts: DeliveryCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "parley_socket_deliveries",
            "Emitted packets delivered to local sockets, by path: a websocket frame "
            "written straight to the transport, or a packet queued for the socket's writer",
            labels=["path"],
        )
        family.add_metric(["frame"], self._counts.frames_written)
        family.add_metric(["queue"], self._counts.packets_queued)
        yield family

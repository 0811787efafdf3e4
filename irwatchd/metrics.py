"""Prometheus metrics: counters fed by audit records, gauges from the daemon's status.

Every finding and every action passes through the audit log, so counting audit records
gives findings by category and severity and actions by type and outcome without a hook in
each action. Gauges (queue depths, lag per file, open incidents, active blocks) come from the
status document the main loop publishes every `STATUS_INTERVAL_SECONDS`, so a scrape never
touches the pipeline's objects from the HTTP server's thread.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Info, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from irwatchd import __version__
from irwatchd.audit.log import AuditLog
from irwatchd.logger import get_logger

log = get_logger(__name__)


class DaemonMetrics:
    """The daemon's metric registry, separate from prometheus_client's global one."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.lines_read = Counter(
            "irwatchd_lines_read", "Log lines read from watched files.", registry=self.registry
        )
        self.findings = Counter(
            "irwatchd_findings",
            "Findings written to the audit log, by category and severity.",
            ["category", "severity"],
            registry=self.registry,
        )
        self.actions = Counter(
            "irwatchd_actions",
            "Actions written to the audit log (block, alert, ticket, forensics, reload, ...), "
            "by type and outcome.",
            ["action", "outcome"],
            registry=self.registry,
        )
        Info("irwatchd_build", "The running irwatchd version.", registry=self.registry).info(
            {"version": __version__}
        )
        self._status: dict[str, Any] = {}
        self._published_lines = 0
        self.registry.register(_StatusCollector(self))

    def observe_audit_record(self, record: dict[str, Any]) -> None:
        """Count one audit record as a finding or as an action."""
        self.observe_audit_records([record])

    def observe_audit_records(self, records: list[dict[str, Any]]) -> None:
        """Count audit records as findings or actions, with one increment per label set."""
        findings: collections.Counter[tuple[str, str]] = collections.Counter()
        actions: collections.Counter[tuple[str, str]] = collections.Counter()
        for record in records:
            event = record.get("event", {})
            action = str(event.get("action", "unknown"))
            if action == "finding":
                details = record.get("irwatchd", {})
                findings[str(details.get("category")), str(details.get("severity"))] += 1
            else:
                actions[action, str(event.get("outcome", "unknown"))] += 1
        for labels, count in findings.items():
            self.findings.labels(*labels).inc(count)
        for labels, count in actions.items():
            self.actions.labels(*labels).inc(count)

    def publish(self, status: dict[str, Any]) -> None:
        """Take a new status document for the gauges and advance the lines counter."""
        lines = int(status.get("lines_read", 0))
        if lines > self._published_lines:
            self.lines_read.inc(lines - self._published_lines)
            self._published_lines = lines
        # One assignment, so a scrape on the server thread reads the old or the new dict.
        self._status = status

    def status(self) -> dict[str, Any]:
        """Return the last published status document."""
        return self._status


class _StatusCollector(Collector):
    def __init__(self, metrics: DaemonMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        status = self.metrics.status()
        queues = GaugeMetricFamily(
            "irwatchd_queue_depth", "Items waiting in each pipeline queue.", labels=["queue"]
        )
        for name, depth in sorted(status.get("queues", {}).items()):
            queues.add_metric([name], depth)
        yield queues
        lag = GaugeMetricFamily(
            "irwatchd_file_lag_bytes",
            "Bytes written to a watched file that irwatchd has not read yet.",
            labels=["path"],
        )
        for row in status.get("files", []):
            lag.add_metric([row["path"]], row["lag_bytes"])
        yield lag
        simple = (
            ("irwatchd_files_watched", "Files being followed.", len(status.get("files", []))),
            ("irwatchd_open_incidents", "Incidents still open.", status.get("open_incidents", 0)),
            ("irwatchd_active_blocks", "Addresses blocked now.", status.get("active_blocks", 0)),
            (
                "irwatchd_lines_per_second",
                "Lines read per second over the last status interval.",
                status.get("lines_per_second", 0.0),
            ),
        )
        for name, documentation, value in simple:
            yield GaugeMetricFamily(name, documentation, value=value)


def split_listen(listen: str) -> tuple[str, int]:
    """Split a validated `HOST:PORT` (IPv6 in brackets) into an address and a port."""
    host, _, port = listen.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


class MetricsServer:
    """The HTTP endpoint serving `/metrics` from its own thread."""

    def __init__(self, metrics: DaemonMetrics, listen: str) -> None:
        self.listen = listen
        host, port = split_listen(listen)
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, addr=host, registry=metrics.registry)
        log.info("metrics_listening", listen=listen)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        log.info("metrics_stopped", listen=self.listen)


class CountingAuditLog(AuditLog):
    """An audit log that also counts each record it writes in the metrics."""

    def __init__(self, *args: Any, metrics: DaemonMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics

    def append_many(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write the records, then count each one written (`append` comes through here)."""
        written = super().append_many(records)
        self.metrics.observe_audit_records(written)
        return written

"""The Prometheus endpoint: off by default, counters and gauges, and a busy port."""

from __future__ import annotations

import json
import signal
import socket
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from irwatchd import __version__
from irwatchd.metrics import DaemonMetrics
from tests.helpers import (
    append_lines,
    ssh_failure,
    start_daemon,
    sudo_denied,
    wait_until,
    write_service_config,
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_endpoint_counts(tmp_path: Path) -> None:
    port = _free_port()
    config = write_service_config(
        tmp_path / "etc", metrics={"enabled": True, "listen": f"127.0.0.1:{port}"}
    )
    log = tmp_path / "auth.log"
    log.touch()
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config)
    try:
        append_lines(log, [ssh_failure("198.51.100.9"), sudo_denied("mallory")])
        wait_until(lambda: _scrape(port).get(("irwatchd_lines_read_total", ())) == 2)
        samples = _scrape(port)
    finally:
        assert daemon.stop() == 0

    assert (
        samples[("irwatchd_findings_total", (("category", "failed_login"), ("severity", "low")))]
        == 1
    )
    assert (
        samples[
            (
                "irwatchd_findings_total",
                (("category", "privilege_escalation"), ("severity", "high")),
            )
        ]
        == 1
    )
    assert samples[("irwatchd_actions_total", (("action", "start"), ("outcome", "success")))] == 1
    assert samples[("irwatchd_actions_total", (("action", "ticket"), ("outcome", "success")))] >= 1
    assert samples[("irwatchd_file_lag_bytes", (("path", str(log)),))] == 0
    assert samples[("irwatchd_queue_depth", (("queue", "rotated_files"),))] == 0
    assert samples[("irwatchd_open_incidents", ())] == 2
    assert samples[("irwatchd_files_watched", ())] == 1
    assert ("irwatchd_build_info", (("version", __version__),)) in samples


def test_metrics_port_busy_keeps_detecting(tmp_path: Path) -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    config = write_service_config(
        tmp_path / "etc", metrics={"enabled": True, "listen": f"127.0.0.1:{port}"}
    )
    log = tmp_path / "auth.log"
    log.touch()
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config)
    status_path = daemon.state_dir / "status.json"
    try:
        append_lines(log, [ssh_failure("198.51.100.10")])
        wait_until(lambda: json.loads(status_path.read_text())["findings"] == 1)
        status = json.loads(status_path.read_text())
    finally:
        assert daemon.stop() == 0
        busy.close()

    assert status["metrics"]["enabled"] is True
    assert status["metrics"]["listen"] is None
    assert "in use" in status["metrics"]["error"]
    assert '"metrics_listen_failed"' in daemon.log_text()


def test_metrics_off_by_default(tmp_path: Path) -> None:
    config = write_service_config(tmp_path / "etc")
    log = tmp_path / "auth.log"
    log.touch()
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config)
    try:
        status = json.loads(wait_until(lambda: (daemon.state_dir / "status.json").read_text()))
    finally:
        assert daemon.stop() == 0

    assert status["metrics"] == {"enabled": False, "listen": None, "error": None}
    assert '"metrics_listening"' not in daemon.log_text()


def test_audit_records_counted() -> None:
    metrics = DaemonMetrics()

    metrics.observe_audit_record(
        {"event": {"action": "finding"}, "irwatchd": {"category": "sqli", "severity": "high"}}
    )
    metrics.observe_audit_record({"event": {"action": "block", "outcome": "failure"}})
    metrics.publish({"lines_read": 5})
    metrics.publish({"lines_read": 7})

    registry = metrics.registry
    assert (
        registry.get_sample_value(
            "irwatchd_findings_total", {"category": "sqli", "severity": "high"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "irwatchd_actions_total", {"action": "block", "outcome": "failure"}
        )
        == 1
    )
    assert registry.get_sample_value("irwatchd_lines_read_total") == 7


def test_metrics_enabled_by_reload(tmp_path: Path) -> None:
    port = _free_port()
    config = write_service_config(tmp_path / "etc")
    log = tmp_path / "auth.log"
    log.touch()
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config)
    status_path = daemon.state_dir / "status.json"
    try:
        write_service_config(
            config.parent, metrics={"enabled": True, "listen": f"127.0.0.1:{port}"}
        )
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: json.loads(status_path.read_text())["reloads"] == 1)
        samples = _scrape(port)
    finally:
        assert daemon.stop() == 0

    assert samples[("irwatchd_actions_total", (("action", "reload"), ("outcome", "success")))] == 1
    assert samples[("irwatchd_files_watched", ())] == 1

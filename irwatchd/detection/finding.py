"""What the detector reports: one rule firing on one line."""

from __future__ import annotations

from typing import Any

import msgspec

from irwatchd.parsing.record import LogRecord
from irwatchd.parsing.timestamps import format_rfc3339

CATEGORIES = (
    "failed_login",
    "brute_force",
    "privilege_escalation",
    "sqli",
    "xss",
    "path_traversal",
    "remote_file_inclusion",
    "command_injection",
    "code_injection",
    "jndi_injection",
    "ssrf",
    "protocol_attack",
    "scanner",
)
SEVERITIES = ("low", "medium", "high", "critical")


def severity_rank(severity: str) -> int:
    """Order severities so that a higher rank means more harm."""
    return SEVERITIES.index(severity)


class Finding(msgspec.Struct, frozen=True, gc=False):
    """A rule that fired on a line, with the attribution taken from server-written fields."""

    rule_id: str
    category: str
    severity: str
    record: LogRecord
    source_ip: str | None
    user: str | None
    count: int = 1
    fields: dict[str, str] = msgspec.field(default_factory=dict)

    def to_detect_json(self) -> dict[str, Any]:
        """Return the object `irwatchd detect` prints for this finding."""
        return {
            "line": self.record.line_number,
            "rule": self.rule_id,
            "category": self.category,
            "severity": self.severity,
            "source_ip": self.source_ip,
            "user": self.user,
            "time": format_rfc3339(self.record.time),
        }

"""irwatchd: an incident-response daemon that detects attacks in logs as they are written."""

from __future__ import annotations

__version__ = "0.1.0"

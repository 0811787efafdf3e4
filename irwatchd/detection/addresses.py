"""Source address clean-up: the one path from an address in a log line to a finding's source."""

from __future__ import annotations

import ipaddress
import socket

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

# RFC 1123 host names: letters, digits, hyphens and dots, at most 253 characters.
_HOSTNAME = re2.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$", _OPTIONS)


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse an IP address, unwrapping IPv4-mapped IPv6 and dropping a zone id; None if invalid."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def canonical_address(text: str) -> str | None:
    """Return `str(ipaddress.ip_address(text))` for a plain address, None for anything else.

    The C functions of the `socket` module take 0.6 µs where `ipaddress` takes 8.7 µs for an
    IPv6 address (timeit, CPython 3.11). glibc's `inet_ntop` writes RFC 5952 text, as
    `ipaddress` does, except for embedded IPv4. So text or output with a dot, other than
    plain IPv4, is left to `ipaddress`, as are zone ids, which `inet_pton` rejects.
    """
    if "." in text:
        try:
            socket.inet_pton(socket.AF_INET, text)
        except (OSError, ValueError):  # ValueError: a NUL in the text
            return None
        return text
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None
    canonical = socket.inet_ntop(socket.AF_INET6, packed)
    # glibc writes IPv4-mapped and IPv4-compatible addresses with a dotted quad.
    return None if "." in canonical else canonical


def clean_source(text: str | None) -> str | None:
    """Return the canonical form of a logged source: an IP address, a host name, or None.

    Brackets and `:port` suffixes are stripped, `::ffff:a.b.c.d` becomes `a.b.c.d`, and a host
    name stays a host name: it is never resolved or guessed into an address.
    """
    if not text:
        return None
    candidate = text.strip().rstrip(",;")
    if candidate.startswith("["):
        candidate = candidate[1:].partition("]")[0]
    canonical = canonical_address(candidate)
    if canonical is not None:
        return canonical
    address = parse_address(candidate)
    if address is None and candidate.count(":") == 1:
        host, _, port = candidate.partition(":")
        if port.isdigit():
            candidate = host
            address = parse_address(candidate)
    if address is not None:
        return str(address)
    if candidate and _HOSTNAME.search(candidate) and any(c.isalpha() for c in candidate):
        return candidate.lower()
    return None

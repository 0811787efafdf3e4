"""The allowlist: addresses and CIDR ranges that are never blocked."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from irwatchd.detection.addresses import parse_address

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Allowlist:
    """A set of networks; IPv4-mapped IPv6 addresses are checked as the IPv4 address they carry."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in entries
        )

    def contains(self, address: str) -> bool:
        """Return whether an address is allowlisted; anything that is not an address is not."""
        parsed = parse_address(address)
        if parsed is None:
            return False
        return self.contains_parsed(parsed)

    def contains_parsed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Return whether a parsed address, with IPv4-mapped IPv6 unwrapped, is allowlisted."""
        return any(address.version == net.version and address in net for net in self.networks)

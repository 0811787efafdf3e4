"""The fast address parsers give the text and value `ipaddress` gives, or leave it to it."""

from __future__ import annotations

import ipaddress
import random

from irwatchd.detection.addresses import canonical_address, clean_source
from irwatchd.response import backends

EDGE_CASES = [
    "192.0.2.1",
    "0.0.0.0",
    "255.255.255.255",
    "192.0.2.01",
    "192.0.2.256",
    "192.0.2",
    "1.2.3.4.5",
    "::",
    "::1",
    "1::",
    "2001:DB8::1",
    "2001:db8:0:0:1:0:0:1",
    "2001:db8::1:0:0:1",
    "2001:db8:0:1:1:1:1:1",
    "0:0:0:0:0:0:0:0",
    "0001:0db8::0001",
    "00001::",
    "::ffff:192.0.2.1",
    "::ffff:c000:201",
    "::c000:201",
    "::192.0.2.1",
    "64:ff9b::192.0.2.1",
    "fe80::1%eth0",
    "2001:db8::1::2",
    "2001:db8:::1",
    "g::1",
    "",
    " ::1",
    "192.0.2.1\x00",
    "::1\x00",
    "::\u00e9",
    "\udcff::1",
]


def _expected(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _random_ipv6(rng: random.Random) -> str:
    words = [rng.choice([0, 0, 0, 1, 0xFFFF, rng.randrange(0x10000)]) for _ in range(8)]
    text = ":".join(f"{word:x}" if rng.random() < 0.7 else f"{word:04X}" for word in words)
    if rng.random() < 0.5:
        text = str(ipaddress.IPv6Address(text))
    return text


def test_edge_cases_match_ipaddress() -> None:
    for text in EDGE_CASES:
        canonical = canonical_address(text)
        if canonical is not None:
            assert canonical == _expected(text), text


def test_hostile_text_is_left_to_ipaddress() -> None:
    for text in ("192.0.2.1\x00", "::1\x00", "::\u00e9", "1" * 100_000):
        assert canonical_address(text) is None, repr(text[:20])
        assert clean_source(text) is None, repr(text[:20])
    # Log text is decoded with replacement characters, so only direct calls pass a surrogate.
    assert canonical_address("\udcff::1") is None


def test_random_addresses_match_ipaddress() -> None:
    rng = random.Random(41)
    fast = 0
    for _ in range(20_000):
        if rng.random() < 0.2:
            text = ".".join(str(rng.randrange(256)) for _ in range(4))
        else:
            text = _random_ipv6(rng)
        canonical = canonical_address(text)
        if canonical is not None:
            fast += 1
            assert canonical == _expected(text), text
    assert fast > 15_000, "too few addresses took the socket path"


def test_clean_source_unwraps_mapped_addresses() -> None:
    assert clean_source("::ffff:192.0.2.1") == "192.0.2.1"
    assert clean_source("::ffff:c000:201") == "192.0.2.1"
    assert clean_source("[2001:DB8::0001]:22") == "2001:db8::1"
    assert clean_source("fe80::1%eth0") == "fe80::1"
    assert clean_source("192.0.2.1:22") == "192.0.2.1"


def _parsed_by_ipaddress(text: str) -> tuple[object, str] | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address, str(address)


def _parsed_by_backends(text: str) -> tuple[object, str] | None:
    try:
        address = backends.parse_canonical(text)
    except ValueError:
        return None
    return address, backends.canonical_text(address)


def test_block_parser_matches_ipaddress() -> None:
    rng = random.Random(43)
    texts = [*EDGE_CASES, "::102:304", "::ffff:0:0", "fe80::1%2", "1:2:3:4:5:6:1.2.3.4"]
    texts += [_random_ipv6(rng) for _ in range(20_000)]
    texts += [str(ipaddress.IPv6Address(rng.getrandbits(32))) for _ in range(2_000)]
    for text in texts:
        assert _parsed_by_backends(text) == _parsed_by_ipaddress(text), repr(text)

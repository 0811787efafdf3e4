"""`count_newlines` against `bytes.count`, with the extension and without it."""

from __future__ import annotations

import random

import pytest

from irwatchd.detection import newlines
from irwatchd.detection.newlines import count_newlines


@pytest.mark.parametrize("native", [True, False])
def test_count_matches_bytes_count(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if native and newlines._rawrows is None:
        pytest.skip("the _rawrows extension is not built (needs libhyperscan-dev libre2-dev)")
    if not native:
        monkeypatch.setattr(newlines, "_rawrows", None)
    rng = random.Random(7)
    # The extension counts in runs of 255 bytes, so some inputs are long and all newlines.
    for _ in range(300):
        size = rng.choice([rng.randint(0, 400), rng.randint(250, 3000)])
        alphabet = b"\n" if rng.random() < 0.1 else b"ab\n\x00\xff"
        data = bytes(rng.choice(alphabet) for _ in range(size))
        start = rng.randint(0, len(data) + 5)
        end = rng.randint(0, len(data) + 5)
        assert count_newlines(data, start, end) == data.count(b"\n", start, end)
        assert count_newlines(data, start) == data.count(b"\n", start)
        assert count_newlines(data) == data.count(b"\n")


def test_native_count_rejects_negative() -> None:
    if newlines._rawrows is None:
        pytest.skip("the _rawrows extension is not built (needs libhyperscan-dev libre2-dev)")
    with pytest.raises(ValueError, match="0 or more"):
        count_newlines(b"a\nb", -1)

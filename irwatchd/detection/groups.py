"""Split a stream into lists of a fixed size, for stages that work a batch at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def in_groups(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Yield the items in lists of `size`, the last one shorter; `itertools.batched` from 3.12.

    When reading `items` fails, the items read before the error come out as a last, shorter
    list, and the error is raised after it: a scan of a damaged file keeps their findings.
    """
    group: list[Item] = []
    try:
        for item in items:
            group.append(item)
            if len(group) >= size:
                yield group
                group = []
    except Exception:
        if group:
            yield group
        raise
    if group:
        yield group

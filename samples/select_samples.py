"""Rebuild the sample logs from the labelled corpus (run once; the output is committed).

Usage: python samples/select_samples.py ../shared/corpus
Picks a deterministic handful of lines per class, so the demo shows every kind of response.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

WEB_PICKS = {
    "benign": 24,
    "sqli": 4,
    "xss": 3,
    "path_traversal": 3,
    "cmd_injection": 3,
    "log4shell": 2,
    "shellshock": 1,
}


def main(corpus: Path) -> None:
    here = Path(__file__).resolve().parent
    web = [json.loads(line) for line in (corpus / "web.jsonl").open()]
    by_label: dict[str, list[dict]] = defaultdict(list)
    for item in web:
        if item["label"] == "benign" and not item.get("real_traffic"):
            continue
        by_label[item["label"]].append(item)
    picked = []
    for label, count in WEB_PICKS.items():
        items = by_label[label]
        step = max(1, len(items) // count)
        picked.extend(items[::step][:count])
    picked.sort(key=lambda item: item["id"])
    (here / "access.log").write_text("".join(item["line"] + "\n" for item in picked))
    (here / "access.sources.tsv").write_text(
        "".join(f"{item['label']}\t{item['source']}\n" for item in picked)
    )

    auth = [json.loads(line) for line in (corpus / "auth.jsonl").open()]
    burst = next(item["ip"] for item in auth if item.get("brute_force_burst"))
    lines = [item for item in auth if item.get("ip") == burst][:40]
    lines += [item for item in auth if item["label"] == "benign"][:20]
    lines.sort(key=lambda item: item["source"].rsplit("#L", 1)[-1].zfill(8))
    (here / "auth.log").write_text("".join(item["line"] + "\n" for item in lines))

    privesc = [json.loads(line) for line in (corpus / "privesc.jsonl").open()]
    real = [item for item in privesc if not item["synthetic"]][:60]
    (here / "privesc.log").write_text("".join(item["line"] + "\n" for item in real))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

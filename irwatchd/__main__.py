"""Entry point for `python -m irwatchd`."""

from __future__ import annotations

import sys

from irwatchd.cli.main import main

if __name__ == "__main__":
    sys.exit(main())

"""Run the benchmark from a checkout: ``python benchmarks/bench.py --help``.

A thin wrapper around :func:`adcvsr_cli.bench.main` (same as ``python -m adcvsr_cli.bench``)
that works without installing the package.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adcvsr_cli.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

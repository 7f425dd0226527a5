"""Run the benchmark from a checkout: ``python benchmarks/bench.py --help``.

:func:`adcvsr_cli.bench.main` (the same as ``python -m adcvsr_cli.bench`` and ``adcvsr bench``)
plus what only a development checkout has: the shared folder found next to the repository
(``../shared``, or ``.bench-data/``, a device session's copy) when ``--shared`` is not given,
and the project's targets (``benchmarks/targets.py``) added to the report.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from targets import evaluate_targets  # noqa: E402

from adcvsr_cli.bench import main  # noqa: E402


def shared_folder() -> Path | None:
    """``.bench-data/`` of the checkout (copied for a device session) or ``../shared``."""
    for root in (REPO / ".bench-data", REPO.parent / "shared"):
        if root.is_dir():
            return root
    return None


def run(argv: list[str]) -> int:
    if "--shared" not in argv and not os.environ.get("ADCVSR_SHARED"):
        found = shared_folder()
        if found is not None:
            argv = [*argv, "--shared", str(found)]

    def add_targets(report: dict) -> None:
        report["targets"] = evaluate_targets(report)

    return main(argv, on_report=add_targets)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    from released import SHARED

    if not SHARED.is_dir():
        pytest.fail(f"the shared folder is missing at {SHARED}")
    return SHARED

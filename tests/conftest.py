import os
import sys
from pathlib import Path

# One torch thread for the whole suite, set before anything imports torch and inherited by every
# subprocess and Ray worker: outputs compared across processes (a Ray actor, which Ray starts with
# one thread, against this process; a CLI subprocess against a library call) then sum in the same
# order, and a 2-core CI machine is not oversubscribed. A user's runs keep torch's default.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    from released import SHARED

    if not SHARED.is_dir():
        pytest.fail(f"the shared folder is missing at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def released_files(tmp_path_factory, shared_dir):
    """The parity fixture's weights in the released AdcSR file formats (full size, ~20 s)."""
    from released import write_manifest_files

    d = tmp_path_factory.mktemp("released")
    net, dec = d / "net_params_200.pkl", d / "halfDecoder.ckpt"
    write_manifest_files(net, dec)
    return net, dec


@pytest.fixture(scope="session")
def converted_adcsr(released_files, tmp_path_factory):
    """The parity weights converted to a native checkpoint by the real converter."""
    from adcvsr_cli.weights import convert_adcsr

    out = tmp_path_factory.mktemp("native") / "adcsr-parity.safetensors"
    convert_adcsr(*released_files, out)
    return out

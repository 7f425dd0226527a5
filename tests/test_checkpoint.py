import json
import struct

import pytest
import torch
from safetensors.torch import save_file
from tiny import tiny_dims

from adcvsr_cli.errors import CheckpointError
from adcvsr_cli.model import AdcVSR, init_random_
from adcvsr_cli.weights import FORMAT_VERSION, load_native, read_native_header, save_native


def _model(temporal=False, seed=0):
    m = AdcVSR(tiny_dims(temporal=temporal)).eval()
    init_random_(m, seed=seed)
    # Loaded weights do not require grad; CPU convolutions pick another kernel when they do.
    return m.requires_grad_(False)


@pytest.mark.parametrize("temporal", [False, True])
def test_round_trip_gives_the_same_output(tmp_path, temporal):
    m = _model(temporal)
    p = tmp_path / "m.safetensors"
    save_native(m.state_dict(), m.dims, p, source="test", metadata={"note": "x"})
    header = read_native_header(p)
    assert header.dims == m.dims and header.format_version == FORMAT_VERSION
    assert header.source == "test" and header.metadata["note"] == "x"
    loaded = load_native(p)
    assert loaded.dims.has_temporal == temporal
    x = torch.rand(4, 3, 16, 32) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(m(x, 2), loaded(x, 2))
    assert all(not p.requires_grad for p in loaded.parameters())


def test_load_casts_dtype(tmp_path):
    m = _model()
    p = tmp_path / "m.safetensors"
    save_native(m.state_dict(), m.dims, p, source="t")
    assert all(
        t.dtype == torch.bfloat16
        for t in load_native(p, dtype=torch.bfloat16).state_dict().values()
    )


def _raw(tmp_path, state, meta):
    p = tmp_path / "raw.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(p), metadata=meta)
    return p


def _meta(d, **over):
    meta = {
        "format": "adcvsr-native",
        "format_version": FORMAT_VERSION,
        "dims": d.to_json(),
        "source": "",
    }
    meta.update(over)
    return meta


def test_strict_loading_failures(tmp_path):
    m = _model()
    sd = dict(m.state_dict())
    first = next(iter(sd))

    missing = dict(sd)
    del missing[first]
    with pytest.raises(CheckpointError, match=r"1 missing: " + first.replace(".", r"\.")):
        load_native(_raw(tmp_path, missing, _meta(m.dims)))

    extra = dict(sd, **{"unet.bogus.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"1 unexpected: unet\.bogus\.weight"):
        load_native(_raw(tmp_path, extra, _meta(m.dims)))

    wrong = dict(sd, **{first: torch.zeros(1, 2, 3)})
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_native(_raw(tmp_path, wrong, _meta(m.dims)))

    with pytest.raises(CheckpointError, match="format version '99'"):
        load_native(_raw(tmp_path, sd, _meta(m.dims, format_version="99")))

    with pytest.raises(CheckpointError, match="not an adcvsr checkpoint"):
        load_native(_raw(tmp_path, sd, {"format": "other"}))

    with pytest.raises(CheckpointError, match="invalid dims"):
        load_native(_raw(tmp_path, sd, _meta(m.dims, dims=json.dumps({"unet": {"widths": [7]}}))))

    with pytest.raises(CheckpointError):  # save refuses a mismatching state too
        save_native(missing, m.dims, tmp_path / "never.safetensors", source="")
    assert not (tmp_path / "never.safetensors").exists()


def test_damaged_files_raise_checkpoint_error(tmp_path):
    m = _model()
    p = tmp_path / "m.safetensors"
    save_native(m.state_dict(), m.dims, p, source="")
    data = p.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "pickle": b"\x80\x02}q\x00.",
        "huge header": struct.pack("<Q", 1 << 40) + b"{}",
    }
    for name, blob in cases.items():
        q = tmp_path / f"{name}.safetensors"
        q.write_bytes(blob)
        with pytest.raises(CheckpointError, match=str(q.name)):
            load_native(q)
    with pytest.raises(CheckpointError, match="no such"):
        load_native(tmp_path / "absent.safetensors")


def test_load_reads_tensors_straight_onto_the_device_in_the_dtype(tmp_path, monkeypatch):
    """safetensors is asked for the target device; no tensor passes through another one."""
    import adcvsr_cli.weights.native as native

    m = _model()
    p = tmp_path / "m.safetensors"
    save_native(m.state_dict(), m.dims, p, source="t")
    opened: list[str] = []
    real = native.safe_open

    def spy(path, framework, device="cpu"):
        opened.append(device)
        return real(path, framework=framework, device=device)

    monkeypatch.setattr(native, "safe_open", spy)
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    loaded = load_native(p, device=device, dtype=torch.float16)
    assert opened == ["cpu", device]  # the header (no tensor read), then the tensors
    assert {(t.device.type, t.dtype) for t in loaded.state_dict().values()} == {
        (torch.device(device).type, torch.float16)
    }


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    """A shared cache needs files others can read: the mode is 0666 less the umask, not 0600."""
    import os

    m = _model()
    old = os.umask(umask)
    try:
        save_native(m.state_dict(), m.dims, tmp_path / "m.safetensors", source="t")
    finally:
        os.umask(old)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_dims

from adcvsr_cli.errors import ConversionError
from adcvsr_cli.model import AdcVSR, init_random_
from adcvsr_cli.weights import load_native, read_native_header
from adcvsr_cli.weights.convert import (
    convert_adcsr,
    map_official_key,
    map_state,
    safe_load,
    to_released_layout,
    write_released_files,
)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize(
    ("key", "source", "native"),
    [
        ("module.body.1.conv_in.weight", "net_params", "unet.conv_in.weight"),
        (
            "module.body.1.body.0.resnets.0.conv1.weight",
            "net_params",
            "unet.down_blocks.0.resnets.0.conv1.weight",
        ),
        (
            "module.body.1.body.4.attentions.0.proj_in.bias",
            "net_params",
            "unet.mid_block.attentions.0.proj_in.bias",
        ),
        (
            "module.body.1.body.8.resnets.2.norm1.weight",
            "net_params",
            "unet.up_blocks.3.resnets.2.norm1.weight",
        ),
        ("module.body.1.body.9.weight", "net_params", "unet.conv_norm_out.weight"),
        ("module.body.1.body.11.bias", "net_params", "unet.conv_out.bias"),
        (
            "module.body.2.attentions.0.to_q.weight",
            "net_params",
            "decoder.mid_block.attentions.0.to_q.weight",
        ),
        (
            "decoder.up_blocks.3.resnets.0.conv_shortcut.weight",
            "half_decoder",
            "decoder.up_blocks.3.resnets.0.conv_shortcut.weight",
        ),
        ("decoder.conv_out.bias", "half_decoder", "decoder.conv_out.bias"),
        ("decoder.conv_in.weight", "half_decoder", None),
        ("decoder.mid_block.resnets.0.conv1.weight", "half_decoder", None),
        ("encoder.conv_in.weight", "half_decoder", None),
    ],
)
def test_key_mapping(key, source, native):
    assert map_official_key(key, source) == native


def test_key_mapping_refuses_unknown_layouts():
    for key, source in [
        ("module.body.3.x", "net_params"),
        ("module.body.1.body.10.weight", "net_params"),
        ("decoder.foo.weight", "half_decoder"),
    ]:
        with pytest.raises(ConversionError, match="key"):
            map_official_key(key, source)


def test_released_layout_round_trips_and_matches_the_manifest(shared_dir):
    import json

    from adcvsr_cli.model import adcsr_dims
    from adcvsr_cli.weights import expected_shapes

    # Zero-stride stand-ins: right shapes, no memory.
    state = {k: torch.zeros(()).expand(s) for k, s in expected_shapes(adcsr_dims()).items()}
    net, dec = to_released_layout(state)
    rows = json.loads((shared_dir / "fixtures/adcsr/adcsr_checkpoint_keys.json").read_text())
    assert {r["key"]: tuple(r["shape"]) for r in rows["net_params"]} == {
        k: tuple(v.shape) for k, v in net.items()
    }
    used = {
        r["key"]: tuple(r["shape"])
        for r in rows["half_decoder"]
        if map_official_key(r["key"], "half_decoder")
    }
    assert used == {k: tuple(v.shape) for k, v in dec.items()}
    back, merged, ignored = map_state(net, dec)
    assert set(back) == set(state) and merged == 524 and not ignored


@pytest.mark.slow
def test_parity_with_the_reference_through_converter_and_loader(converted_adcsr, shared_dir):
    from adcvsr_cli.engine.colorfix import adain

    ref = load_file(str(shared_dir / "fixtures/adcsr/parity_a.safetensors"))
    model = load_native(converted_adcsr)
    with torch.inference_mode():
        latent = model.latent(ref["lr"])
        sr = model.decoder.decode_up(latent)
        fixed = adain(sr, ref["lr"])
    errs = {
        "latent": rel(latent, ref["latent"]),
        "sr_raw": rel(sr, ref["sr_raw"]),
        "sr_colorfix": rel(fixed, ref["sr_colorfix"]),
    }
    print("parity relative L2:", errs)
    assert all(e < 1e-4 for e in errs.values()), errs
    h = read_native_header(converted_adcsr)
    assert h.metadata["arch"] == "adcsr" and len(h.metadata["net_params_sha256"]) == 64


def _tiny_released(tmp_path, **kw):
    m = AdcVSR(tiny_dims()).eval()
    init_random_(m, seed=7)
    net, dec = tmp_path / "net.pkl", tmp_path / "dec.ckpt"
    write_released_files(m.state_dict(), net, dec, **kw)
    return m, net, dec


def test_tiny_conversion_equals_the_source_network(tmp_path):
    from released import lightning_entries

    m, net, dec = _tiny_released(tmp_path, extra_checkpoint_entries=lightning_entries())
    out = tmp_path / "out.safetensors"
    report = convert_adcsr(net, dec, out, dims=m.dims)
    assert report.tensors == len(m.state_dict()) and report.aliases_merged > 0
    loaded = load_native(out)
    for k, v in m.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_converter_refuses_different_aliases(tmp_path):
    m, net, dec = _tiny_released(tmp_path)
    sd = torch.load(net, weights_only=True)
    k = "module.body.1.body.0.resnets.0.conv1.weight"
    sd[k] = sd[k].clone() + 1
    torch.save(sd, net)
    with pytest.raises(ConversionError, match="hold different tensors"):
        convert_adcsr(net, dec, tmp_path / "o.safetensors", dims=m.dims)
    assert not (tmp_path / "o.safetensors").exists()


def test_converter_refuses_missing_and_misshaped_tensors(tmp_path):
    m, net, dec = _tiny_released(tmp_path)
    ck = torch.load(dec, weights_only=True)
    del ck["state_dict"]["decoder.conv_out.weight"]
    torch.save(ck, dec)
    with pytest.raises(ConversionError, match=r"missing: decoder\.conv_out\.weight"):
        convert_adcsr(net, dec, tmp_path / "o.safetensors", dims=m.dims)
    with pytest.raises(
        ConversionError, match="wrong shape|missing"
    ):  # the full-size dims do not fit
        convert_adcsr(net, dec, tmp_path / "o.safetensors")
    assert list(tmp_path.glob("o.safetensors*")) == [] and not list(tmp_path.glob(".o.*"))


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("force_env", [False, True])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, force_env):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    torch.save({"module.body.1.conv_in.weight": torch.zeros(1), "x": Evil(marker)}, evil)
    _, _, dec = _tiny_released(tmp_path)
    env = dict(os.environ)
    if force_env:
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "adcvsr_cli",
            "convert",
            "--net-params",
            str(evil),
            "--half-decoder",
            str(dec),
            "-o",
            str(tmp_path / "o.safetensors"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert "refused" in r.stderr and "evil.pkl" in r.stderr and "system" in r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()


def test_plain_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "plain.pkl"
    p.write_bytes(pickle.dumps(Evil(marker), protocol=2))
    with pytest.raises(ConversionError, match="refused|cannot read"):
        safe_load(p)
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 10, 0.5])
def test_truncated_or_garbage_files_are_clear_errors(tmp_path, cut):
    m, net, dec = _tiny_released(tmp_path)
    data = net.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut
    net.write_bytes(data[:n])
    with pytest.raises(ConversionError, match=r"net\.pkl: .*(empty|truncated|header)"):
        convert_adcsr(net, dec, tmp_path / "o.safetensors", dims=m.dims)
    (tmp_path / "text.pkl").write_text("hello world")
    with pytest.raises(ConversionError, match="not a PyTorch checkpoint"):
        safe_load(tmp_path / "text.pkl")


def test_every_damaged_checkpoint_is_a_conversion_error(tmp_path):
    """Cut-off and overwritten files, zip and legacy: safe_load reads them or raises
    ConversionError naming the file, never another exception (its except lists torch's)."""
    import random
    import warnings

    _, net, dec = _tiny_released(tmp_path)
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(6.0)}, legacy, _use_new_zipfile_serialization=False)
    rng, bad = random.Random(0), tmp_path / "bad.pkl"
    refused = 0
    for src in (net, dec, legacy):
        data = src.read_bytes()
        damaged = [data[: rng.randrange(1, len(data))] for _ in range(40)]
        for _ in range(40):
            b, i, n = bytearray(data), rng.randrange(4, len(data)), rng.choice((1, 8, 64))
            b[i : i + n] = rng.randbytes(n)
            damaged.append(bytes(b))
        for blob in damaged:
            bad.write_bytes(blob)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns about odd pickle protocols
                try:
                    safe_load(bad)
                except ConversionError as e:
                    assert "bad.pkl" in str(e)
                    refused += 1
    assert refused > 150  # most damage is caught (some only hits tensor bytes)


def test_missing_input_file(tmp_path):
    with pytest.raises(ConversionError, match="no such file"):
        convert_adcsr(tmp_path / "a.pkl", tmp_path / "b.ckpt", tmp_path / "o.safetensors")
    assert Path(tmp_path / "o.safetensors").exists() is False


def test_parity_recipe_matches_the_fixture_readme():
    """The shared recipe (used by tests and the benchmark) follows the fixture's README."""
    import math
    import zlib

    from adcvsr_cli.parity import recipe_tensor

    k = "module.body.1.conv_in.weight"
    g = torch.Generator().manual_seed(zlib.crc32(k.encode()))
    ref = torch.randn([240, 12, 3, 3], generator=g, dtype=torch.float64) / math.sqrt(12 * 9)
    assert torch.equal(recipe_tensor(k, [240, 12, 3, 3]), ref.float())
    norm = recipe_tensor("decoder.conv_norm_out.weight", [64])
    assert (
        abs(float(norm.mean()) - 1) < 0.05
        and float(recipe_tensor("x.bias", [64]).abs().max()) < 0.5
    )


def test_hashes_the_caller_just_verified_are_not_computed_again(tmp_path, monkeypatch):
    import adcvsr_cli.weights.convert as conv

    m, net, dec = _tiny_released(tmp_path)
    calls = []
    real = conv.sha256_file
    monkeypatch.setattr(conv, "sha256_file", lambda p: calls.append(p) or real(p))
    given = {"net_params": "a" * 64, "half_decoder": "b" * 64}
    convert_adcsr(net, dec, tmp_path / "o.safetensors", dims=m.dims, source_sha256=given)
    assert calls == []
    meta = read_native_header(tmp_path / "o.safetensors").metadata
    assert (meta["net_params_sha256"], meta["half_decoder_sha256"]) == (
        given["net_params"],
        given["half_decoder"],
    )
    convert_adcsr(net, dec, tmp_path / "p.safetensors", dims=m.dims)
    assert len(calls) == 2


def test_convert_output_follows_the_umask(tmp_path):
    """What `adcvsr convert -o` writes (through convert_adcsr) is group-readable under umask 002."""
    from tiny import tiny_dims

    _, net, dec = _tiny_released(tmp_path)
    out = tmp_path / "shared.safetensors"
    old = os.umask(0o002)
    try:
        convert_adcsr(net, dec, out, dims=tiny_dims())
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o664

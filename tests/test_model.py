import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_dims

from adcvsr_cli.model import (
    PHASE_UPSAMPLE_PIXELS,
    AdcVSR,
    AdcVSRDims,
    DecoderDims,
    Layout,
    TemporalDims,
    UNetDims,
    Upsample,
    adcsr_dims,
    adcvsr_dims,
    count_parameters,
    group_count,
    init_random_,
    temporal_block_count,
    upsample_conv,
    zero_temporal_,
)


def test_group_counts_follow_the_pruned_rule():
    assert [group_count(c) for c in (240, 720, 480, 960, 1440, 1920, 64, 12)] == [
        24,
        24,
        32,
        32,
        32,
        32,
        32,
        12,
    ]


def test_full_size_parameter_counts_and_block_count():
    with torch.device("meta"):
        adcsr, adcvsr = AdcVSR(adcsr_dims()), AdcVSR(adcvsr_dims())
    assert count_parameters(adcsr) == 456_073_683
    assert temporal_block_count(adcsr) == 0
    assert temporal_block_count(adcvsr) == 38
    widths = sorted(m.conv_a.in_channels for m in adcvsr.modules() if hasattr(m, "conv_a"))
    assert widths.count(240) == 10 and widths.count(480) == 10 and widths.count(960) == 18
    extra = count_parameters(adcvsr) - count_parameters(adcsr)
    assert extra == sum(2 * (3 * c * c + c) for c in widths)
    assert abs(count_parameters(adcvsr) / 1e9 - 0.57) < 0.01


@pytest.mark.parametrize(
    "bad",
    [
        lambda: UNetDims(widths=(240, 480), attention=(True,)),
        lambda: UNetDims(widths=(250, 480, 960, 960)),
        lambda: UNetDims(head_dim=0),
        lambda: TemporalDims(padding_mode="circular"),
        lambda: TemporalDims(kernel_size=2),
        lambda: DecoderDims(widths=()),
        lambda: AdcVSRDims(unshuffle=3),
        lambda: AdcVSRDims(decoder=DecoderDims(latent_channels=128)),
    ],
)
def test_dims_are_validated(bad):
    with pytest.raises(ValueError):
        bad()


def test_dims_json_round_trip():
    d = tiny_dims(temporal=True, padding_mode="zeros")
    assert AdcVSRDims.from_json(d.to_json()) == d
    assert AdcVSRDims.from_json(adcsr_dims().to_json()) == adcsr_dims()
    assert adcsr_dims().scale == 4 and adcsr_dims().multiple == 16
    with pytest.raises(TypeError):
        AdcVSRDims.from_dict({"unet": {"bogus": 1}})


def test_output_shape_and_input_checks():
    m = AdcVSR(tiny_dims()).eval()
    init_random_(m)
    with torch.inference_mode():
        y = m(torch.zeros(2, 3, 16, 32))
    assert y.shape == (2, 3, 64, 128)
    with pytest.raises(ValueError, match="multiples of 16"):
        m(torch.zeros(1, 3, 20, 32))
    with pytest.raises(ValueError, match="clips"):
        m(torch.zeros(3, 3, 16, 16), 2)


def _pair(padding_mode="replicate"):
    torch.manual_seed(0)
    plain = AdcVSR(tiny_dims()).eval()
    init_random_(plain, seed=3)
    temporal = AdcVSR(tiny_dims(temporal=True, padding_mode=padding_mode)).eval()
    init_random_(temporal, seed=4)
    missing, unexpected = temporal.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".temporal_" in k for k in missing)
    return plain, temporal


@pytest.mark.parametrize("layout", [Layout(), Layout(mid=True, up=True)], ids=lambda x: x.name)
@pytest.mark.parametrize("shape", [(6, 3, 16, 16), (2, 2, 32, 48)], ids=str)
def test_zero_temporal_weights_equal_adcsr_frame_by_frame(layout, shape):
    # Both upsampling paths of the CPU run at these sizes (inputs of 1x1 to 96x64 pixels).
    plain, temporal = _pair()
    zero_temporal_(temporal)
    plain.set_layout(layout)
    temporal.set_layout(layout)
    n, frames, h, w = shape
    x = torch.rand(n, 3, h, w) * 2 - 1
    with torch.inference_mode():
        a = plain(x)
        b = temporal(x, frames=frames)
    assert torch.equal(a, b)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_cpu_upsampling_path_computes_upsample_then_convolution(channels_last):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    up = Upsample(24).to(memory_format=fmt)
    with torch.inference_mode():
        for h, w, phases in ((16, 16, True), (8, 32, True), (20, 14, True), (4, 4, False)):
            assert (h * w >= PHASE_UPSAMPLE_PIXELS) is phases
            x = torch.randn(2, 24, h, w).contiguous(memory_format=fmt)
            ref = F.conv2d(
                F.interpolate(x, scale_factor=2.0), up.conv.weight, up.conv.bias, padding=1
            )
            y = up(x)
            assert y.shape == ref.shape and _rel(y, ref) < 1e-5
            assert torch.equal(y, upsample_conv(x, up.conv)) is phases  # the path taken
            if phases:
                assert y.is_contiguous(memory_format=fmt)


def test_temporal_blocks_reach_neighbours_but_not_other_clips():
    _, temporal = _pair()
    x = torch.rand(2 * 5, 3, 16, 16) * 2 - 1
    x2 = x.clone()
    x2[2] += 0.5  # frame t=2 of clip 0
    with torch.inference_mode():
        a, b = temporal(x, frames=5), temporal(x2, frames=5)
    change = (a - b).flatten(1).abs().amax(1)
    assert change[2] > 0
    assert change[1] > 0 and change[3] > 0  # neighbours see it
    assert torch.all(change[5:] == 0)  # clip 1 does not


@pytest.mark.parametrize("mode", ["replicate", "zeros"])
def test_clip_end_padding(mode):
    from adcvsr_cli.model import TemporalBlock

    block = TemporalBlock(2, TemporalDims(padding_mode=mode))
    with torch.no_grad():
        block.conv_a.weight.zero_()
        block.conv_a.bias.zero_()
        block.conv_a.weight[:, :, 0] = torch.eye(2)  # y[t] = x[t-1]
        block.conv_b.weight.zero_()
        block.conv_b.bias.zero_()
        block.conv_b.weight[:, :, 1] = torch.eye(2)
    x = torch.arange(1, 4, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 2, 1, 1).contiguous()
    y = block(x, 3) - x  # relu(x[t-1]) with the clip padded at t=-1
    first = 1.0 if mode == "replicate" else 0.0
    assert y[:, 0, 0, 0].tolist() == [first, 1.0, 2.0]


def test_model_module_imports_only_torch():
    # Whatever torch itself pulls in is fine; the model module must add nothing else.
    code = (
        "import sys, torch; before = set(sys.modules); import adcvsr_cli.model; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "bad = sorted(new - {'adcvsr_cli'}); print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

"""The library pipeline on images and clips, with tiny networks and with the parity weights."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from tiny import tiny_dims, write_tiny_weights

from adcvsr_cli.engine.colorfix import adain
from adcvsr_cli.engine.frames import to_array, to_tensor
from adcvsr_cli.engine.upscaler import ChunkStats
from adcvsr_cli.errors import UsageError
from adcvsr_cli.media import read_image, write_image
from adcvsr_cli.model import AdcVSR, init_random_
from adcvsr_cli.pipeline import (
    UpscaleOptions,
    Upscaler,
    resolve_device,
    resolve_precision,
    upscale,
)


def tiny_upscaler(temporal=False, seed=0):
    m = AdcVSR(tiny_dims(temporal=temporal)).eval()
    init_random_(m, seed=seed)
    return Upscaler(m, device=torch.device("cpu"), dtype=torch.float32, source="tiny")


def smooth_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 90 * np.sin(xx / 7 + c) * np.cos(yy / 9 - c) for c in range(3)], -1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def test_uint8_and_uint16_conversions_round_trip():
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = to_tensor(a, torch.device("cpu"))
    assert t.shape == (3, 5, 7) and float(t.min()) >= -1 and float(t.max()) <= 1
    assert np.array_equal(to_array(t, deep=False), a)
    b = np.random.default_rng(1).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    tb = to_tensor(b, torch.device("cpu"))
    assert np.array_equal(to_array(tb, deep=True), b)  # no truncation to 8 bits
    # Rounded, not truncated: 0.6 of a level up rounds up.
    x = torch.full((3, 1, 1), (10.6 / 255) * 2 - 1)
    assert to_array(x, deep=False)[0, 0, 0] == 11


def test_options_validation_and_sizes():
    assert UpscaleOptions().output_size(45, 71) == (180, 284)
    assert UpscaleOptions(scale=1.5).output_size(101, 51, even=True) == (152, 76)
    assert UpscaleOptions(width=1920).output_size(640, 360) == (1920, 1080)
    assert UpscaleOptions(width=100, height=50).output_size(640, 360) == (100, 50)
    for bad in (
        dict(scale=0),
        dict(tile="abc"),
        dict(tile=20),
        dict(color_fix="lab"),
        dict(chunk=0),
        dict(width=-3),
    ):
        with pytest.raises(UsageError):
            UpscaleOptions(**bad).validate()
    assert resolve_device("cpu").type == "cpu"
    assert resolve_precision("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(UsageError):
        resolve_precision("int8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.parametrize("shape", [(45, 71), (17, 20), (33, 50)])
def test_odd_image_sizes_give_exactly_4x_without_seams(tmp_path, shape):
    h, w = shape
    up = tiny_upscaler()
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    img = smooth_image(h, w)
    write_image(src, img)
    rep = upscale(src, dst, up, UpscaleOptions(color_fix="none", tile=0))
    out, alpha = read_image(dst)
    assert out.shape == (4 * h, 4 * w, 3) and alpha is None
    assert rep.frames_in == rep.frames_out == 1
    # The padded border is replicated input, so the output near the crop line continues smoothly:
    # the step across the last rows/cols is no bigger than steps elsewhere in the image.
    o = out.astype(np.float32)
    step_rows = np.abs(np.diff(o, axis=0)).mean(axis=(1, 2))
    step_cols = np.abs(np.diff(o, axis=1)).mean(axis=(0, 2))
    assert step_rows[-4:].max() <= 3 * np.median(step_rows) + 1
    assert step_cols[-4:].max() <= 3 * np.median(step_cols) + 1


def test_image_equals_direct_network_call_within_one_level(tmp_path):
    up = tiny_upscaler(seed=3)
    img = smooth_image(32, 48, seed=2)
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    write_image(src, img)
    upscale(src, dst, up, UpscaleOptions(color_fix="adain", tile=0))
    lr = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.inference_mode():
        ref = adain(up.model(lr), lr)
    ref = ((ref[0] / 2 + 0.5).clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    out, _ = read_image(dst)
    assert np.abs(out.astype(np.int32) - ref.astype(np.int32)).max() <= 1


def _video(path, frames=12, size=(48, 32), rate=10):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate, options={"qp": "0"})
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = smooth_image(size[1], size[0], seed=i)
            img = np.roll(img, i, axis=1)
            for p in s.encode(__import__("av").VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


@pytest.mark.parametrize("temporal", [False, True])
def test_video_through_chunks_keeps_every_frame(tmp_path, temporal):
    src = tmp_path / "in.mp4"
    _video(src, frames=13)
    up = tiny_upscaler(temporal=temporal)
    events = []
    rep = upscale(
        src,
        tmp_path / "out.mkv",
        up,
        UpscaleOptions(chunk=5, chunk_overlap=2, batch=5),
        on_event=events.append,
    )
    assert rep.frames_in == rep.frames_out == 13
    assert (rep.out_width, rep.out_height) == (192, 128)
    plan = [e for e in events if e["type"] == "plan"][0]
    assert plan["temporal"] is temporal and plan["chunk_overlap"] == (2 if temporal else 0)
    assert rep.chunks == (4 if temporal else 3)


def test_non_integer_scale_resizes_on_the_device(tmp_path):
    src = tmp_path / "in.mp4"
    _video(src, frames=3, size=(48, 32))
    rep = upscale(src, tmp_path / "out.mp4", tiny_upscaler(), UpscaleOptions(scale=1.5))
    assert (rep.out_width, rep.out_height) == (72, 48)


@pytest.mark.slow
def test_cli_convert_and_upscale_reproduce_the_reference(released_files, tmp_path):
    """`adcvsr convert` on released-format files, then `adcvsr upscale` on a PNG: within one level."""
    from released import PARITY
    from safetensors.torch import load_file

    from adcvsr_cli.weights import load_native

    exe = shutil.which("adcvsr")
    assert exe, "the console script must be installed"
    net, dec = released_files
    out = tmp_path / "adcsr.safetensors"
    r = subprocess.run(
        [exe, "convert", "--net-params", str(net), "--half-decoder", str(dec), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    lr = load_file(str(PARITY))["lr"][:1]
    img = ((lr[0] / 2 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    write_image(tmp_path / "lr.png", img)
    r = subprocess.run(
        [
            exe,
            "upscale",
            str(tmp_path / "lr.png"),
            str(tmp_path / "sr.png"),
            "--weights",
            str(out),
            "--device",
            "cpu",
            "--color-fix",
            "adain",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    sr, _ = read_image(tmp_path / "sr.png")
    model = load_native(out)
    lrq = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.inference_mode():
        ref = adain(model(lrq), lrq)
    ref8 = ((ref[0] / 2 + 0.5).clamp(0, 1) * 255).round().permute(1, 2, 0).numpy().astype(np.int32)
    assert sr.shape == (192, 320, 3)
    assert np.abs(sr.astype(np.int32) - ref8).max() <= 1


def test_model_weights_from_a_native_path(tmp_path):
    from adcvsr_cli.pipeline import load_model

    p = write_tiny_weights(tmp_path / "tiny.safetensors", source="tiny")
    up = load_model(str(p), device="cpu")
    assert up.dims == tiny_dims() and up.device.type == "cpu"
    assert os.path.exists(p)


class Overflowing:
    """The shared network, overflowing in fp16 on bright inputs (mean > 0)."""

    def __init__(self, up):
        self.real, self.up, self.calls = up.network, up, []

    def __call__(self, x, clip_len):
        self.calls.append(float(x.mean()))
        y = self.real(x, clip_len)
        return y * float("inf") if float(x.mean()) > 0 else y

    def reconfigured(self, dtype, copy_model=False):
        return self.real.reconfigured(dtype, copy_model=copy_model)


def fp16_tiny(temporal=False):
    base = tiny_upscaler(temporal=temporal)
    return Upscaler(base.model.half(), device=torch.device("cpu"), dtype=torch.float16)


def test_fp16_overflow_reruns_in_bf16():
    """A non-finite fp16 output is not passed on: the call is rerun in bf16, with a warning."""
    up = fp16_tiny()
    events = []
    up.emit = events.append
    up.network = Overflowing(up)
    from adcvsr_cli.engine.chunking import BackoffRunner, Plan

    x = torch.rand(2, 3, 16, 16)  # bright: overflows
    net = up.run_network()
    y = up.upscale_clip(x, BackoffRunner(Plan(0, 2), Plan(64, 1)), net=net)
    assert torch.isfinite(y).all() and y.shape == (2, 3, 64, 64)
    assert len(up.network.calls) == 1 and net.precision == "bf16"
    assert any("bf16" in e.get("message", "") for e in events)
    # The shared network is untouched: still fp16, the next run starts there.
    assert up.dtype == torch.float16 and up.run_network().precision == "fp16"
    assert all(p.dtype == torch.float16 for p in up.model.parameters())


def test_an_overflow_in_one_file_leaves_the_next_file_in_fp16():
    up = fp16_tiny()
    up.network = Overflowing(up)
    before = {k: v.clone() for k, v in up.model.state_dict().items()}
    opts = UpscaleOptions(chunk=2, chunk_overlap=0, batch=2, tile=0)
    precisions = []
    for value in (230, 20):  # a bright file (overflows in fp16), then a dark one
        stats = ChunkStats()
        frames = [np.full((16, 16, 3), value, np.uint8)] * 4
        out = list(up.processor(opts, lambda w, h: (4 * w, 4 * h), stats=stats)(iter(frames)))
        assert len(out) == 4
        precisions.append(stats.precision)
    assert precisions == ["bf16", "fp16"]
    after = up.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fastpath_option_builds_a_working_forward():
    m = AdcVSR(tiny_dims()).eval()
    init_random_(m)
    ref = Upscaler(m, device=torch.device("cpu"), dtype=torch.float32)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        expected = ref.network(x, 1)
    fast = Upscaler(m, device=torch.device("cpu"), dtype=torch.float32, fastpath="channels_last")
    assert fast.network.info["layout"] == "channels_last"
    with torch.inference_mode():
        got = fast.network(x, 1)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert ((got - expected).norm() / expected.norm()) < 1e-3
    with pytest.raises(UsageError):
        Upscaler(m, device=torch.device("cpu"), dtype=torch.float32, fastpath="warp_drive")


class ShapeRecorder:
    """The shared network, recording the input shapes it sees; ``static`` claims compilation."""

    def __init__(self, up, static):
        from dataclasses import replace

        self.real, self.shapes = up.network, []
        self.fp = replace(up.network.fp, compile=static)

    def __call__(self, x, clip_len):
        self.shapes.append((tuple(x.shape), clip_len))
        return self.real(x, clip_len)


def _run_shots(temporal, static, lengths, chunk):
    up = tiny_upscaler(temporal=temporal)
    up.network = ShapeRecorder(up, static)
    assert up.static_shapes is static
    cuts = [sum(lengths[:i]) for i in range(1, len(lengths))]
    frames = [smooth_image(16, 32, seed=i) for i in range(sum(lengths))]
    opts = UpscaleOptions(chunk=chunk, chunk_overlap=2 if temporal else 0, batch=chunk, tile=0)
    stats = ChunkStats()
    process = up.processor(opts, lambda w, h: (4 * w, 4 * h), stats=stats, cuts=cuts)
    out = list(process(iter(frames)))
    assert len(out) == sum(lengths)
    return set(up.network.shapes), out


def test_a_compiled_network_sees_one_shape_per_file():
    # Shots of 3, 8 and 5 frames with chunks of 6: clips of 3, 6 and 5 frames unpadded.
    shapes, _ = _run_shots(True, False, [3, 8, 5], 6)
    assert {s[1] for s in shapes} == {3, 6, 5}
    shapes, _ = _run_shots(True, True, [3, 8, 5], 6)
    assert shapes == {((6, 3, 16, 32), 6)}
    # An image model: 15 frames in batches of 4 end in a batch of 3, padded to 4; the padded
    # frames are cropped and the frames out are those of the unpadded run (the tail batch's
    # within one level: a batch of 4 sums in another order than a batch of 3).
    plain_shapes, plain = _run_shots(False, False, [15], 4)
    shapes, padded = _run_shots(False, True, [15], 4)
    assert {s[0][0] for s in plain_shapes} == {4, 3} and {s[0][0] for s in shapes} == {4}
    assert all(np.array_equal(a, b) for a, b in zip(plain[:12], padded[:12], strict=True))
    tail = [
        np.abs(a.astype(int) - b.astype(int)).max()
        for a, b in zip(plain[12:], padded[12:], strict=True)
    ]
    assert max(tail) <= 1


def _two_shots(path, frames=10, size=(48, 32)):
    """A lossless clip whose second half is a different picture (a hard cut at frames // 2)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10, options={"qp": "0"})
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            shot = i >= frames // 2
            img = smooth_image(size[1], size[0], seed=7 if shot else 0)
            img = np.roll(255 - img if shot else img, i, axis=1)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_decode_side_cuts_and_post_aside_change_no_frame(tmp_path, monkeypatch):
    """``upscale`` finds scene cuts on the decode thread and (on the CPU) runs the post stage on
    a worker thread; its frames and cuts equal those of the processor, which runs both inline."""
    import threading

    from adcvsr_cli.engine import post as post_module
    from adcvsr_cli.engine import scenes
    from adcvsr_cli.media import open_source

    src = tmp_path / "in.mp4"
    _two_shots(src)
    seen: dict[str, set[str]] = {"detect": set(), "post": set()}
    feed, call = scenes.SceneDetector.feed, post_module.Post.__call__

    def spy_feed(self, arr):
        seen["detect"].add(threading.current_thread().name)
        return feed(self, arr)

    def spy_call(self, *args):
        seen["post"].add(threading.current_thread().name)
        return call(self, *args)

    monkeypatch.setattr(scenes.SceneDetector, "feed", spy_feed)
    monkeypatch.setattr(post_module.Post, "__call__", spy_call)
    up, opts = tiny_upscaler(), UpscaleOptions(batch=2)
    (tmp_path / "seq").mkdir()
    rep = upscale(src, tmp_path / "seq" / "%03d.png", up, opts)
    assert seen == {"detect": {"adcvsr-decode"}, "post": {"adcvsr-post"}}

    source = open_source(src, deinterlace=False, strict=False)
    frames = [f.array for f in source.frames(deep=False, want_alpha=False, warn=print)]
    source.close()
    seen = {"detect": set(), "post": set()}
    stats = ChunkStats()
    ref = list(up.processor(opts, lambda w, h: (4 * w, 4 * h), stats=stats)(iter(frames)))
    assert seen == {"detect": {"MainThread"}, "post": {"MainThread"}}
    assert rep.scene_cuts == stats.cuts == [5]
    written = sorted((tmp_path / "seq").iterdir())
    assert len(written) == len(ref) == 10
    for path, want in zip(written, ref, strict=True):
        assert np.array_equal(read_image(path)[0], want), path.name


def test_a_chunks_frames_travel_on_as_a_view_when_they_lie_together():
    """An image model's chunk output, cut into frames, goes on to post without a copy; frames
    from elsewhere (a temporal cross-fade, a gap) are stacked."""
    from adcvsr_cli.engine.stages import _together

    y = torch.randn(3, 3, 8, 8)
    whole = _together([y[0], y[1], y[2]])
    assert whole.data_ptr() == y.data_ptr() and torch.equal(whole, y)
    one = _together([y[1]])
    assert one.shape == (1, 3, 8, 8) and one.data_ptr() == y[1].data_ptr()
    gap = _together([y[0], y[2]])
    assert gap.data_ptr() != y.data_ptr() and torch.equal(gap, torch.stack([y[0], y[2]]))
    mixed = _together([y[0], y[1] * 0.5])
    assert torch.equal(mixed, torch.stack([y[0], y[1] * 0.5]))

"""RGB -> YUV planes on the device (engine/yuv.py) against the encoder's own converter (PyAV's
``reformat``, i.e. swscale, as the sink calls it), and frames built from planes (media/encode.py).

``python tests/test_yuv.py`` prints the max and mean absolute differences per case.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from adcvsr_cli.engine.yuv import layout_for, split_planes, to_planes
from adcvsr_cli.media.encode import frame_from_planes

BT709, FCC, BT601, SMPTE170M, SMPTE240M, BT2020 = 1, 4, 5, 6, 7, 9
FORMATS_8 = ("yuv420p", "yuv422p", "yuv444p")
FORMATS_10 = ("yuv420p10le", "yuv422p10le", "yuv444p10le")
# even sizes whose widths are not multiples of 16 (the frames' lines are padded), and one whose
# sides are multiples of 16 with an even chroma height
SIZES = ((34, 54), (18, 70), (32, 64))


def rgb_frames(h: int, w: int, deep: bool, seed: int = 0) -> np.ndarray:
    """Three frames: noise (every siting mistake shows), a smooth gradient, saturated colours."""
    top = 65535 if deep else 255
    rs = np.random.default_rng(seed)
    noise = rs.integers(0, top + 1, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.stack([xx * top // (w - 1), yy * top // (h - 1), (xx + yy) * top // (w + h - 2)], -1)
    colours = np.array([[top, 0, 0], [0, top, 0], [0, 0, top], [top] * 3, [0] * 3, [top, top, 0]])
    blocks = colours[(xx // 6 + yy // 6) % len(colours)]
    return np.stack([noise, ramp, blocks]).astype(np.uint16 if deep else np.uint8)


def swscale_planes(rgb: np.ndarray, pix_fmt: str, cs: int | None, full: bool) -> list[np.ndarray]:
    """Today's path: the sink's reformat from rgb24 / rgb48le (one thread, as the sink does:
    with slice threads swscale 9 writes wrong samples at slice borders now and then)."""
    kw = {"format": pix_fmt, "dst_color_range": 2 if full else 1, "threads": 1}
    if cs is not None:
        kw["dst_colorspace"] = cs
    src = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
    vf = av.VideoFrame.from_ndarray(rgb, format=src).reformat(**kw)
    dt = np.uint16 if "10" in pix_fmt else np.uint8
    return [
        np.frombuffer(p, dt).reshape(p.height, -1)[:, : p.width].astype(np.int64) for p in vf.planes
    ]


def levels_of(rgb: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8/uint16 -> (N, 3, H, W) float code values, as the post stage has them."""
    return torch.from_numpy(rgb.astype(np.float32)).permute(0, 3, 1, 2)


def device_planes(rgb: np.ndarray, pix_fmt: str, cs: int | None, full: bool):
    n, h, w, _ = rgb.shape
    deep = rgb.dtype == np.uint16
    layout = layout_for(pix_fmt, cs, full, w, h, deep_source=deep)
    assert layout is not None
    host = to_planes(levels_of(rgb), layout, deep)
    assert host.shape == (n, layout.frame_elements())
    return split_planes(host.numpy(), layout)


def differences(rgb: np.ndarray, pix_fmt: str, cs: int | None, full: bool) -> tuple[int, float]:
    """(max, mean) absolute difference over every plane of every frame."""
    diffs = []
    for frame, planes in zip(rgb, device_planes(rgb, pix_fmt, cs, full), strict=True):
        for want, got in zip(swscale_planes(frame, pix_fmt, cs, full), planes, strict=True):
            assert got.shape == want.shape
            diffs.append(np.abs(got.astype(np.int64) - want).ravel())
    d = np.concatenate(diffs)
    return int(d.max()), float(d.mean())


CASES = [
    (pix, cs, full)
    for pix in FORMATS_8 + FORMATS_10
    for cs in (BT709, FCC, BT601, SMPTE170M, SMPTE240M, BT2020, None)
    for full in (False, True)
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pix_fmt,cs,full", CASES)
def test_planes_agree_with_the_encoders_converter(pix_fmt, cs, full, size):
    worst, mean = differences(rgb_frames(*size, deep=False), pix_fmt, cs, full)
    assert worst <= 1
    # full-range chroma: swscale truncates where this rounds, hence about half a level there
    assert mean <= (0.45 if full else 0.1)


@pytest.mark.parametrize("pix_fmt,cs,full", [c for c in CASES if c[0] in FORMATS_10 or not c[2]])
def test_deep_sources_agree_with_the_encoders_converter(pix_fmt, cs, full):
    worst, mean = differences(rgb_frames(34, 54, deep=True), pix_fmt, cs, full)
    assert worst <= 1
    assert mean <= 0.4


def test_chroma_is_sited_in_the_centre_of_each_block():
    """One red pixel on grey: across it weighs half in its pair only; down, [1, 3, 3, 1] / 8."""
    rgb = np.full((1, 8, 8, 3), 128, np.uint8)
    rgb[0, 4, 4] = (255, 128, 128)
    _, _, v = device_planes(rgb, "yuv420p", BT601, False)[0]
    d = v.astype(np.int64) - 128
    # V of (255, 128, 128) - V of grey = 0.5 * (1 - 0.299) / (2 * (1 - 0.299)) * 127 * 224 / 255
    full = 127 * 224 / 255 / 2
    assert d[2, 2] == round(full * 3 / 8 / 2) and d[1, 2] == round(full / 8 / 2)
    assert d[:, [0, 1, 3]].max() == 0 and d[3].max() == 0 and d[0].max() == 0


def test_outputs_that_keep_rgb_frames():
    assert layout_for("rgb24", None, False, 64, 32) is None
    assert layout_for("yuv420p12le", BT709, False, 64, 32) is None
    assert layout_for("yuv420p", BT709, False, 63, 32) is None  # odd sizes: today's path
    assert layout_for("yuv420p", BT709, False, 64, 31) is None
    assert layout_for("yuv422p", BT709, False, 64, 31) is not None
    assert layout_for("yuv444p", BT709, False, 63, 31) is not None
    assert layout_for("yuv420p", BT709, False, 64, 6) is None  # swscale filters rows otherwise
    assert layout_for("yuv444p", BT709, False, 64, 6) is not None
    assert layout_for("yuv420p", 10, False, 64, 32) is None  # BT.2020 constant luminance
    assert layout_for("yuv420p", BT709, True, 64, 32, deep_source=True) is None
    assert layout_for("yuv420p10le", BT709, True, 64, 32, deep_source=True) is not None


def test_one_tensor_per_chunk_with_every_frames_planes():
    rgb = rgb_frames(18, 70, deep=False)
    layout = layout_for("yuv420p", BT709, False, 70, 18)
    out = to_planes(levels_of(rgb), layout, False)
    assert out.dtype == torch.uint8 and out.is_contiguous()
    assert out.shape == (3, 18 * 70 + 2 * 9 * 35)
    one = to_planes(levels_of(rgb[1:2]), layout, False)
    assert torch.equal(out[1:2], one)  # frames of a batch are converted independently


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le", "yuv444p10le"])
def test_frame_from_planes_fills_the_padded_lines(pix_fmt):
    h, w = 18, 70  # 70 is not a multiple of the frame's line alignment
    rgb = rgb_frames(h, w, deep=False)[:1]
    planes = device_planes(rgb, pix_fmt, BT709, False)[0]
    vf = frame_from_planes(planes, pix_fmt, w, h)
    assert vf.format.name == pix_fmt and (vf.width, vf.height) == (w, h)
    assert any(p.line_size > p.width * planes[0].itemsize for p in vf.planes)
    dt = planes[0].dtype
    for plane, want in zip(vf.planes, planes, strict=True):
        got = np.frombuffer(plane, dt).reshape(plane.height, -1)[:, : plane.width]
        assert np.array_equal(got, want)


def test_frame_from_planes_refuses_planes_of_another_format():
    planes = device_planes(rgb_frames(18, 70, deep=False)[:1], "yuv420p", BT709, False)[0]
    with pytest.raises(ValueError, match="uint16"):
        frame_from_planes(planes, "yuv420p10le", 70, 18)
    with pytest.raises(ValueError, match=r"yuv420p 72x18 takes planes \[\(\(18, 72\)"):
        frame_from_planes(planes, "yuv420p", 72, 18)
    with pytest.raises(ValueError, match="takes planes"):
        frame_from_planes(planes[:2], "yuv420p", 70, 18)


def parity_table() -> list[str]:
    """The max and mean absolute differences per case (8-bit and 16-bit RGB sources)."""
    names = {BT709: "bt709", BT601: "bt470bg", SMPTE170M: "smpte170m", BT2020: "bt2020nc"}
    rows = []
    for deep in (False, True):
        for pix, cs, full in CASES:
            if deep and pix in FORMATS_8 and full:
                continue
            worst, mean = differences(rgb_frames(34, 54, deep=deep), pix, cs, full)
            src = "rgb48" if deep else "rgb24"
            rng = "full" if full else "limited"
            rows.append(
                f"{src} {pix} {names.get(cs, 'default')} {rng}: max {worst} mean {mean:.3f}"
            )
    return rows


if __name__ == "__main__":
    print("\n".join(parity_table()))


# -- end to end: `adcvsr upscale` against the encoder's own conversion -------------------------


def decoded(path) -> tuple[dict, list[list[np.ndarray]]]:
    """The written video's colour tags and every frame's planes."""
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        tags = {
            "pix_fmt": cc.pix_fmt,
            "colorspace": cc.colorspace,
            "color_range": cc.color_range,
            "size": (cc.width, cc.height),
        }
        frames = []
        for f in c.decode(video=0):
            dt = np.uint16 if f.format.components[0].bits > 8 else np.uint8
            frames.append(
                [np.frombuffer(p, dt).reshape(p.height, -1)[:, : p.width] for p in f.planes]
            )
    return tags, frames


E2E = [
    # source pix_fmt, its colour tags, encoder arguments, pix_fmt written
    # (x264 lossless: --crf 0; `-e qp=0` is not, the default CRF 18 takes precedence over it)
    ("yuv420p", {"colorspace": BT709, "color_range": 1}, ["--crf", "0"], "yuv420p"),
    ("yuv420p10le", {"colorspace": BT2020, "color_range": 1}, ["--codec", "ffv1"], "yuv420p10le"),
    ("yuvj420p", {"colorspace": BT601, "color_range": 2}, ["--codec", "ffv1"], "yuv420p"),
]


@pytest.mark.parametrize("src_fmt,colour,codec,written", E2E)
def test_upscale_writes_what_the_encoders_converter_wrote(
    tmp_path, monkeypatch, src_fmt, colour, codec, written
):
    """Lossless outputs of `adcvsr upscale` (planes from the device) against the same run with
    RGB frames converted by the encoder's swscale (the path before): within one level."""
    import shutil
    import subprocess

    from media import make_video
    from tiny import cli_env, write_tiny_weights

    import adcvsr_cli.pipeline as pipeline
    from adcvsr_cli.engine.options import UpscaleOptions
    from adcvsr_cli.media import EncodeOptions
    from adcvsr_cli.media.encode import ContainerSink

    src = make_video(tmp_path / "in.mkv", size=(42, 24), frames=3, pix_fmt=src_fmt, color=colour)
    weights = write_tiny_weights(tmp_path / "tiny.safetensors")
    exe = shutil.which("adcvsr")
    assert exe, "the console script must be installed"
    new = tmp_path / "new.mkv"
    args = [exe, "upscale", str(src), str(new), "--weights", str(weights), "--device", "cpu"]
    r = subprocess.run(
        [*args, *codec, "-q"], capture_output=True, text=True, timeout=600, env=cli_env(tmp_path)
    )
    assert r.returncode == 0, r.stderr

    up = pipeline.load_model(str(weights), device="cpu")
    enc = EncodeOptions(codec="ffv1", crf=None) if "ffv1" in codec else EncodeOptions(crf=0)
    written_as: list[str] = []
    sent_planes: list[tuple[np.ndarray, ...]] = []
    real_write = ContainerSink.write

    def spy(sink, frame):
        planes = isinstance(frame.array, tuple)
        written_as.append("planes" if planes else "rgb")
        if planes:
            sent_planes.append(tuple(p.copy() for p in frame.array))
        real_write(sink, frame)

    monkeypatch.setattr(ContainerSink, "write", spy)
    pipeline.upscale(src, tmp_path / "same.mkv", up, UpscaleOptions(), encode=enc)
    assert written_as == ["planes"] * 3
    monkeypatch.setattr(pipeline, "layout_for", lambda *a, **k: None)  # the path before
    pipeline.upscale(src, tmp_path / "old.mkv", up, UpscaleOptions(), encode=enc)
    assert written_as == ["planes"] * 3 + ["rgb"] * 3

    tags_new, frames_new = decoded(new)
    tags_same, frames_same = decoded(tmp_path / "same.mkv")
    tags_old, frames_old = decoded(tmp_path / "old.mkv")
    assert tags_new == tags_old == tags_same
    assert tags_new["pix_fmt"] == written and tags_new["size"] == (168, 96)
    assert len(frames_new) == len(frames_old) == 3
    for a, b, c, sent in zip(frames_new, frames_old, frames_same, sent_planes, strict=True):
        for pa, pb, pc, ps in zip(a, b, c, sent, strict=True):
            assert np.array_equal(pc, ps)  # lossless: what was encoded is what was sent
            assert np.array_equal(pa, pc)  # the CLI ran the planes path
            assert np.abs(pa.astype(np.int64) - pb).max() <= 1

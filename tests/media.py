"""Media fixtures for the tests, generated with PyAV only (no ffmpeg binary, no binaries
committed). Small sizes keep every fixture in the tens of kilobytes."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np


def pattern(i: int, w: int, h: int, *, deep: bool = False, seed: int = 0) -> np.ndarray:
    """A moving gradient with a little noise: compresses like video, differs per frame."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(1, w - 1) + i * 7) % 256
    g = (y * 255 // max(1, h - 1) + i * 3) % 256
    b = ((x + y + i * 5) * 3) % 256
    img = np.stack([r, g, b], axis=-1).astype(np.float64)
    rng = np.random.default_rng(seed * 100_003 + i)
    img += rng.normal(0, 6, img.shape)
    img = np.clip(img, 0, 255)
    if deep:
        return (img * 257).astype(np.uint16)
    return img.astype(np.uint8)


def _audio_frames(codec_ctx, seconds: float, rate: int) -> Iterator[av.AudioFrame]:
    n = codec_ctx.frame_size or 1024
    total = int(seconds * rate)
    t = 0
    fmt = codec_ctx.format.name
    while t < total:
        k = min(n, total - t)
        tt = (np.arange(t, t + k) / rate).astype(np.float32)
        wave = (0.3 * np.sin(2 * np.pi * 440 * tt)).astype(np.float32)
        if fmt.endswith("p"):
            arr = np.stack([wave, wave])
        else:
            arr = np.stack([wave, wave]).T.reshape(1, -1)
        if fmt.startswith("s16"):
            arr = (arr * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout="stereo")
        frame.sample_rate = rate
        frame.pts = t
        frame.time_base = Fraction(1, rate)
        yield frame
        t += k


def make_video(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (64, 48),
    frames: int = 12,
    rate: Fraction | int = 25,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fmt: str | None = None,
    audio: str | None = None,
    audio_seconds: float | None = None,
    subtitles: str | None = None,
    rotation: int = 0,
    sar: Fraction | None = None,
    interlaced: bool = False,
    tags: dict[str, str] | None = None,
    video_tags: dict[str, str] | None = None,
    audio_tags: dict[str, str] | None = None,
    chapters: list[dict] | None = None,
    color: dict[str, int] | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    seed: int = 0,
    noise_frames: bool = False,
    solid: tuple[int, int, int] | None = None,
) -> Path:
    """Write a test video (``solid``: every pixel that RGB colour). ``pts`` (in ``time_base``) gives VFR timing; ``subtitles`` is the
    path of an .srt file whose packets are copied in; ``audio`` is an encoder name."""
    path = Path(path)
    w, h = size
    rate = Fraction(rate)
    deep = "10" in pix_fmt or "12" in pix_fmt
    with av.open(str(path), "w", format=fmt, container_options=container_options or {}) as out:
        if tags:
            out.metadata.update(tags)
        if chapters:
            out.set_chapters(chapters)
        opts = {"preset": "ultrafast"} if codec in ("libx264", "libx265") else {}
        if interlaced:
            opts["x264-params"] = "interlaced=1:tff=1"
        opts.update(options or {})
        vs = out.add_stream(codec, rate=rate, options=opts)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        tb = time_base or Fraction(1, rate) if pts is None else (time_base or Fraction(1, 1000))
        vs.codec_context.time_base = tb
        if sar:
            vs.codec_context.sample_aspect_ratio = sar
        for k, v in (color or {}).items():
            setattr(vs.codec_context, k, v)
        if rotation:
            vs.set_display_rotation(rotation)
        if video_tags:
            vs.metadata.update(video_tags)
        astream = None
        if audio:
            arate = 48000
            astream = out.add_stream(audio, rate=arate)
            astream.codec_context.layout = "stereo"
            if audio_tags:
                astream.metadata.update(audio_tags)
        sub_in = None
        sub_out: Any = None
        if subtitles:
            sub_in = av.open(str(subtitles))
            sub_out = out.add_stream_from_template(sub_in.streams[0])
            sub_out.metadata["language"] = "eng"
        timeline = list(pts) if pts is not None else [round(i / rate / tb) for i in range(frames)]
        for i, p in enumerate(timeline):
            img = pattern(i, w, h, deep=deep, seed=seed)
            if noise_frames:
                img = np.random.default_rng(i + seed).integers(0, 256, img.shape, dtype=np.uint8)
            if solid is not None:
                img = np.empty((h, w, 3), np.uint16 if deep else np.uint8)
                img[...] = np.array(solid) * (257 if deep else 1)
            frame = av.VideoFrame.from_ndarray(img, format="rgb48le" if deep else "rgb24")
            frame = frame.reformat(format=pix_fmt)
            frame.pts = p
            frame.time_base = tb
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
        if astream is not None:
            secs = audio_seconds or float(timeline[-1] * tb) + 0.2
            for af in _audio_frames(astream.codec_context, secs, 48000):
                for pkt in astream.encode(af):
                    out.mux(pkt)
            for pkt in astream.encode(None):
                out.mux(pkt)
        if sub_in is not None:
            for pkt in sub_in.demux(sub_in.streams[0]):
                if pkt.size:
                    pkt.stream = sub_out
                    out.mux(pkt)
            sub_in.close()
    return path


def make_srt(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.write_text(
        "1\n00:00:00,000 --> 00:00:00,200\nHello\n\n2\n00:00:00,240 --> 00:00:00,400\nWorld\n\n",
        encoding="utf-8",
    )
    return path


def make_audio_only(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as out:
        a = out.add_stream("aac", rate=48000)
        a.codec_context.layout = "stereo"
        for af in _audio_frames(a.codec_context, 0.5, 48000):
            for pkt in a.encode(af):
                out.mux(pkt)
        for pkt in a.encode(None):
            out.mux(pkt)
    return path


def make_image(
    path: str | os.PathLike[str], w: int = 40, h: int = 30, *, alpha: bool = False
) -> Path:
    path = Path(path)
    rgb = pattern(0, w, h)
    ext = path.suffix.lower()
    if ext == ".png":
        if alpha:
            a = (np.arange(w)[None, :] * 255 // (w - 1)).repeat(h, 0).astype(np.uint8)
            arr, fmt = np.dstack([rgb, a]), "rgba"
        else:
            arr, fmt = rgb, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt)
        cc = av.CodecContext.create("png", "w")
        cc.pix_fmt = fmt
    else:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
        cc = av.CodecContext.create("mjpeg", "w")
        cc.pix_fmt = "yuvj420p"
    cc.width, cc.height = w, h
    cc.time_base = Fraction(1, 25)
    frame.pts = 0
    data = b"".join(bytes(p) for p in list(cc.encode(frame)) + list(cc.encode(None)))
    path.write_bytes(data)
    return path


def nearest4(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """The stub upscaler: nearest-neighbour x4."""
    for f in frames:
        yield f.repeat(4, axis=0).repeat(4, axis=1)


def chunked4(frames: Iterator[np.ndarray], chunk: int = 5) -> Iterator[np.ndarray]:
    """Like :func:`nearest4` but holding frames back in chunks, as the real pipeline does."""
    buf: list[np.ndarray] = []
    for f in frames:
        buf.append(f)
        if len(buf) == chunk:
            yield from nearest4(iter(buf))
            buf = []
    yield from nearest4(iter(buf))


def packets(
    path: str | os.PathLike[str], kind: str = "video"
) -> list[tuple[int | None, Fraction, bytes]]:
    """(pts, time_base, payload) of every non-empty packet of the first stream of ``kind``."""
    out = []
    with av.open(str(path)) as c:
        s = [st for st in c.streams if st.type == kind][0]
        for p in c.demux(s):
            if p.size:
                out.append((p.pts, p.time_base, bytes(p)))
    return out


def frame_times(path: str | os.PathLike[str]) -> list[float]:
    """Sorted presentation times (seconds) of the video packets."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(
            float(p.pts * p.time_base) for p in c.demux(s) if p.size and p.pts is not None
        )


def copy_cut(src: str | os.PathLike[str], dst: str | os.PathLike[str], start: int) -> Path:
    """What ``ffmpeg -ss T -i src -c copy dst.mp4`` makes of a cut at frame ``start`` (not a
    keyframe): the packets from the keyframe before it, shifted so that frame ``start`` is at
    0; the MP4 muxer writes an edit list that discards the lead-in."""
    dst = Path(dst)
    with av.open(str(src)) as c, av.open(str(dst), "w") as o:
        v = c.streams.video[0]
        ov = o.add_stream_from_template(v)
        ov.time_base = v.time_base
        pkts = [p for p in c.demux(v) if p.size]
        pts = sorted(p.pts for p in pkts)
        cut = pts[start]
        key = max(p.pts for p in pkts if p.is_keyframe and p.pts <= cut)
        for p in pkts:
            if p.pts >= key:
                p.pts -= cut
                p.dts -= cut
                p.stream = ov
                o.mux(p)
    return dst


def jpeg_bytes(w: int = 32, h: int = 24) -> bytes:
    """A small JPEG picture (a cover image)."""
    cc = av.CodecContext.create("mjpeg", "w")
    cc.width, cc.height, cc.pix_fmt = w, h, "yuvj420p"
    cc.time_base = Fraction(1, 25)
    f = av.VideoFrame.from_ndarray(pattern(0, w, h), format="rgb24").reformat(format="yuvj420p")
    f.pts = 0
    return b"".join(bytes(p) for p in [*cc.encode(f), *cc.encode(None)])


def with_cover(src: str | os.PathLike[str], dst: str | os.PathLike[str], jpeg: bytes) -> Path:
    """``src``'s video remuxed into Matroska with ``jpeg`` as a cover attachment."""
    dst = Path(dst)
    with av.open(str(src)) as c, av.open(str(dst), "w", format="matroska") as o:
        v = c.streams.video[0]
        ov = o.add_stream_from_template(v)
        o.add_attachment("cover.jpg", "image/jpeg", jpeg)
        o.start_encoding()
        for p in c.demux(v):
            if p.size:
                p.stream = ov
                o.mux(p)
    return dst


def make_vp9_alpha(path: str | os.PathLike[str], w: int = 16, h: int = 12, frames: int = 4) -> Path:
    """A WebM VP9 video with an alpha channel (a left-to-right ramp; libvpx-vp9, yuva420p)."""
    path = Path(path)
    with av.open(str(path), "w") as o:
        s = o.add_stream("libvpx-vp9", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuva420p"
        for i in range(frames):
            rgba = np.zeros((h, w, 4), np.uint8)
            rgba[..., :3] = pattern(i, w, h)
            rgba[..., 3] = np.arange(w)[None, :] * 255 // (w - 1)
            f = av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format="yuva420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            for p in s.encode(f):
                o.mux(p)
        for p in s.encode(None):
            o.mux(p)
    return path


HDR10_X265 = (
    "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
    ":max-cll=1000,400"
)


def make_hdr10(path: str | os.PathLike[str], frames: int = 3) -> Path:
    """A 10-bit PQ HEVC video with HDR10 mastering-display and content-light metadata."""
    return make_video(
        path,
        size=(32, 24),
        frames=frames,
        codec="libx265",
        pix_fmt="yuv420p10le",
        fmt="matroska",
        color={"color_primaries": 9, "color_trc": 16, "colorspace": 9},
        options={"x265-params": "log-level=error:" + HDR10_X265},
    )


def with_exif_orientation(
    jpeg: str | os.PathLike[str], dst: str | os.PathLike[str], value: int
) -> Path:
    """``jpeg`` with an EXIF block whose Orientation tag is ``value`` (6: turn 90° clockwise
    to show it), as phone cameras write them."""
    import struct

    dst = Path(dst)
    data = Path(jpeg).read_bytes()
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, value, 0) + bytes(4)
    app1 = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    dst.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
    return dst


def with_duplicate_moov(mp4: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """``mp4`` with its index (moov box) written twice: a complete file over which FFmpeg's
    demuxer logs the warning "Found duplicated MOOV Atom. Skipped it"."""
    import struct

    data = Path(mp4).read_bytes()
    pos = 0
    while pos + 8 <= len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        if data[pos + 4 : pos + 8] == b"moov":
            dst = Path(dst)
            dst.write_bytes(data + data[pos : pos + size])
            return dst
        pos += size
    raise ValueError(f"{mp4}: no moov box")

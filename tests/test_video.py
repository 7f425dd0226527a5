"""Tests of the media layer (adcvsr_cli/media/).

Every input is generated with PyAV in a temporary folder (tests/media.py). The processor is a
nearest-neighbour x4 stub. Budget: the whole module under 90 s on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from adcvsr_cli import media as V
from adcvsr_cli.errors import Interrupted, UsageError, VideoError

sys.path.insert(0, str(Path(__file__).parent))
from media import (  # noqa: E402
    chunked4,
    frame_times,
    make_audio_only,
    make_image,
    make_srt,
    make_video,
    nearest4,
    packets,
    pattern,
)

ROOT = Path(__file__).resolve().parents[1]
DOVE = Path("/work/shared/media/dove-demo")
FAST = {"preset": "ultrafast"}
VFR_MS = [0, 40, 80, 100, 180, 213, 313, 353, 393, 413, 513]


def x4(info: V.MediaInfo) -> tuple[int, int]:
    return info.width * 4, info.height * 4


def run(src, dst, process=nearest4, **opts) -> V.TranscodeReport:
    opts.setdefault("preset", "ultrafast")
    events: list[dict] = []
    rep = V.transcode(
        src, dst, process, out_size=x4, options=V.EncodeOptions(**opts), on_event=events.append
    )
    rep.events = events  # type: ignore[attr-defined]
    return rep


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".adcvsr-" in p.name)


def assert_same_timing(src: Path, dst: Path) -> None:
    """Frame count equal and each frame time equal within one tick of the coarser base."""
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        tick = float(max(a.streams.video[0].time_base, b.streams.video[0].time_base))
    ta, tb = frame_times(src), frame_times(dst)
    assert len(ta) == len(tb)
    assert max(abs(x - y) for x, y in zip(ta, tb, strict=True)) <= tick + 1e-9


# ------------------------------------------------------------------------------------------
# probe / images / paths
# ------------------------------------------------------------------------------------------


def test_probe_reports_stream_facts(tmp_path):
    src = make_video(tmp_path / "a.mp4", audio="aac", frames=10, sar=Fraction(4, 3))
    info = V.probe(src, count_frames=True)
    assert (info.width, info.height, info.pix_fmt, info.bit_depth) == (64, 48, "yuv420p", 8)
    assert info.frames == 10 and info.frames_exact
    assert info.avg_rate == 25 and info.vfr is False
    assert info.sar == Fraction(4, 3) and info.rotation == 0 and not info.is_image
    assert [s["type"] for s in info.streams] == ["video", "audio"]
    assert info.interlaced is False and info.has_alpha is False


# Complete files whose audio runs longer than the video (10 frames at 25 fps = 0.40 s).
LONG_AUDIO = {
    "mkv_aac": ("r.mkv", {"audio": "aac"}),
    "mkv_pcm": ("p.mkv", {"audio": "pcm_s16le", "audio_seconds": 2.0}),
    "webm": ("w.webm", {"codec": "libvpx-vp9", "audio": "libopus", "audio_seconds": 2.0}),
    "ts": ("t.ts", {"audio": "aac", "audio_seconds": 2.0}),
    "avi": ("a.avi", {"codec": "mpeg4", "audio": "aac", "audio_seconds": 2.0}),
    "mp4": ("m.mp4", {"audio": "aac", "audio_seconds": 2.0}),
}


@pytest.mark.parametrize("case", sorted(LONG_AUDIO))
def test_video_duration_not_container_duration(tmp_path, case):
    """The frame estimate and the end-of-input check use the video track's own duration
    (Matroska: its DURATION tag), not the container's, which includes the longer audio."""
    name, kw = LONG_AUDIO[case]
    src = make_video(tmp_path / name, frames=10, **kw)
    info = V.probe(src)
    if case == "avi":  # its header counts a skipped-frame slot after the first mpeg4 frame
        assert info.frames == 11 and info.duration == pytest.approx(0.44, abs=0.011)
    else:
        assert info.frames == 10 and info.duration == pytest.approx(0.4, abs=0.011)
    with av.open(str(src)) as c:
        assert c.duration / av.time_base > 0.55  # the container duration is the audio's
    rep = run(src, tmp_path / "o.mkv", preset=None if case == "webm" else "ultrafast")
    assert rep.frames_out == 10 and not any("early" in w for w in rep.warnings)


def test_image_roundtrip_keeps_alpha_and_16_bit(tmp_path):
    rgb = pattern(1, 20, 10, deep=True)
    alpha = np.linspace(0, 65535, 200).reshape(10, 20).astype(np.uint16)
    V.write_image(tmp_path / "x.png", rgb, alpha)
    got, got_a = V.read_image(tmp_path / "x.png")
    assert got.dtype == np.uint16 and np.array_equal(got, rgb) and np.array_equal(got_a, alpha)
    V.write_image(tmp_path / "y.jpg", pattern(1, 21, 11))
    got, got_a = V.read_image(tmp_path / "y.jpg")
    assert got.shape == (11, 21, 3) and got.dtype == np.uint8 and got_a is None
    assert np.abs(got.astype(int) - pattern(1, 21, 11)).mean() < 6
    assert leftovers(tmp_path) == []


def test_remove_stale_parts(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".clip.adcvsr-{pid}-0123abcd.part.mp4"
    live = tmp_path / f".clip.adcvsr-{os.getppid()}-0123abcd.part.mp4"
    other = tmp_path / "clip.part.mp4"
    for p in (stale, live, other):
        p.write_bytes(b"x")
    assert V.remove_stale_parts(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_resolve_output_path(tmp_path):
    (tmp_path / "out").mkdir()
    assert V.resolve_output_path("/v/clip.mp4", None) == Path("/v/clip_x4.mp4")
    assert V.resolve_output_path("/v/clip.mp4", tmp_path / "out") == tmp_path / "out" / "clip.mp4"
    assert V.resolve_output_path("/v/clip.mp4", "new/") == Path("new/clip.mp4")
    assert V.resolve_output_path("/v/clip.mp4", "-") == Path("-")
    assert V.resolve_output_path("/v/clip.mp4", "o.mkv") == Path("o.mkv")
    with pytest.raises(UsageError):
        V.resolve_output_path("-", None)
    assert V.is_sequence_pattern("f/%06d.png") and not V.is_image_path("f/%06d.png")
    assert V.is_image_path("a.JPG") and not V.is_image_path("a.mp4")


# ------------------------------------------------------------------------------------------
# Round trips: timing, streams, display metadata
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("src_name", "dst_name"), [("vfr.mkv", "out.mp4"), ("vfr.mp4", "out.mkv")])
def test_vfr_keeps_every_timestamp(tmp_path, src_name, dst_name):
    # preset fast: B-frames, so the mkv has packets (the keyframe among them) without dts.
    src = make_video(
        tmp_path / src_name, pts=VFR_MS, time_base=Fraction(1, 1000), options={"preset": "fast"}
    )
    if src_name.endswith(".mkv"):
        with av.open(str(src)) as c:
            assert any(p.dts is None for p in c.demux(c.streams.video[0]) if p.size)
    rep = run(src, tmp_path / dst_name, process=chunked4)
    assert rep.frames_in == rep.frames_out == len(VFR_MS)
    assert_same_timing(src, tmp_path / dst_name)
    out = V.probe(tmp_path / dst_name)
    assert (out.width, out.height) == (256, 192)
    deltas = np.diff(frame_times(tmp_path / dst_name))
    assert deltas.max() - deltas.min() > 0.05  # still VFR
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("tb", "pts"),
    [
        (Fraction(1001, 30000), list(range(8))),
        (Fraction(1, 30000), [i * 1001 for i in range(8)]),
        (Fraction(1, 1000), [round(i * 1001 / 30) for i in range(8)]),
    ],
)
def test_ntsc_rates_and_time_bases(tmp_path, tb, pts):
    src = make_video(tmp_path / "n.mp4", rate=Fraction(30000, 1001), pts=pts, time_base=tb)
    run(src, tmp_path / "o.mp4")
    assert_same_timing(src, tmp_path / "o.mp4")
    with av.open(str(src)) as a, av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.video[0].time_base == a.streams.video[0].time_base  # encoder tb = input tb
        assert (
            abs(float(c.streams.video[0].average_rate) - float(a.streams.video[0].average_rate))
            < 0.01
        )


@pytest.mark.parametrize(("name", "audio"), [("aac.mp4", "aac"), ("opus.mkv", "libopus")])
def test_audio_copied_packet_for_packet(tmp_path, name, audio):
    src = make_video(tmp_path / name, audio=audio, frames=15)
    dst = tmp_path / ("out" + Path(name).suffix)
    rep = run(src, dst)
    a, b = packets(src, "audio"), packets(dst, "audio")
    assert len(a) == len(b) > 10
    assert [p[2] for p in a] == [p[2] for p in b]  # payload bytes
    assert [float(p[0] * p[1]) for p in a] == pytest.approx(
        [float(p[0] * p[1]) for p in b], abs=1e-3
    )
    assert len(rep.streams_copied) == 1 and rep.frames_out == 15


def test_audio_interleaved_not_appended(tmp_path):
    src = make_video(tmp_path / "a.mkv", audio="aac", frames=50)
    run(src, tmp_path / "o.mkv")
    with av.open(str(tmp_path / "o.mkv")) as c:
        order = [p.stream.type for p in c.demux() if p.size]
    first_audio = order.index("audio")
    assert first_audio < order.count("video") // 2  # audio starts early in the file


def test_subtitles_copied_to_mkv_and_refused_by_mp4(tmp_path):
    src = make_video(tmp_path / "s.mkv", subtitles=make_srt(tmp_path / "s.srt"), audio="aac")
    rep = run(src, tmp_path / "o.mkv")
    subs = packets(tmp_path / "o.mkv", "subtitle")
    assert subs == packets(src, "subtitle") and len(subs) == 2
    assert any("subtitle" in s for s in rep.streams_copied)
    calls = []
    with pytest.raises(VideoError, match=r"(?s)subtitle.*--no-subs.*\.mkv"):
        run(src, tmp_path / "o.mp4", process=lambda it: calls.append(1) or nearest4(it))
    assert calls == [] and not (tmp_path / "o.mp4").exists() and leftovers(tmp_path) == []
    rep = run(src, tmp_path / "o.mp4", no_subs=True)
    assert any("subtitle" in s for s in rep.streams_dropped)
    assert [s.type for s in av.open(str(tmp_path / "o.mp4")).streams] == ["video", "audio"]


def test_audio_codec_transcodes_what_the_container_cannot_hold(tmp_path):
    src = make_video(tmp_path / "p.mkv", audio="pcm_s16be", frames=10)
    with pytest.raises(VideoError, match=r"--audio-codec aac to transcode"):
        run(src, tmp_path / "o.mp4")
    rep = run(src, tmp_path / "o.mp4", audio_codec="aac")
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert (
            c.streams.audio[0].duration
            and float(c.streams.audio[0].duration * c.streams.audio[0].time_base) > 0.4
        )
    assert rep.frames_out == 10
    rep = run(src, tmp_path / "n.mp4", no_audio=True)
    assert [s.type for s in av.open(str(tmp_path / "n.mp4")).streams] == ["video"]


def _with_attachment(path: Path) -> Path:
    with av.open(str(path), "w") as o:
        s = o.add_stream("libx264", rate=25, options=FAST)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        o.add_attachment("font.ttf", "application/x-truetype-font", b"\0\1\0\0fake" * 10)
        for i in range(5):
            f = av.VideoFrame.from_ndarray(pattern(i, 64, 48))
            f.pts, f.time_base = i, Fraction(1, 25)
            for pk in s.encode(f):
                o.mux(pk)
        for pk in s.encode(None):
            o.mux(pk)
    return path


def _with_klv(path: Path) -> Path:
    with av.open(str(path), "w") as o:
        s = o.add_stream("libx264", rate=25, options=FAST)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        d = o.add_data_stream("klv")
        for i in range(5):
            f = av.VideoFrame.from_ndarray(pattern(i, 64, 48))
            f.pts, f.time_base = i, Fraction(1, 25)
            for pk in s.encode(f):
                o.mux(pk)
            pk = av.Packet(b"\x06\x0e\x2b\x34" + bytes([i] * 12))
            pk.pts = pk.dts = i * 3600
            pk.time_base, pk.stream = Fraction(1, 90000), d
            o.mux(pk)
        for pk in s.encode(None):
            o.mux(pk)
    return path


def test_attachments_and_data_streams_kept_where_possible(tmp_path):
    att = _with_attachment(tmp_path / "att.mkv")
    rep = run(att, tmp_path / "o.mkv")
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert [s.type for s in c.streams] == ["video", "attachment"]
        assert c.streams[1].metadata["filename"] == "font.ttf"
    assert rep.streams_copied == ["#1 attachment (unknown codec, 'font.ttf')"]
    rep = run(att, tmp_path / "o.mp4")
    assert rep.streams_dropped and any("cannot hold" in w for w in rep.warnings)
    klv = _with_klv(tmp_path / "k.ts")
    run(klv, tmp_path / "o.ts")
    assert [p[2] for p in packets(tmp_path / "o.ts", "data")] == [
        p[2] for p in packets(klv, "data")
    ]
    rep = run(klv, tmp_path / "k.mkv")
    assert len(rep.streams_dropped) == 1 and rep.frames_out == 5 and leftovers(tmp_path) == []


def test_tags_and_chapters_kept(tmp_path):
    chapters = [
        {
            "id": 1,
            "start": 0,
            "end": 200,
            "time_base": Fraction(1, 1000),
            "metadata": {"title": "One"},
        },
        {
            "id": 2,
            "start": 200,
            "end": 440,
            "time_base": Fraction(1, 1000),
            "metadata": {"title": "Two"},
        },
    ]
    src = make_video(
        tmp_path / "t.mkv",
        tags={"title": "Film", "comment": "kept"},
        video_tags={"language": "fra", "title": "picture"},
        audio="aac",
        audio_tags={"language": "deu", "title": "sound"},
        chapters=chapters,
    )
    run(src, tmp_path / "o.mkv")
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert (
            c.metadata["title"] == "Film"
            and c.metadata.get("COMMENT", c.metadata.get("comment")) == "kept"
        )
        v, a = c.streams.video[0].metadata, c.streams.audio[0].metadata
        assert (v["language"], v["title"], a["language"], a["title"]) == (
            "fra",
            "picture",
            "deu",
            "sound",
        )
        got = [
            (float(ch["start"] * ch["time_base"]), ch["metadata"]["title"]) for ch in c.chapters()
        ]
    assert got == [(0.0, "One"), (0.2, "Two")]


def test_rotation_sar_and_colour_tags_kept(tmp_path):
    src = make_video(
        tmp_path / "r.mp4",
        rotation=90,
        sar=Fraction(4, 3),
        color={"color_primaries": 1, "color_trc": 1, "colorspace": 1},
    )
    run(src, tmp_path / "o.mp4")
    i, o = V.probe(src), V.probe(tmp_path / "o.mp4")
    assert o.rotation == i.rotation == 90
    assert o.sar == Fraction(4, 3)
    assert (o.width, o.height) == (256, 192)  # stored pixels upscaled, not rotated
    assert (o.color_primaries, o.color_trc, o.colorspace) == (1, 1, 1)


def test_ten_bit_stays_ten_bit(tmp_path):
    src = make_video(
        tmp_path / "hdr.mkv",
        pix_fmt="yuv420p10le",
        color={"color_primaries": 9, "color_trc": 16, "colorspace": 9},
    )
    seen = []

    def proc(frames):
        for f in frames:
            seen.append((f.dtype, int(f.max()), bool(np.any(f % 256))))
            yield f.repeat(4, 0).repeat(4, 1)

    rep = run(src, tmp_path / "o.mkv", process=proc)
    assert all(d == np.uint16 for d, _, _ in seen) and len(seen) == 12
    assert max(m for _, m, _ in seen) > 255 and all(fine for _, _, fine in seen)
    o = V.probe(tmp_path / "o.mkv")
    assert (o.pix_fmt, o.bit_depth) == ("yuv420p10le", 10) and rep.pix_fmt == "yuv420p10le"
    assert (o.color_primaries, o.color_trc, o.colorspace) == (9, 16, 9)


def test_odd_sizes(tmp_path):
    src = make_video(tmp_path / "odd.avi", size=(65, 49), frames=4, codec="mpeg4")
    run(src, tmp_path / "o.mp4")
    o = V.probe(tmp_path / "o.mp4", count_frames=True)
    assert (o.width, o.height, o.frames) == (260, 196, 4)
    # An odd output size must not make the encoder fail at open.
    rep = V.transcode(
        src,
        tmp_path / "odd_out.mp4",
        lambda fr: (f[:, :1].repeat(65, 1) for f in fr),
        out_size=(65, 49),
        options=V.EncodeOptions(preset="ultrafast"),
    )
    assert rep.pix_fmt == "yuv444p" and any("odd" in w for w in rep.warnings)


def test_real_clip_318x180(tmp_path):
    clip = DOVE / "002.mp4"
    if not clip.exists():
        clip = make_video(tmp_path / "c.mp4", size=(318, 180), frames=8)
    info = V.probe(clip, count_frames=True)
    dst = tmp_path / "o.mp4"
    rep = run(clip, dst)
    assert (rep.out_width, rep.out_height) == (1272, 720) and (info.width, info.height) == (
        318,
        180,
    )
    assert rep.frames_out == info.frames
    assert_same_timing(clip, dst)


def test_single_frame_video_stays_video(tmp_path):
    src = make_video(tmp_path / "one.mp4", frames=1)
    rep = run(src, tmp_path / "o.mp4")
    assert rep.frames_out == 1 and V.probe(tmp_path / "o.mp4").format.startswith("mov")
    with pytest.raises(UsageError, match="pattern"):
        run(src, tmp_path / "o.png")


def test_images_png_and_jpeg(tmp_path):
    src = make_image(tmp_path / "a.png", alpha=True)
    rep = run(src, tmp_path / "a4.png")
    rgb, alpha = V.read_image(tmp_path / "a4.png")
    assert rgb.shape == (120, 160, 3) and alpha is not None and alpha.shape == (120, 160)
    assert alpha[:, 0].max() < 10 and alpha[:, -1].min() > 245
    assert rep.frames_out == 1
    src = make_image(tmp_path / "b.jpg")
    run(src, tmp_path / "b4.jpg")
    rgb, alpha = V.read_image(tmp_path / "b4.jpg")
    assert rgb.shape == (120, 160, 3) and alpha is None
    assert leftovers(tmp_path) == []


def test_png_sequence_output(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=5, audio="aac")
    (tmp_path / "seq").mkdir()
    rep = run(src, tmp_path / "seq" / "f_%04d.png")
    names = sorted(os.listdir(tmp_path / "seq"))
    assert names == [f"f_{i:04d}.png" for i in range(1, 6)] and rep.frames_out == 5
    assert V.read_image(tmp_path / "seq" / "f_0003.png")[0].shape == (192, 256, 3)
    with pytest.raises(UsageError):
        run(src, tmp_path / "seq" / "f_%04d.png")
    assert sorted(os.listdir(tmp_path / "seq")) == names


def test_interlaced_is_deinterlaced_by_default(tmp_path):
    src = make_video(tmp_path / "i.mkv", interlaced=True, frames=10)
    assert V.probe(src).interlaced is True
    rep = run(src, tmp_path / "o.mkv")
    assert rep.deinterlaced and any("bwdif" in w for w in rep.warnings) and rep.frames_out == 10
    assert_same_timing(src, tmp_path / "o.mkv")
    rep = run(src, tmp_path / "k.mkv", deinterlace=False)
    assert not rep.deinterlaced and rep.frames_out == 10


def test_events(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=10)
    rep = run(src, tmp_path / "o.mp4")
    types = [e["type"] for e in rep.events]
    assert types[0] == "start" and types[-1] == "done" and "progress" in types
    start = rep.events[0]
    assert (start["width"], start["out_width"], start["frames"], start["dtype"]) == (
        64,
        256,
        10,
        "uint8",
    )
    assert rep.events[-1]["report"]["frames_out"] == 10
    assert rep.events[-2] == {"type": "progress", "frames_done": 10, "frames_total": 10}


# ------------------------------------------------------------------------------------------
# Bad inputs and outputs: one VideoError naming the file, nothing left behind
# ------------------------------------------------------------------------------------------


def _truncated_moov_at_end(tmp_path: Path) -> Path:
    full = make_video(tmp_path / "full.mp4", frames=20)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    full.unlink()
    return cut


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.mp4", "no such file"),
    "empty": (lambda d: (d / "e.mp4").write_bytes(b"") and None or d / "e.mp4", "empty"),
    "random": (
        lambda d: (d / "r.mp4").write_bytes(np.random.default_rng(1).bytes(20_000)) and d / "r.mp4",
        "not a recognised media file",
    ),
    "text": (
        lambda d: (d / "t.mkv").write_text("hello " * 100) and d / "t.mkv",
        "not a recognised",
    ),
    "moov_missing": (_truncated_moov_at_end, "moov"),
    "audio_only": (lambda d: make_audio_only(d / "a.m4a"), "no video stream"),
    "directory": (lambda d: (d / "dir.mp4").mkdir() or d / "dir.mp4", "directory"),
    "playlist": (
        lambda d: (
            (d / "p.m3u8").write_text("#EXTM3U\n#EXTINF:1,\n/etc/hostname\n#EXT-X-ENDLIST\n")
            and d / "p.m3u8"
        ),
        "not a recognised",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_refused(tmp_path, case):
    make, message = BAD_INPUTS[case]
    src = make(tmp_path)
    calls = []
    with pytest.raises(VideoError, match=message) as exc:
        V.transcode(
            src, tmp_path / "out.mkv", lambda it: calls.append(1) or nearest4(it), out_size=(8, 8)
        )
    assert str(src) in str(exc.value)
    assert not (tmp_path / "out.mkv").exists() and leftovers(tmp_path) == [] and calls == []
    if case != "missing" and case != "directory":
        with pytest.raises(VideoError, match=message):
            V.probe(src)


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_output_onto_input_refused(tmp_path, how):
    src = make_video(tmp_path / "a.mkv", frames=5)
    before = src.read_bytes()
    dst = tmp_path / "a.mkv"
    if how == "symlink":
        dst = tmp_path / "link.mkv"
        dst.symlink_to(src)
    elif how == "hardlink":
        dst = tmp_path / "hard.mkv"
        os.link(src, dst)
    with pytest.raises(VideoError, match="input"):
        run(src, dst, overwrite=True)
    assert src.read_bytes() == before and leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=5)
    dst = tmp_path / "o.mp4"
    dst.write_bytes(b"old")
    with pytest.raises(UsageError, match="exists") as exc:
        run(src, dst)
    assert isinstance(exc.value, V.OutputExists) and exc.value.exit_code == 2
    assert dst.read_bytes() == b"old"
    run(src, dst, overwrite=True)
    assert V.probe(dst).width == 256 and leftovers(tmp_path) == []


def test_unwritable_output_folder(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=5)
    (tmp_path / "file").write_bytes(b"x")
    calls = []
    with pytest.raises(VideoError, match="o.mp4"):
        V.transcode(
            src,
            tmp_path / "file" / "o.mp4",
            lambda it: calls.append(1) or nearest4(it),
            out_size=x4,
        )
    with pytest.raises(VideoError, match="does not exist"):
        run(src, tmp_path / "missing" / "o.mp4")
    assert calls == [] and leftovers(tmp_path) == []


def test_unknown_extension_is_usage_error(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=3)
    with pytest.raises(UsageError, match="container") as exc:
        run(src, tmp_path / "o.xyz")
    assert "--format" in str(exc.value) and "pass format" not in str(exc.value)


def test_messages_name_the_command_line_flags(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=3)
    (tmp_path / "o.mp4").write_bytes(b"old")
    with pytest.raises(V.OutputExists, match="--overwrite / -y") as exc:
        run(src, tmp_path / "o.mp4")
    assert "overwrite=True" not in str(exc.value) and "pass overwrite" not in str(exc.value)
    calls = []
    with pytest.raises(UsageError) as exc:
        run(src, tmp_path / "o.webp", lambda it: calls.append(1) or nearest4(it))
    msg = str(exc.value)
    assert "a video cannot be written to an image file" in msg and "%06d.png" in msg
    assert ".mkv" in msg and "written as .png or .jpg" not in msg
    img = make_image(tmp_path / "i.png")
    with pytest.raises(UsageError, match=r"images are written as \.png or \.jpg, not \.webp"):
        run(img, tmp_path / "o.webp", lambda it: calls.append(1) or nearest4(it))
    assert calls == [] and leftovers(tmp_path) == [] and not (tmp_path / "o.webp").exists()
    assert (tmp_path / "o.mp4").read_bytes() == b"old"


def _stretch(w: int, h: int):
    def process(frames):
        for f in frames:
            yield np.zeros((h, w, 3), f.dtype) + f[:1, :1]

    return process


def test_output_over_16384_refused_unless_forced_and_over_8192_warned(tmp_path):
    img = make_image(tmp_path / "i.png", 8, 4)
    calls = []
    with pytest.raises(VideoError, match="16400x4, over 16384 pixels") as exc:
        V.transcode(img, tmp_path / "o.png", lambda it: calls.append(1) or it, out_size=(16400, 4))
    assert "--force" in str(exc.value) and str(img) in str(exc.value)
    assert calls == [] and leftovers(tmp_path) == [] and not (tmp_path / "o.png").exists()
    events: list[dict] = []
    rep = V.transcode(
        img,
        tmp_path / "o.png",
        _stretch(16400, 4),
        out_size=(16400, 4),
        options=V.EncodeOptions(force=True),
        on_event=events.append,
    )
    assert V.read_image(tmp_path / "o.png")[0].shape == (4, 16400, 3)
    assert rep.out_width == 16400 and any("over 8192" in w for w in rep.warnings)
    assert [e["type"] for e in events][:2] == ["warning", "start"]  # an event, before the start
    assert "16400x4, over 8192" in events[0]["message"]
    rep = V.transcode(img, tmp_path / "w.png", _stretch(8200, 4), out_size=(8200, 4))
    assert rep.out_width == 8200 and any("8200x4, over 8192" in w for w in rep.warnings)
    rep = V.transcode(img, tmp_path / "s.png", _stretch(8192, 4), out_size=(8192, 4))
    assert rep.warnings == []


def _corrupt(tmp_path: Path) -> tuple[Path, int]:
    src = make_video(tmp_path / "c.mp4", frames=30, size=(64, 48))
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(7)
    # Bit rot in the middle of the media data (the moov at the end is left alone).
    with av.open(str(src)) as c:
        offsets = [p.pos for p in c.demux(c.streams.video[0]) if p.size and p.pos]
    for off in offsets[8:24:3]:
        for k in rng.integers(off + 4, off + 30, 6):
            data[int(k)] ^= 0xFF
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    return bad, 30


def test_corrupt_packets_decoded_around_and_counted(tmp_path):
    bad, total = _corrupt(tmp_path)
    rep = run(bad, tmp_path / "o.mkv")
    assert rep.frames_in == rep.frames_out == V.probe(tmp_path / "o.mkv", count_frames=True).frames
    assert rep.bad_packets >= 1
    assert total - rep.bad_packets - 1 <= rep.frames_in < total  # only the bad frames are lost
    assert any(f"{rep.bad_packets} corrupt video packet" in w for w in rep.warnings)
    assert_same_timing_subset(bad, tmp_path / "o.mkv")


def assert_same_timing_subset(src: Path, dst: Path) -> None:
    """Every output frame time is one of the input frame times (no shift after a bad packet)."""
    ta = frame_times(src)
    for t in frame_times(dst):
        assert min(abs(t - x) for x in ta) <= 0.001


def test_corrupt_packets_strict_is_an_error(tmp_path):
    bad, _ = _corrupt(tmp_path)
    with pytest.raises(VideoError, match="strict"):
        run(bad, tmp_path / "o.mkv", strict=True)
    assert not (tmp_path / "o.mkv").exists() and leftovers(tmp_path) == []


def test_truncated_faststart_mp4_keeps_decodable_part(tmp_path):
    full = make_video(tmp_path / "f.mp4", frames=30, container_options={"movflags": "+faststart"})
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    rep = run(cut, tmp_path / "o.mkv")
    assert 0 < rep.frames_out < 30 and rep.frames_in == rep.frames_out
    assert any("ends early" in w for w in rep.warnings)
    with pytest.raises(VideoError, match="strict"):
        run(cut, tmp_path / "s.mkv", strict=True)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["mkv", "webm"])
def test_truncated_matroska_keeps_decodable_part_and_warns(tmp_path, case):
    """No frame count in the header: the end of the last decoded frame is compared with the
    video track's DURATION tag (reliability.md row 5)."""
    if case == "mkv":  # the CLI tests' reproducer: `head -c 600000 big.mkv`
        kw = {"frames": 24, "rate": 4, "audio": "pcm_s16le", "audio_seconds": 6.0}
        full, cut_at = make_video(tmp_path / "big.mkv", fmt="matroska", **kw), 600_000
    else:  # audio longer than the video, mostly video bytes
        kw = {"codec": "libvpx-vp9", "audio": "libopus", "audio_seconds": 3.0}
        full = make_video(tmp_path / "big.webm", frames=24, noise_frames=True, **kw)
        cut_at = full.stat().st_size // 2
    cut = tmp_path / f"trunc{full.suffix}"
    cut.write_bytes(full.read_bytes()[:cut_at])
    assert V.probe(cut).frames == 24  # the header's estimate
    preset = None if case == "webm" else "ultrafast"
    rep = run(cut, tmp_path / "o.mkv", preset=preset)
    assert 0 < rep.frames_out < 23 and rep.frames_in == rep.frames_out
    early = [w for w in rep.warnings if "ends early" in w]
    assert len(early) == 1 and f"{rep.frames_in} frames decoded" in early[0]
    assert "about 24 frames" in early[0]
    with pytest.raises(VideoError, match="ends early.*strict"):
        run(cut, tmp_path / "s.mkv", strict=True, preset=preset)
    assert not (tmp_path / "s.mkv").exists() and leftovers(tmp_path) == []
    rep = run(full, tmp_path / "f.mkv", strict=True, preset=preset)
    assert rep.frames_out == 24 and rep.warnings == []


# ------------------------------------------------------------------------------------------
# Processor contract, interruption, cancellation
# ------------------------------------------------------------------------------------------


def test_processor_frame_count_mismatch_is_an_error(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=10)

    def drops_last(frames):
        items = list(nearest4(frames))
        yield from items[:-1]

    def stops_early(frames):
        for i, f in enumerate(frames):
            if i == 5:
                return
            yield f.repeat(4, 0).repeat(4, 1)

    for proc in (drops_last, stops_early):
        with pytest.raises(VideoError, match="frame processor"):
            run(src, tmp_path / "o.mp4", process=proc)
    with pytest.raises(VideoError, match="expected"):
        run(src, tmp_path / "o.mp4", process=lambda fr: (f for f in fr))
    assert not (tmp_path / "o.mp4").exists() and leftovers(tmp_path) == []


def test_keyboard_interrupt_in_processor_leaves_prior_output(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=20)
    dst = tmp_path / "o.mp4"
    dst.write_bytes(b"previous result")

    def boom(frames):
        for i, f in enumerate(frames):
            if i == 7:
                raise KeyboardInterrupt
            yield f.repeat(4, 0).repeat(4, 1)

    with pytest.raises(KeyboardInterrupt):
        run(src, dst, process=boom, overwrite=True)
    assert dst.read_bytes() == b"previous result" and leftovers(tmp_path) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("adcvsr-")]


def test_cancel_event(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=20)
    cancel = threading.Event()

    def proc(frames):
        for i, f in enumerate(frames):
            if i == 3:
                cancel.set()
            yield f.repeat(4, 0).repeat(4, 1)

    with pytest.raises(Interrupted):
        V.transcode(src, tmp_path / "o.mp4", proc, out_size=x4, cancel=cancel)
    assert not (tmp_path / "o.mp4").exists() and leftovers(tmp_path) == []


def _script(body: str) -> list[str]:
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
        + textwrap.dedent(body)
    )
    return [sys.executable, "-c", code]


def test_sigint_mid_run_leaves_nothing(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=200)
    dst = tmp_path / "o.mp4"
    dst.write_bytes(b"previous result")
    body = f"""
        import time
        from adcvsr_cli import media as V
        def stuck(frames):
            for i, f in enumerate(frames):
                if i == 3:
                    print("running", flush=True)
                    while True:  # never finishes on its own: only the signal ends the run
                        time.sleep(0.01)
                yield f.repeat(4, 0).repeat(4, 1)
        try:
            V.transcode({str(src)!r}, {str(dst)!r}, stuck, out_size=(256, 192),
                        options=V.EncodeOptions(overwrite=True, preset="ultrafast"))
        except KeyboardInterrupt:
            sys.exit(130)
        sys.exit(0)
    """
    proc = subprocess.Popen(_script(body), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"running"
    proc.send_signal(signal.SIGINT)
    # The run cannot end by itself (the processor never returns), so ending at all is the
    # signal's doing; 60 s is a margin for a loaded machine, not a speed measurement.
    rc = proc.wait(timeout=60)
    assert rc == 130, proc.stderr.read().decode()
    assert dst.read_bytes() == b"previous result" and leftovers(tmp_path) == []


def test_full_disk_is_a_clean_error(tmp_path):
    src = make_video(tmp_path / "n.mkv", frames=20, size=(64, 48), noise_frames=True)
    dst = tmp_path / "o.mkv"
    body = f"""
        import resource, signal
        from adcvsr_cli import media as V
        from adcvsr_cli.errors import VideoError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        try:
            V.transcode({str(src)!r}, {str(dst)!r}, lambda fr: (f.repeat(4, 0).repeat(4, 1) for f in fr),
                        out_size=(256, 192), options=V.EncodeOptions(preset="ultrafast", crf=0))
        except VideoError as e:
            print("VideoError:", e)
            sys.exit(1)
        print("no error")
    """
    res = subprocess.run(_script(body), capture_output=True, timeout=60)
    out = res.stdout.decode()
    assert res.returncode == 1, out + res.stderr.decode()
    assert "VideoError:" in out and "o.mkv" in out and "too large" in out
    assert "Traceback" not in res.stderr.decode()
    assert not dst.exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------
# Pipes
# ------------------------------------------------------------------------------------------


def _identity(frames):
    yield from frames


def test_stdin_to_stdout_through_pipes(tmp_path):
    src = make_video(
        tmp_path / "big.mkv", size=(320, 240), frames=24, noise_frames=True, audio="aac"
    )
    assert src.stat().st_size >= 1_000_000
    body = """
        from adcvsr_cli import media as V
        from adcvsr_cli.errors import VideoError
        try:
            V.transcode("-", "-", lambda fr: (f for f in fr), out_size=(320, 240),
                        options=V.EncodeOptions(preset="ultrafast", format=sys.argv[1]))
        except VideoError as e:
            print("VideoError:", e, file=sys.stderr)
            sys.exit(1)
    """
    for fmt in ("matroska", "mp4"):
        with open(src, "rb") as fin, open(tmp_path / f"out.{fmt}", "wb") as fout:
            res = subprocess.run(
                [*_script(body), fmt], stdin=fin, stdout=fout, stderr=subprocess.PIPE, timeout=60
            )
        assert res.returncode == 0, res.stderr.decode()
        out = tmp_path / f"out.{fmt}"
        assert len(frame_times(out)) == 24 and len(packets(out, "audio")) == len(
            packets(src, "audio")
        )
    # Through a real (non-seekable) pipe, and an MP4 whose index is at the end.
    mp4 = make_video(tmp_path / "big.mp4", size=(320, 240), frames=24, noise_frames=True)
    assert mp4.stat().st_size >= 1_000_000
    for data_src, ok in ((src, True), (mp4, False)):
        p = subprocess.Popen(
            [*_script(body), "matroska"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = p.communicate(data_src.read_bytes(), timeout=60)
        if ok:
            assert p.returncode == 0, err.decode()
            (tmp_path / "piped.mkv").write_bytes(out)
            assert len(frame_times(tmp_path / "piped.mkv")) == 24
        else:
            assert p.returncode == 1 and b"pipe" in err and b"moov" in err and out == b""


def test_file_objects_and_broken_pipe(tmp_path):
    src = make_video(tmp_path / "a.mkv", frames=10, audio="aac")
    import io

    buf = io.BytesIO()
    with open(src, "rb") as fh:
        rep = V.transcode(
            fh, buf, nearest4, out_size=x4, options=V.EncodeOptions(preset="ultrafast")
        )
    (tmp_path / "o.mkv").write_bytes(buf.getvalue())
    assert rep.frames_out == 10 and len(frame_times(tmp_path / "o.mkv")) == 10

    class Closing(io.RawIOBase):
        def __init__(self):
            self.n = 0

        def writable(self):
            return True

        def write(self, b):
            self.n += len(b)
            if self.n > 3000:
                raise BrokenPipeError(32, "Broken pipe")
            return len(b)

    with pytest.raises(BrokenPipeError) as exc:
        V.transcode(
            src, Closing(), nearest4, out_size=x4, options=V.EncodeOptions(preset="ultrafast")
        )
    assert isinstance(exc.value, V.BrokenOutputPipe) and isinstance(exc.value, VideoError)


def test_plain_mp4_to_a_pipe_refused(tmp_path):
    src = make_video(tmp_path / "a.mkv", frames=3)
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="fragmented"):
        run(src, fifo)


def test_reader_closing_stdout_early(tmp_path):
    src = make_video(tmp_path / "big.mkv", size=(320, 240), frames=24, noise_frames=True)
    body = """
        import os
        from adcvsr_cli import media as V
        try:
            V.transcode(sys.argv[1], "-", lambda fr: (f for f in fr), out_size=(320, 240),
                        options=V.EncodeOptions(preset="ultrafast"))
        except BrokenPipeError as e:
            # What the CLI does: silence the final flush of stdout, then exit quietly.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            print(type(e).__name__, file=sys.stderr)
            sys.exit(141)
    """
    p = subprocess.Popen([*_script(body), str(src)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(p.stdout.read(1000)) == 1000
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=30) == 141, err
    assert err.strip() == "BrokenOutputPipe"


def test_mutation_fuzz_never_escapes(tmp_path):
    """Damaged files end as a report or a VideoError: no other exception, no crash, no hang,
    nothing left behind (reliability.md T1, in small)."""
    seeds = [
        make_video(
            tmp_path / "s.mp4", frames=10, audio="aac", container_options={"movflags": "+faststart"}
        ),
        make_video(tmp_path / "s.mkv", frames=10, audio="aac", tags={"title": "t"}),
        make_video(tmp_path / "s.ts", frames=10, audio="aac"),
    ]
    body = f"""
        import json, os
        import numpy as np
        from adcvsr_cli import media as V
        from adcvsr_cli.errors import VideoError
        out = {str(tmp_path / "out")!r}
        os.mkdir(out)
        seen = {{}}
        for seed_path in sys.argv[1:]:
            data = open(seed_path, "rb").read()
            for k in range(20):
                rng = np.random.default_rng(k)
                buf = bytearray(data)
                for pos in rng.integers(0, len(buf), int(rng.integers(1, 64))):
                    buf[int(pos)] = int(rng.integers(0, 256))
                src = os.path.join(out, f"m{{k}}" + os.path.splitext(seed_path)[1])
                open(src, "wb").write(bytes(buf))
                try:
                    V.transcode(src, os.path.join(out, "o.mkv"), lambda fr: (f for f in fr),
                                out_size=lambda i: (i.width, i.height),
                                options=V.EncodeOptions(preset="ultrafast", overwrite=True))
                    kind = "ok"
                except VideoError:
                    kind = "VideoError"
                except Exception as e:
                    kind = "ESCAPED " + type(e).__name__ + ": " + str(e)
                seen[kind] = seen.get(kind, 0) + 1
        print(json.dumps(seen))
    """
    res = subprocess.run([*_script(body), *map(str, seeds)], capture_output=True, timeout=80)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    seen = json.loads(res.stdout.decode().strip().splitlines()[-1])
    print(seen)
    assert not [k for k in seen if k.startswith("ESCAPED")], seen
    assert sum(seen.values()) == 60 and seen.get("ok", 0) > 0
    assert leftovers(tmp_path / "out") == []


def test_drain_sides_is_bounded_and_stops_when_asked(tmp_path):
    """After a range's last frame the side packets are demuxed on, but an audio track that
    ended before the range end does not make it read the rest of the file: demuxing ends
    SIDE_SLACK seconds past the range end; stop() ends it at once."""
    from adcvsr_cli.media.source import SIDE_SLACK, open_source

    made = make_video(
        tmp_path / "a.mkv", size=(16, 12), frames=120, rate=2, audio="aac", audio_seconds=1.0
    )  # 60 s of video, 1 s of audio (stored after the video)
    src = tmp_path / "interleaved.mkv"
    with av.open(str(made)) as i, av.open(str(src), "w") as o:  # audio stored in time order
        outs = {s.index: o.add_stream_from_template(s) for s in i.streams}
        pkts = [p for p in i.demux() if p.dts is not None]
        for pkt in sorted(pkts, key=lambda p: float(p.dts * p.time_base)):
            pkt.stream = outs[pkt.stream.index]
            o.mux(pkt)

    def next_video_time(source) -> float:
        pkt = next(p for p in source.container.demux(source.vstream) if p.pts is not None)
        return float(pkt.pts * pkt.time_base)

    source = open_source(str(src), deinterlace=False, strict=False)
    try:
        assert source.drain_sides(2.0) is None
        sides = list(source.side)
        assert sides and all(p.stream.type == "audio" for p in sides)
        assert max(float(p.pts * p.time_base) for p in sides) < 1.0
        assert 2.0 + SIDE_SLACK <= next_video_time(source) <= 2.0 + SIDE_SLACK + 1.0
    finally:
        source.close()
    source = open_source(str(src), deinterlace=False, strict=False)
    try:
        source.stop()
        assert source.drain_sides(2.0) is None
        assert next_video_time(source) < 2.0  # it read (at most) one packet
    finally:
        source.close()


def test_a_matrix_the_conversion_cannot_use_is_not_written_as_a_tag(tmp_path):
    """The output's matrix tag is the one the RGB -> YUV conversion used. A YCgCo tag is not
    copied onto yuv420p (such an input does not decode through swscale, so the sink is asked
    directly): a warning names it, and BT.601 (smpte170m) is used and tagged; BT.709 is kept;
    an RGB output gets no matrix tag."""
    from types import SimpleNamespace

    from adcvsr_cli.media.encode import ContainerSink

    info = V.probe(make_video(tmp_path / "a.mkv", frames=2, size=(16, 12)))

    def tag(colorspace: int, pix: str) -> tuple[int, int | None, list[str]]:
        info.colorspace = colorspace
        said: list[str] = []
        sink = SimpleNamespace(
            info=info, name="o.mkv", warn=said.append, dst_cs=None, dst_range=None
        )
        cc = SimpleNamespace(colorspace=2, color_range=0)
        ContainerSink._set_colour(sink, cc, pix)  # type: ignore[arg-type]
        return cc.colorspace, sink.dst_cs, said

    assert tag(8, "yuv420p") == (
        6,
        6,
        [
            "o.mkv: the input's colour matrix (ycgco) cannot be used to write yuv420p; "
            "written and tagged as BT.601 (smpte170m)"
        ],
    )
    assert tag(1, "yuv420p") == (1, 1, [])
    assert tag(1, "gbrp") == (2, None, [])


def test_a_ycgco_input_is_read_as_bt601_with_a_warning(tmp_path):
    """swscale cannot convert YCgCo: the input is read with BT.601 instead of failing as
    unreadable; warnings name it on the way in and out, and the output is tagged BT.601."""
    src = make_video(tmp_path / "ycgco.mkv", frames=3, size=(16, 12), color={"colorspace": 8})
    rep = run(src, tmp_path / "o.mkv")
    assert V.probe(tmp_path / "o.mkv").colorspace == 6
    assert [w for w in rep.warnings if "colour matrix" in w] == [
        f"{tmp_path / 'o.mkv'}: the input's colour matrix (ycgco) cannot be used to write "
        "yuv420p; written and tagged as BT.601 (smpte170m)",
        f"{src}: its colour matrix (ycgco) cannot be converted to RGB; read as BT.601, so its "
        "colours are off",
    ], rep.warnings

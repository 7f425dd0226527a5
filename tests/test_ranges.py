"""Partial runs (--start, --end, --duration, --frames): frame-exact on VFR and B-frame inputs,
timestamps from zero, audio within one packet of the range, chapters cut, temporal context."""

from __future__ import annotations

import os
import re
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from media import make_video, nearest4
from synth import shots_clip
from tiny import tiny_dims, write_tiny_weights

import adcvsr_cli.shots as shots_mod
from adcvsr_cli.engine.scenes import detect_cuts
from adcvsr_cli.errors import UsageError
from adcvsr_cli.frames import frame_pts, read_frames
from adcvsr_cli.media import read_image, transcode
from adcvsr_cli.model import AdcVSR, init_random_
from adcvsr_cli.pipeline import UpscaleOptions, Upscaler, upscale
from adcvsr_cli.ranges import RangeRequest, parse_time, plan_cut, range_indices
from adcvsr_cli.segments import Rules
from adcvsr_cli.shots import CutMap

IMAGE_RULES = Rules(temporal=False, chunk=25, overlap=4, batch=2, temporal_color=False)
BFRAMES = {"preset": "medium", "x264-params": "keyint=6:min-keyint=6:bframes=3:scenecut=0"}


def test_parse_time():
    assert parse_time("90", "--start") == 90.0
    assert parse_time("2.5", "--start") == 2.5
    assert parse_time("1:30", "--start") == 90.0
    assert parse_time("00:01:30.25", "--start") == 90.25
    for bad in ("x", "-1", "1:75", "1:2:3:4", "nan"):
        with pytest.raises(UsageError, match="is not a time"):
            parse_time(bad, "--start")


def test_range_indices_and_request_checks():
    times = [i / 10 for i in range(10)]
    assert range_indices(times, RangeRequest(start=0.3, frames=2)) == (3, 5)
    assert range_indices(times, RangeRequest(start=0.25, end=0.5)) == (3, 5)
    assert range_indices(times, RangeRequest(start=0.3, duration=0.2)) == (3, 5)
    assert range_indices(times, RangeRequest(end=0.2)) == (0, 2)
    assert range_indices(times, RangeRequest(start=0.8, frames=9)) == (8, 10)
    with pytest.raises(UsageError, match="past the end"):
        range_indices(times, RangeRequest(start=5))
    with pytest.raises(UsageError, match="not --end and --frames"):
        RangeRequest(end=1, frames=2).validate()
    with pytest.raises(UsageError, match="is not after --start"):
        RangeRequest(start=2, end=1).validate()


def _packet_times(path, kind):
    with av.open(str(path)) as c:
        s = [st for st in c.streams if st.type == kind][0]
        return sorted(
            (float(p.pts * p.time_base), float((p.duration or 0) * p.time_base))
            for p in c.demux(s)
            if p.size and p.pts is not None
        )


def _cut(src, req, rules=IMAGE_RULES):
    pts, tb = frame_pts(src)
    return plan_cut(pts, tb, req, rules)


@pytest.mark.parametrize("kind", ["vfr", "bframes"])
def test_range_is_frame_exact(tmp_path, kind):
    if kind == "vfr":
        steps = [40, 40, 20, 60, 40, 33, 47, 40, 80, 40, 20, 20, 40, 40, 40, 60, 40, 40]
        pts = np.cumsum([0, *steps]).tolist()
        src = make_video(tmp_path / "in.mkv", fmt="matroska", pts=pts, options=BFRAMES)
    else:
        src = make_video(tmp_path / "in.mp4", frames=30, options=BFRAMES)
    want = [f.rgb for f in read_frames(src)]
    all_pts, tb = frame_pts(src)
    times = [float((p - all_pts[0]) * tb) for p in all_pts]
    cut = _cut(src, RangeRequest(start=times[7] - 0.001, frames=6))
    assert (cut.first_frame, cut.frames) == (7, 6)
    (tmp_path / "seq").mkdir()
    transcode(src, tmp_path / "seq" / "%03d.png", nearest4, out_size=(256, 192), cut=cut)
    got = sorted(os.listdir(tmp_path / "seq"))
    assert got == [f"{i:03d}.png" for i in range(1, 7)]
    for i in range(6):
        arr, _ = read_image(tmp_path / "seq" / f"{i + 1:03d}.png")
        np.testing.assert_array_equal(arr, want[7 + i].repeat(4, 0).repeat(4, 1))
    # In a container the frames keep their own spacing, from zero.
    rep = transcode(src, tmp_path / "o.mkv", nearest4, out_size=(256, 192), cut=cut)
    assert rep.frames_in == rep.frames_out == 6 and rep.cut["first_frame"] == 7
    out = [t for t, _ in _packet_times(tmp_path / "o.mkv", "video")]
    expect = [t - times[7] for t in times[7:13]]
    np.testing.assert_allclose(out, expect, atol=1.5e-3)
    assert out[0] == 0.0


def test_one_seek_serves_segments_and_ranges(tmp_path):
    """Segments (decode_range) and ranges (Source.seek) both land on the exact frame through
    media.seek.seek_frame, on a B-frame input with a keyframe every 6 frames."""
    from adcvsr_cli.media import EncodeOptions
    from adcvsr_cli.media.parts import decode_range, scan
    from adcvsr_cli.media.source import open_source

    src = make_video(tmp_path / "in.mp4", frames=20, options=BFRAMES)
    want = [f.rgb for f in read_frames(src)]
    sc = scan(str(src), EncodeOptions())
    for i in (0, 1, 5, 6, 7, 13, 19):
        got = list(decode_range(str(src), sc, i, min(20, i + 2), EncodeOptions()))
        np.testing.assert_array_equal(np.stack(got), np.stack(want[i : i + 2]))
        source = open_source(src, deinterlace=True, strict=False)
        try:
            source.seek(sc.pts[i])
            frame = next(source.frames(deep=False, want_alpha=False, warn=print))
        finally:
            source.close()
        assert frame.pts == sc.pts[i]
        np.testing.assert_array_equal(frame.array, want[i])


def test_audio_is_cut_within_one_packet_and_chapters_follow(tmp_path):
    chapters = [
        {
            "id": 1,
            "start": 0,
            "end": 400,
            "time_base": Fraction(1, 1000),
            "metadata": {"title": "A"},
        },
        {
            "id": 2,
            "start": 400,
            "end": 2000,
            "time_base": Fraction(1, 1000),
            "metadata": {"title": "B"},
        },
    ]
    src = make_video(tmp_path / "in.mkv", frames=40, fmt="matroska", audio="aac", chapters=chapters)
    cut = _cut(src, RangeRequest(start=0.5, duration=0.6))
    transcode(src, tmp_path / "o.mkv", nearest4, out_size=(256, 192), cut=cut)
    span = cut.t_to - cut.t_from
    audio = _packet_times(tmp_path / "o.mkv", "audio")
    packet = max(d for _, d in audio)  # one AAC packet: 1024 samples, about 21 ms at 48 kHz
    assert 0.0 <= audio[0][0] < packet
    # Packets are kept whole: the last one starts inside the span and may end past it.
    assert span - packet <= audio[-1][0] < span
    assert audio[-1][0] + audio[-1][1] < span + packet
    # Every packet of the input that starts inside the range is there, and no other.
    source = [t for t, _ in _packet_times(src, "audio") if cut.t_from <= t < cut.t_to]
    assert len(audio) == len(source)
    with av.open(str(tmp_path / "o.mkv")) as c:
        got = [
            (ch["metadata"]["title"], float(ch["start"] * ch["time_base"])) for ch in c.chapters()
        ]
    assert got == [("B", 0.0)]  # chapter A ended before the range; B starts at the new zero


def test_a_deinterlaced_range_starting_on_a_keyframe_equals_the_full_decode(tmp_path):
    """bwdif looks at the frame before: a seek that lands on the range's first frame (a keyframe)
    goes back further, for ranges and for the preview's and the scene scan's reads."""
    opts = {"x264-params": "interlaced=1:tff=1:keyint=6:min-keyint=6:scenecut=0"}
    src = make_video(
        tmp_path / "in.mp4", frames=20, interlaced=True, noise_frames=True, options=opts
    )
    want = [f.rgb for f in read_frames(src)]
    pts, tb = frame_pts(src)
    for s in (6, 12):
        got = [f.rgb for f in read_frames(src, start=s, pts=pts)][:3]
        np.testing.assert_array_equal(np.stack(got), np.stack(want[s : s + 3]))
    cut = _cut(src, RangeRequest(start=float((pts[6] - pts[0]) * tb), frames=2))
    assert cut.seek_pts == pts[6]  # a batch of 2 starts there: no context frame before it
    (tmp_path / "seq").mkdir()
    transcode(src, tmp_path / "seq" / "%03d.png", nearest4, out_size=(256, 192), cut=cut)
    for i in range(2):
        arr, _ = read_image(tmp_path / "seq" / f"{i + 1:03d}.png")
        np.testing.assert_array_equal(arr, want[6 + i].repeat(4, 0).repeat(4, 1))


def _badly_interleaved(path, shift, seconds=3, rate=25):
    """Matroska with AAC audio stored ``shift`` seconds after (negative: before) the video of its
    time: packets written in that order, the muxer's interleaving turned off."""
    with av.open(str(path), "w", format="matroska", options={"max_interleave_delta": "1"}) as out:
        v = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("aac", rate=48000, layout="stereo")
        rng = np.random.default_rng(0)
        packets = []
        for i in range(seconds * rate):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 7 % 255, np.uint8), "rgb24")
            f.pts = i
            packets += [(p, 0.0) for p in v.encode(f)]
        packets += [(p, 0.0) for p in v.encode(None)]
        for k in range(seconds * 48000 // 1024):
            noise = (rng.random((2, 1024), dtype=np.float32) - 0.5) * 0.1
            f = av.AudioFrame.from_ndarray(noise, format="fltp", layout="stereo")
            f.sample_rate, f.pts = 48000, k * 1024
            packets += [(p, shift) for p in a.encode(f)]
        packets += [(p, shift) for p in a.encode(None)]
        for p, _ in sorted(packets, key=lambda q: float(q[0].dts * q[0].time_base) + q[1]):
            out.mux(p)
    return path


@pytest.mark.parametrize("shift", [1.5, -1.5])
def test_audio_of_a_badly_interleaved_file_is_all_there(tmp_path, shift):
    """Audio stored late (after video past the range end) or early (before the keyframe the
    range seeks to) is still cut to the range: every packet that starts inside it."""
    src = _badly_interleaved(tmp_path / "in.mkv", shift)
    for start in (0.5, 1.3):
        cut = _cut(src, RangeRequest(start=start, duration=0.6))
        out = tmp_path / f"o{start}.mkv"
        transcode(src, out, nearest4, out_size=(256, 192), cut=cut)
        source = [t for t, _ in _packet_times(src, "audio") if cut.t_from <= t < cut.t_to]
        assert len(source) > 20
        got = [t for t, _ in _packet_times(out, "audio")]
        assert len(got) == len(source)
        np.testing.assert_allclose(got, [t - cut.t_from for t in source], atol=1e-3)


def test_temporal_range_equals_the_full_run(tmp_path):
    m = AdcVSR(tiny_dims(temporal=True)).eval()
    init_random_(m, seed=2)
    up = Upscaler(m, device=torch.device("cpu"), dtype=torch.float32, source="tiny-t")
    src = make_video(tmp_path / "in.mp4", size=(32, 32), frames=16, options=BFRAMES)
    opts = dict(tile=0, chunk=5, chunk_overlap=1, scene_split=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "part").mkdir()
    upscale(src, tmp_path / "full" / "%03d.png", up, UpscaleOptions(**opts))
    rep = upscale(
        src,
        tmp_path / "part" / "%03d.png",
        up,
        UpscaleOptions(**opts, range=RangeRequest(start=0.24, frames=5)),  # frames 6..10
    )
    assert rep.frames_out == 5 and rep.media["cut"]["first_frame"] == 6
    assert rep.media["cut"]["context_frames"] > 0
    for i in range(5):
        part, _ = read_image(tmp_path / "part" / f"{i + 1:03d}.png")
        full, _ = read_image(tmp_path / "full" / f"{i + 7:03d}.png")
        np.testing.assert_array_equal(part, full)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    src = shots_clip(tmp_path_factory.mktemp("shots") / "in.mp4", [9, 14, 8, 9])
    assert detect_cuts(f.rgb for f in read_frames(src)) == [9, 23, 31]
    return src


def test_cut_map_finds_the_full_runs_cuts_from_anywhere(shots, monkeypatch):
    """Scanning back from any frame (blocks of 4, doubling) finds the shot start a detector
    run over the whole clip finds, and decodes only part of the clip when a cut is near."""
    monkeypatch.setattr(shots_mod, "FIRST_BLOCK", 4)
    pts, _ = frame_pts(shots)
    starts = [0] * 9 + [9] * 14 + [23] * 8 + [31] * 9
    for i in range(40):
        cmap = CutMap(shots, pts)
        assert cmap.shot_start(i) == starts[i]
        cmap.ensure(i, min(40, i + 10))
        assert cmap.cuts_in(starts[i], min(40, i + 10)) == [
            c for c in (9, 23, 31) if starts[i] <= c < i + 10
        ]
        if i >= 26:  # the scan stopped at the cut before the frame: frame 0 was not reached
            assert cmap.known[0][0] > 0
    assert CutMap(shots, pts, detect=False).shot_start(30) == 0


def _upscaler(temporal):
    m = AdcVSR(tiny_dims(temporal=temporal)).eval()
    init_random_(m, seed=2)
    return Upscaler(m, device=torch.device("cpu"), dtype=torch.float32, source="tiny")


@pytest.mark.parametrize(
    "temporal,color_fix,ranges",
    [
        # (first frame, frames, first frame decoded). Chunks of 5 step by 4 from each shot
        # start: [9, 23) has inner boundaries at 14 and 18, [31, 40) at 36; a boundary inside
        # a shot is decoded from one frame before it (the overlap), a shot start from itself.
        (True, "adain", [(26, 4, 23), (20, 7, 17), (12, 3, 9), (0, 3, 0), (36, 4, 35)]),
        # adain-temporal: from the start of the range's shot (9 and 23).
        (True, "adain-temporal", [(16, 3, 9), (24, 3, 23)]),
        # an image model: from the batch of 2 that holds the shot start (23 -> 22, 9 -> 8).
        (False, "adain-temporal", [(27, 2, 22), (14, 1, 8)]),
    ],
    ids=["temporal", "temporal-adain-temporal", "image-adain-temporal"],
)
def test_ranges_with_scene_cuts_equal_the_full_run(
    tmp_path, shots, monkeypatch, temporal, color_fix, ranges
):
    """Cuts at 9, 23 and 31; chunks of 5 overlapping by 1: a range inside a shot, one across a
    cut, ranges at both ends, and adain-temporal's colour history from the shot start."""
    import adcvsr_cli.ranges as ranges_mod

    used = []  # the Cut each range ran with (pipeline.upscale asks ranges.cut_for for it)
    real_cut_for = ranges_mod.cut_for

    def cut_for(*args, **kwargs):
        used.append(real_cut_for(*args, **kwargs))
        return used[-1]

    monkeypatch.setattr(ranges_mod, "cut_for", cut_for)
    pts, _ = frame_pts(shots)
    up = _upscaler(temporal)
    opts = dict(tile=0, chunk=5, chunk_overlap=1, color_fix=color_fix, batch=2)
    (tmp_path / "full").mkdir()
    rep = upscale(shots, tmp_path / "full" / "%03d.png", up, UpscaleOptions(**opts))
    assert rep.scene_cuts == [9, 23, 31]
    full = [read_image(tmp_path / "full" / f"{i + 1:03d}.png")[0] for i in range(40)]
    for first, count, decoded in ranges:
        out = tmp_path / f"part{first}"
        out.mkdir()
        req = RangeRequest(start=first / 25 - 0.001, frames=count)
        rep = upscale(shots, out / "%03d.png", up, UpscaleOptions(**opts, range=req))
        cut = rep.media["cut"]
        assert (cut["first_frame"], rep.frames_out) == (first, count)
        assert cut["scanned_frames"] > 0
        assert (used[-1].first_decoded, used[-1].seek_pts) == (decoded, pts[decoded])
        assert cut["context_frames"] == used[-1].context_frames
        assert set(rep.scene_cuts) <= {9, 23, 31}  # in input frame numbers
        if temporal and first < 23 < first + count:
            assert 23 in rep.scene_cuts
        for k in range(count):
            part, _ = read_image(out / f"{k + 1:03d}.png")
            np.testing.assert_array_equal(part, full[first + k], err_msg=f"frame {first + k}")
    assert len(used) == len(ranges)


def test_a_range_with_deinterlacing_off_scans_the_fields_the_full_run_sees(tmp_path, monkeypatch):
    """--no-deinterlace on interlaced input: the scene scan around a range decodes the frames
    the full run decodes (fields, not bwdif's frames), so it finds the full run's cuts."""
    import adcvsr_cli.frames as frames_mod
    from adcvsr_cli.media import EncodeOptions

    src = shots_clip(tmp_path / "in.mp4", [9, 14, 8, 9], size=64, interlaced=True)
    fields = [f.rgb for f in read_frames(src, deinterlace=False)]
    woven = [f.rgb for f in read_frames(src)]
    assert any(not np.array_equal(a, b) for a, b in zip(fields, woven, strict=True))
    scanned: dict[int, np.ndarray] = {}
    real_read = frames_mod.read_frames

    def spy(path, **kwargs):
        for f in real_read(path, **kwargs):
            scanned[f.index] = f.rgb  # only the scan reads so (the runs decode through media)
            yield f

    monkeypatch.setattr(frames_mod, "read_frames", spy)
    up = _upscaler(False)
    opts = dict(tile=0, color_fix="adain-temporal", batch=2)
    enc = EncodeOptions(deinterlace=False)
    (tmp_path / "full").mkdir()
    full = upscale(src, tmp_path / "full" / "%03d.png", up, UpscaleOptions(**opts), encode=enc)
    assert full.scene_cuts == [9, 23, 31]
    out = tmp_path / "part"
    out.mkdir()
    req = RangeRequest(start=27 / 25 - 0.001, frames=2)
    rep = upscale(src, out / "%03d.png", up, UpscaleOptions(**opts, range=req), encode=enc)
    assert rep.media["cut"]["first_frame"] == 27 and rep.media["cut"]["scanned_frames"] > 0
    assert set(rep.scene_cuts) <= {9, 23, 31} and 23 in scanned
    for i, rgb in scanned.items():
        np.testing.assert_array_equal(rgb, fields[i], err_msg=f"scanned frame {i}")
    for k in range(2):
        part, _ = read_image(out / f"{k + 1:03d}.png")
        want, _ = read_image(tmp_path / "full" / f"{27 + k + 1:03d}.png")
        np.testing.assert_array_equal(part, want)


def test_cli_range_messages(tmp_path):
    import subprocess
    import sys

    src = make_video(tmp_path / "in.mp4", frames=10)
    write_tiny_weights(tmp_path / "w.safetensors")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env["ADCVSR_WEIGHTS"] = str(tmp_path / "w.safetensors")

    def run(*args):
        cmd = [sys.executable, "-m", "adcvsr_cli", "upscale", str(src), str(tmp_path / "o.mkv")]
        cmd += ["--device", "cpu"]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env)

    r = run("--start", "9")
    assert r.returncode == 2 and "--start 9: past the end of the video" in r.stderr
    r = run("--end", "1", "--frames", "2")
    assert r.returncode == 2 and "give one of --end, --duration and --frames" in r.stderr
    r = run("--start", "soon")
    assert r.returncode == 2 and "--start 'soon' is not a time" in r.stderr
    assert not (tmp_path / "o.mkv").exists()
    r = run("--start", "0.2", "--frames", "3")
    assert r.returncode == 0, r.stderr
    assert "cut to frames 5..7 (0.200 s to 0.320 s of the input" in r.stderr
    # adain-temporal's colour history starts at the shot's start (frame 0): the frames before
    # the range are upscaled as context, and scanned for scene cuts first.
    r = run("--start", "0.2", "--frames", "3", "--color-fix", "adain-temporal", "-y")
    assert r.returncode == 0, r.stderr
    said = re.search(
        r"(\d+) frames around it upscaled as context and (\d+) frames decoded", r.stderr
    )
    assert said is not None, r.stderr
    assert int(said[1]) >= 5 and int(said[2]) >= 8  # frames 0..4 at least, scanned up to 7


def test_a_part_of_a_long_video_is_not_segmented(tmp_path):
    from adcvsr_cli.segmented import upscale_long

    m = AdcVSR(tiny_dims()).eval()
    init_random_(m, seed=0)
    up = Upscaler(m, device=torch.device("cpu"), dtype=torch.float32, source="tiny")
    src = make_video(tmp_path / "in.mp4", size=(32, 32), frames=12)
    opts = UpscaleOptions(tile=0, range=RangeRequest(start=0.2, frames=3))
    rep = upscale_long(src, tmp_path / "o.mkv", [up], opts, segment=2)
    assert rep.frames_out == 3 and rep.media["cut"]["first_frame"] == 5

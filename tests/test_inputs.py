"""Tricky inputs run the way a user runs them: the `adcvsr` command on files the suite makes.

Each test is one class of input (tiny frames, edit lists, streams and metadata, start times,
names and pipes, encoder logs). Every run checks that stderr holds no traceback and no line
that is not the tool's own.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from media import copy_cut, make_image, make_video  # noqa: E402
from tiny import cli_env, write_tiny_weights  # noqa: E402

from adcvsr_cli.model import AdcVSRDims, DecoderDims, UNetDims  # noqa: E402

# Lines that are not the tool's own: libav's "[mov @ 0x...]" log, encoder banners (x264, x265,
# SVT-AV1), Python warnings, tracebacks.
_FOREIGN = re.compile(
    r"(^\s*\[[\w:-]+ @ 0x[0-9a-f]+\]|Svt\[|^\s*x26[45] ?\[|^\s*\[lib\w+|\w+Warning: |Traceback)"
)


def foreign_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if _FOREIGN.search(ln)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random network whose GroupNorms keep two values per group at 1x1 (the real
    network has 20 or more there): small enough to be quick, valid down to 1x1 inputs."""
    dims = AdcVSRDims(
        unet=UNetDims(widths=(16, 64, 64, 64), head_dim=8, out_channels=16),
        decoder=DecoderDims(latent_channels=16, widths=(16, 16, 8, 8), layers_per_block=2),
    )
    return write_tiny_weights(tmp_path_factory.mktemp("weights") / "small.safetensors", dims)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # a warning anywhere must show, and fail the stderr check
    return cli_env(tmp_path_factory.mktemp("cache"), PYTHONWARNINGS="default")


def upscale(
    weights: Path, env: dict[str, str], *args: Any, ok: bool = True, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run `adcvsr upscale ARGS` with the small network; check stderr is the tool's own."""
    cmd = ["adcvsr", "upscale", *map(str, args), "--weights", str(weights), "--device", "cpu"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, **kw)
    assert not foreign_lines(r.stderr), r.stderr
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def shown_times(path: Path) -> list[float]:
    """Presentation times of the frames a player shows (decoded, edit lists applied)."""
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(c.streams.video[0])]


def rgb_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


# ------------------------------------------------------------------------------------------
# Tiny frames
# ------------------------------------------------------------------------------------------

COLOUR = (200, 120, 40)


@pytest.mark.parametrize("size", [(1, 1), (2, 1), (1, 2), (3, 3)])
def test_tiny_frames_give_the_picture(tmp_path, weights, env, size):
    """From 1x1 up: the output has the input's colour (no black frame from a NaN colour fix)
    and exactly 4x the size, with no warning."""
    w, h = size
    video = make_video(
        tmp_path / "v.mkv", size=size, frames=3, codec="libx264rgb", pix_fmt="rgb24", solid=COLOUR
    )
    image = tmp_path / "i.png"
    with av.open(str(image), "w", format="image2") as c:
        s = c.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = w, h, "rgb24"
        f = av.VideoFrame.from_ndarray(np.full((h, w, 3), COLOUR, np.uint8), format="rgb24")
        for p in [*s.encode(f), *s.encode(None)]:
            c.mux(p)
    out = tmp_path / "out"
    out.mkdir()
    upscale(weights, env, video, image, out)
    vframes = rgb_frames(out / "v.mkv")
    (img,) = rgb_frames(out / "i.png")
    assert len(vframes) == 3 and img.shape == (4 * h, 4 * w, 3)
    # Video sides are rounded up to even for 4:2:0 encoders; the image keeps 4x exactly.
    assert vframes[0].shape[:2] == (4 * h + (4 * h) % 2, 4 * w + (4 * w) % 2)
    for frame in [*vframes, img]:
        # The colour fix carries the input's colour (the video passes through yuv420p).
        assert np.abs(frame.reshape(-1, 3).mean(0) - COLOUR).max() < 12, frame.reshape(-1, 3)[:4]


# ------------------------------------------------------------------------------------------
# Complete files whose header counts more samples than they present
# ------------------------------------------------------------------------------------------


def test_edit_lists_are_not_an_early_end(tmp_path, weights, env):
    """An MP4 whose first samples an edit list discards (negative start, or a copy cut at a
    non-keyframe) is complete: every presented frame comes out, with its time, and --strict
    takes it."""
    lead = make_video(tmp_path / "lead.mp4", frames=12, pts=list(range(-3, 9)), rate=25)
    gop = make_video(tmp_path / "gop.mp4", frames=24, options={"g": "8", "bf": "2"})
    cut = copy_cut(gop, tmp_path / "cut.mp4", start=11)
    for src, shown in ((lead, 9), (cut, 13)):
        with av.open(str(src)) as c:
            assert c.streams.video[0].frames > shown  # the header counts the discarded ones
        want = shown_times(src)
        assert len(want) == shown
        out = tmp_path / f"out_{src.name}"
        r = upscale(weights, env, src, out, "--strict")
        assert "ends early" not in r.stderr, r.stderr
        assert shown_times(out) == pytest.approx(want, abs=1e-3)


# ------------------------------------------------------------------------------------------
# Every hint the tool prints is a command that works
# ------------------------------------------------------------------------------------------

_HINT = re.compile(r"\buse (.+?)(?:\)|$)")


def hinted_runs(args: list[str], message: str) -> list[list[str]]:
    """The commands a refusal's hint suggests: each ``--flag [value]`` it names added to the
    arguments (``--overwrite / -y`` counts once), and "another container such as .ext" as the
    output renamed. ``args`` are ``[input, output, flags...]``."""
    m = _HINT.search(message)
    assert m, f"no hint in: {message}"
    runs = []
    for way in re.split(r",? or ", m.group(1)):
        if ext := re.search(r"such as (\.\w+)", way):
            runs.append([args[0], str(Path(args[1]).with_suffix(ext.group(1))), *args[2:]])
            continue
        flag = re.match(r"(--[a-z-]+)(?: ([A-Za-z0-9_]+))?", way.strip())
        assert flag, f"hint part is neither a flag nor a container: {way!r} in {message}"
        extra = [flag.group(1)] + ([flag.group(2)] if flag.group(2) not in (None, "to") else [])
        rest = list(args[2:])
        if extra[0] in rest:  # a flag given with another value: the hint replaces it
            i = rest.index(extra[0])
            del rest[i : i + len(extra)]
        runs.append([args[0], args[1], *rest, *extra])
    return runs


def test_every_hint_the_tool_prints_works(tmp_path, weights, env):
    aac = make_video(tmp_path / "aac.mkv", frames=4, audio="aac")
    srt_src = tmp_path / "s.srt"
    srt_src.write_text("1\n00:00:00,000 --> 00:00:00,100\nHi\n\n", encoding="utf-8")
    subs = make_video(tmp_path / "subs.mkv", frames=4, subtitles=str(srt_src))
    (tmp_path / "exists.mkv").write_bytes(b"old")
    cases = [
        [aac, tmp_path / "a.webm"],  # AAC cannot go into WebM: the hint names Opus
        [aac, tmp_path / "b.webm", "--audio-codec", "aac"],
        [subs, tmp_path / "c.mp4"],  # SubRip cannot go into MP4
        [aac, tmp_path / "exists.mkv"],
    ]
    tried = 0
    for case in cases:
        args = [str(a) for a in case]
        r = upscale(weights, env, *args, ok=False)
        assert r.returncode != 0, r.stderr
        message = " ".join(r.stderr.split())
        if Path(args[1]).suffix == ".webm":
            assert "--audio-codec libopus" in message, message
        for run in hinted_runs(args, message):
            out = Path(run[1])
            if out.name == "exists.mkv":
                out.write_bytes(b"old")
            else:
                out.unlink(missing_ok=True)
            again = upscale(weights, env, *run, ok=False)
            assert again.returncode == 0, f"hint {run} from {message!r} failed: {again.stderr}"
            tried += 1
    assert tried >= 9


# ------------------------------------------------------------------------------------------
# Names with % in them, and inputs that can be read only once
# ------------------------------------------------------------------------------------------


def test_percent_names_are_names_and_patterns_only_d(tmp_path, weights, env):
    """Only %d / %0Nd make a sequence pattern; any other % is part of the file name."""

    src = make_image(tmp_path / "in 50% off.png", 8, 6)
    out = tmp_path / "big 100% done.png"
    upscale(weights, env, src, out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("big")) == [out.name]
    (img,) = rgb_frames(out)
    assert img.shape == (24, 32, 3)
    clip = make_video(tmp_path / "clip.mkv", frames=3, size=(16, 12))
    upscale(weights, env, clip, tmp_path / "f_%03d_100%.png")
    assert sorted(p.name for p in tmp_path.glob("f_*")) == [f"f_00{i}_100%.png" for i in (1, 2, 3)]


def test_process_substitution_input_is_read_once(tmp_path, weights, env):
    """`adcvsr upscale <(cat in.mkv) out.mkv`: the pipe is read once (no probe before the
    run), like standard input; every frame and the audio come out."""
    src = make_video(tmp_path / "in.mkv", frames=6, size=(16, 12), audio="aac")
    out = tmp_path / "out.mkv"
    script = 'exec adcvsr upscale <(cat "$1") "$2" --weights "$3" --device cpu'
    r = subprocess.run(
        ["bash", "-c", script, "_", str(src), str(out), str(weights)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert not foreign_lines(r.stderr), r.stderr
    assert shown_times(out) == pytest.approx(shown_times(src), abs=1e-3)
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]


# ------------------------------------------------------------------------------------------
# Start times: the same in every output form, or the shift named
# ------------------------------------------------------------------------------------------


def first_times(path: Path) -> tuple[float, float]:
    """When the first video frame and the first audio frame are shown (edit lists applied)."""
    with av.open(str(path)) as c:
        video = float(next(c.decode(video=0)).time)
    with av.open(str(path)) as c:
        audio = float(next(c.decode(audio=0)).time)
    return video, audio


def upscale_to_stdout(
    weights: Path, env: dict[str, str], src: Path, out: Path, fmt: str
) -> subprocess.CompletedProcess[str]:
    """`adcvsr upscale SRC - --format FMT`, its standard output a pipe (through cat)."""
    cmd = f"adcvsr upscale {src} - --format {fmt} --weights {weights} --device cpu | cat > {out}"
    r = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True, text=True, timeout=300
    )
    assert not foreign_lines(r.stderr), r.stderr
    assert r.returncode == 0, r.stderr
    return r


def test_every_output_form_starts_the_same_or_names_the_shift(tmp_path, weights, env):
    """An MP4 with AAC audio at 24 fps (the encoder's B-frames give the first frame a decode
    time two frames, 83 ms, before it is shown): a fragmented MP4 on standard output starts
    where the MP4 file starts, at the input's start, audio included. Matroska stores no times
    below zero beyond a stream's codec delay: a libavformat that takes the AAC priming for the
    codec delay (PyAV 19's) keeps the times, an older one moves both streams by the priming.
    File and pipe name the same shift (or none), and the output starts that much later."""
    src = make_video(tmp_path / "in.mp4", frames=6, size=(16, 12), rate=24, audio="aac", fmt="mp4")
    want = first_times(src)
    assert want == (0.0, 0.0)
    upscale(weights, env, src, tmp_path / "file.mp4")
    upscale_to_stdout(weights, env, src, tmp_path / "pipe.mp4", "mp4")
    for name in ("file.mp4", "pipe.mp4"):
        got = first_times(tmp_path / name)
        assert got == pytest.approx(want, abs=1e-3), (name, got)
        assert len(shown_times(tmp_path / name)) == 6
    shifts = []
    for r, name in (
        (upscale(weights, env, src, tmp_path / "file.mkv"), "file.mkv"),
        (upscale_to_stdout(weights, env, src, tmp_path / "pipe.mkv", "matroska"), "pipe.mkv"),
    ):
        m = re.search(r"timestamps shifted by \+(\d+) ms by the matroska muxer", r.stderr)
        shifts.append(int(m.group(1)) if m else 0)
        video, _ = first_times(tmp_path / name)
        assert abs(video * 1000 - shifts[-1]) <= 1, (name, video, r.stderr)
    assert shifts[0] == shifts[1] in (0, round(1024 / 48))  # one AAC frame of priming at 48 kHz


def test_opus_pre_skip_moves_no_matroska_output(tmp_path, weights, env):
    """Opus audio starts a pre-skip before zero, which Matroska stores as the track's codec
    delay: neither a file nor a pipe output is moved, and neither names a shift."""
    src = make_video(tmp_path / "in.mkv", frames=4, size=(16, 12), audio="libopus")
    for r, name in (
        (upscale(weights, env, src, tmp_path / "file.mkv"), "file.mkv"),
        (upscale_to_stdout(weights, env, src, tmp_path / "pipe.mkv", "matroska"), "pipe.mkv"),
    ):
        assert "timestamps shifted" not in r.stderr, r.stderr
        assert first_times(tmp_path / name)[0] == 0.0


# ------------------------------------------------------------------------------------------
# Quiet means quiet: encoders' own log lines never reach stderr
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "codec_args",
    [
        ["--codec", "libx265"],
        ["--codec", "libx265", "-e", "x265-params=bframes=2"],  # the user's own params
        ["--codec", "libsvtav1"],
    ],
    ids=["x265", "x265-params", "svt-av1"],
)
def test_encoders_print_nothing_of_their_own(tmp_path, weights, env, codec_args):
    """x265's banner and SVT-AV1's "Svt[info]" lines are written by the libraries
    themselves: with their log level set, stderr holds only the tool's own lines."""
    src = make_video(tmp_path / "in.mkv", frames=4, size=(16, 12))
    env = {k: v for k, v in env.items() if k != "SVT_LOG"}
    r = upscale(weights, env, src, tmp_path / "out.mkv", *codec_args)
    assert not re.search(r"x265 \[|Svt\[", r.stderr), r.stderr
    assert len(shown_times(tmp_path / "out.mkv")) == 4


def test_an_odd_asked_width_is_written_as_asked(tmp_path, weights, env):
    """--width 7: 4:2:0 cannot hold an odd width, so the video is written 4:4:4 at 7 pixels,
    and a warning says so; a derived side is rounded to even."""
    src = make_video(tmp_path / "in.mkv", frames=3, size=(16, 12))
    out = tmp_path / "out.mkv"
    r = upscale(weights, env, src, out, "--width", "7")
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height, cc.pix_fmt) == (7, 6, "yuv444p")
    assert "7x6" in r.stderr and "yuv444p" in r.stderr, r.stderr


def test_libav_warnings_are_the_tools_own_messages(tmp_path, weights, env):
    """A warning libav logs itself (an MP4 whose index is there twice) is shown as the tool's
    warning, in its words and not libav's "[mov @ 0x...]" form; -q hides it; --json on
    standard error keeps it free of anything but JSON lines."""
    from media import with_duplicate_moov

    src = with_duplicate_moov(
        make_video(tmp_path / "a.mp4", frames=3, size=(16, 12)), tmp_path / "twice.mp4"
    )
    r = upscale(weights, env, src, tmp_path / "out.mkv")
    want = "warning: libav (mov,mp4,m4a,3gp,3g2,mj2): Found duplicated MOOV Atom. Skipped it"
    assert want in r.stderr.splitlines(), r.stderr
    assert len(shown_times(tmp_path / "out.mkv")) == 3
    quiet = upscale(weights, env, src, tmp_path / "quiet.mkv", "-q")
    assert quiet.stderr == "", quiet.stderr
    js = upscale(weights, env, src, tmp_path / "json.mkv", "--json")
    events = [json.loads(line) for line in js.stderr.splitlines()]  # JSON lines only
    warned = [e["message"] for e in events if e["event"] == "warning"]
    assert want.removeprefix("warning: ") in warned, js.stderr


# ------------------------------------------------------------------------------------------
# Streams and metadata: kept, or named in a warning
# ------------------------------------------------------------------------------------------


def _cover(path: Path) -> tuple[Any, bytes]:
    with av.open(str(path)) as c:
        (s,) = [s for s in c.streams.video if s.disposition & av.stream.Disposition.attached_pic]
        pkt = next(p for p in c.demux(s) if p.size)
        return s.codec_context.name, bytes(pkt)


def test_matroska_cover_stays_a_cover(tmp_path, weights, env):
    """A Matroska cover attachment comes out as a cover (the attached-picture role, the same
    bytes) in .mkv and .mp4; WebM cannot hold one, and a warning names it."""
    from media import jpeg_bytes, with_cover

    jpeg = jpeg_bytes()
    src = with_cover(
        make_video(tmp_path / "v.mkv", frames=4, size=(16, 12)), tmp_path / "c.mkv", jpeg
    )
    assert _cover(src) == ("mjpeg", jpeg)
    for ext in (".mkv", ".mp4"):
        out = tmp_path / f"out{ext}"
        upscale(weights, env, src, out)
        assert _cover(out) == ("mjpeg", jpeg)
        with av.open(str(out)) as c:
            assert len(c.streams.video) == 2  # the upscaled video and the cover, nothing else
    r = upscale(weights, env, src, tmp_path / "out.webm")
    assert "cover.jpg" in r.stderr and "dropped" in r.stderr, r.stderr


def test_vp9_alpha_is_read_and_no_stale_tag_is_written(tmp_path, weights, env):
    """WebM VP9 with alpha: decoded with its alpha plane (libvpx-vp9); a PNG sequence keeps
    it, a video output says it drops it and carries no ALPHA_MODE tag."""
    from media import make_vp9_alpha

    src = make_vp9_alpha(tmp_path / "a.webm")
    r = upscale(weights, env, src, tmp_path / "out.webm")
    assert "alpha channel is dropped" in r.stderr, r.stderr
    with av.open(str(tmp_path / "out.webm")) as c:
        assert "alpha_mode" not in {k.lower() for k in c.streams.video[0].metadata}
    upscale(weights, env, src, tmp_path / "f_%03d.png")
    with av.open(str(tmp_path / "f_001.png")) as c:
        alpha = next(c.decode(video=0)).to_ndarray(format="rgba")[..., 3]
    assert alpha.shape == (48, 64)
    ramp = alpha.mean(0)
    assert ramp[0] < 40 and ramp[-1] > 215 and np.all(np.diff(ramp) >= -2)  # the ramp kept


def test_hdr10_metadata_is_kept_or_named(tmp_path, weights, env):
    """HDR10 mastering-display and content-light metadata: kept by x265 and SVT-AV1 outputs
    (the same values on the output's frames), named in a warning by an encoder without them."""
    from media import make_hdr10

    from adcvsr_cli.media.hdr import hdr_metadata

    def meta(path: Path) -> Any:
        with av.open(str(path)) as c:
            frame = next(c.decode(c.streams.video[0]))
            return frame.format.name, hdr_metadata(frame)

    src = make_hdr10(tmp_path / "hdr.mkv")
    fmt, want = meta(src)
    assert want is not None and want.max_cll == 1000 and want.luminance[1] == 1000
    for codec in ("libx265", "libsvtav1"):
        out = tmp_path / f"{codec}.mkv"
        upscale(weights, env, src, out, "--codec", codec)
        got_fmt, got = meta(out)
        assert got_fmt == fmt == "yuv420p10le"
        assert got is not None and got.max_cll == 1000 and got.max_fall == 400
        assert got.luminance[1] == 1000
        # SVT-AV1 stores chromaticities in 1/65536 steps (AV1's precision): equal within that.
        for a, b in zip(
            [*got.primaries, got.white_point], [*want.primaries, want.white_point], strict=True
        ):
            assert abs(a[0] - b[0]) < 1e-4 and abs(a[1] - b[1]) < 1e-4
    r = upscale(weights, env, src, tmp_path / "x264.mkv", "--codec", "libx264")
    assert "mastering-display" in r.stderr and "--codec libx265" in r.stderr, r.stderr


def test_hdr10_metadata_read_from_side_data_of_either_pyav_shape():
    """A frame's side data iterates its entries in PyAV 18 and their types in PyAV 19 (a
    mapping's keys): the metadata is read from both shapes alike."""
    import struct
    from types import SimpleNamespace

    from av.sidedata.sidedata import Type

    from adcvsr_cli.media.hdr import hdr_metadata

    class Entry:
        def __init__(self, kind: Any, data: bytes):
            self.type, self.data = kind, data

        def __bytes__(self) -> bytes:
            return self.data

    # BT.2020 primaries and D65 white point (x, y pairs over 50000), 0.005 to 1000 cd/m2
    xy = [34000, 16000, 13250, 34500, 7500, 3000, 15635, 16450]
    mdcv = [v for x in xy for v in (x, 50000)] + [50, 10000, 10000000, 10000, 1, 1]
    entries = [
        Entry(Type.MASTERING_DISPLAY_METADATA, struct.pack("<22i", *mdcv)),
        Entry(Type.CONTENT_LIGHT_LEVEL, struct.pack("<2I", 1000, 400)),
    ]
    pyav18 = SimpleNamespace(side_data=entries)
    pyav19 = SimpleNamespace(side_data={e.type: e for e in entries})
    got = [hdr_metadata(pyav18), hdr_metadata(pyav19)]
    assert got[0] == got[1] and got[0] is not None
    assert (got[0].max_cll, got[0].max_fall, got[0].luminance[1]) == (1000, 400, 1000)
    assert got[0].white_point == (Fraction(15635, 50000), Fraction(16450, 50000))


def test_hdr10_metadata_is_kept_by_a_segmented_run(tmp_path, weights, env):
    """A segmented run (`--segment 3`) of HDR10 input: every segment's encoder gets the
    metadata, so the joined output's frames carry it; libx264 names it once."""
    from media import make_hdr10

    from adcvsr_cli.media.hdr import hdr_metadata

    src = make_hdr10(tmp_path / "hdr.mkv", frames=7)
    out = tmp_path / "seg.mkv"
    r = upscale(weights, env, src, out, "--codec", "libx265", "--segment", "3")
    assert "mastering-display" not in r.stderr, r.stderr
    with av.open(str(out)) as c:
        frames = list(c.decode(c.streams.video[0]))
        got = [hdr_metadata(f) for f in frames if f.key_frame]
    # 7 frames at --segment 3, a frame per network call on the CPU: segments of 3 and 4 frames
    # (a tail up to one and a half segments long joins the last), one keyframe each at least
    assert len(frames) == 7 and len(got) >= 2
    assert all(g is not None and g.max_cll == 1000 and g.luminance[1] == 1000 for g in got)
    r = upscale(weights, env, src, tmp_path / "x264.mkv", "--codec", "libx264", "--segment", "3")
    assert r.stderr.count("mastering-display") == 1, r.stderr


def test_mov_timecode_track_is_kept(tmp_path, weights, env):
    """A MOV with a timecode (tmcd) track: .mov and .mp4 outputs get a tmcd track with the
    same start timecode, Matroska keeps it as the video's tag; nothing is refused."""
    src = make_video(
        tmp_path / "tc.mov",
        frames=4,
        size=(16, 12),
        fmt="mov",
        video_tags={"timecode": "01:00:00:00"},
    )
    with av.open(str(src)) as c:
        assert [s.type for s in c.streams] == ["video", "data"]
    for ext in (".mov", ".mp4", ".mkv"):
        out = tmp_path / f"out{ext}"
        r = upscale(weights, env, src, out)
        assert "dropped" not in r.stderr, r.stderr
        with av.open(str(out)) as c:
            tags = [{k.lower(): v for k, v in s.metadata.items()} for s in c.streams]
            kinds = [s.type for s in c.streams]
        assert kinds == (["video"] if ext == ".mkv" else ["video", "data"])
        assert all(t.get("timecode") == "01:00:00:00" for t in tags), tags
    assert len(shown_times(tmp_path / "out.mov")) == 4


def test_exif_rotated_jpeg_is_written_as_shown(tmp_path, weights, env):
    """An EXIF-rotated JPEG comes out turned as a viewer shows it (PNG and video outputs),
    with no rotation tag left to apply twice: the same output as the turned picture gives."""
    from media import make_image, with_exif_orientation

    from adcvsr_cli.media import read_image, write_image

    plain = make_image(tmp_path / "plain.jpg", 16, 8)
    src = with_exif_orientation(plain, tmp_path / "phone.jpg", 6)
    with av.open(str(src)) as c:
        assert next(c.decode(video=0)).rotation == -90  # FFmpeg reads the orientation
    shown, _ = read_image(plain)
    write_image(tmp_path / "turned.png", np.ascontiguousarray(np.rot90(shown, -1)))  # 90° cw
    upscale(weights, env, tmp_path / "turned.png", tmp_path / "want.png")
    for name in ("out.png", "out.mkv"):
        upscale(weights, env, src, tmp_path / name)
        with av.open(str(tmp_path / name)) as c:
            frame = next(c.decode(video=0))
            assert not frame.rotation
            assert (frame.width, frame.height) == (32, 64)  # 16x8 shown as 8x16, x4
    (got,) = rgb_frames(tmp_path / "out.png")
    (want,) = rgb_frames(tmp_path / "want.png")
    assert np.abs(got.astype(int) - want).max() <= 1


def _icc_profile(pad: int = 0) -> bytes:
    """A real ICC profile (Little CMS's sRGB, described "sRGB built-in"), padded to make a
    large one (a JPEG then needs several APP2 segments for it)."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + bytes(pad)


def _image_icc(path: Path) -> bytes | None:
    """The ICC profile Pillow reads from an image (it also checks PNG chunk CRCs)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.info.get("icc_profile")


@pytest.mark.parametrize(("src_ext", "pad"), [("png", 0), ("jpg", 70_000), ("webp", 0)])
def test_an_image_keeps_its_icc_profile(tmp_path, weights, env, src_ext, pad):
    """A PNG, JPEG or WebP with an ICC colour profile: PNG and JPEG outputs hold the same
    profile bytes (read back by Pillow); a video output names the profile it cannot keep."""
    from PIL import Image

    profile = _icc_profile(pad)
    src = tmp_path / f"in.{src_ext}"
    pixels = np.asarray(Image.open(make_image(tmp_path / "plain.png", 8, 6)).convert("RGB"))
    Image.fromarray(pixels).save(src, icc_profile=profile)
    for name in ("out.png", "out.jpg"):
        r = upscale(weights, env, src, tmp_path / name)
        assert "ICC" not in r.stderr, r.stderr
        assert _image_icc(tmp_path / name) == profile
        assert rgb_frames(tmp_path / name)[0].shape == (24, 32, 3)
    r = upscale(weights, env, src, tmp_path / "out.mkv")
    assert f"the ICC colour profile 'sRGB built-in' of {src} is not kept" in r.stderr, r.stderr
    assert rgb_frames(tmp_path / "out.mkv")[0].shape == (24, 32, 3)


def _with_iccp(png: bytes, body: bytes, before: bytes = b"") -> bytes:
    """``png`` with an iCCP chunk of ``body`` (and the raw chunks ``before`` it) after IHDR."""
    import struct
    import zlib

    chunk = struct.pack(">I", len(body)) + b"iCCP" + body
    return png[:33] + before + chunk + struct.pack(">I", zlib.crc32(b"iCCP" + body)) + png[33:]


def test_icc_profile_parsers_on_damaged_files(tmp_path):
    """A profile that is damaged (not zlib, zlib cut short, a wrong chunk checksum, JPEG
    pieces mis-numbered), not RGB, or not searched to (a pipe's kept bytes end before the
    picture data) is never written: it carries the reason for a warning; a PNG output gets a
    valid iCCP chunk."""
    import struct
    import zlib

    from adcvsr_cli.media.icc import IccProfile, embed_png, kept_icc, read_icc

    png = make_image(tmp_path / "p.png", 2, 2).read_bytes()
    profile = _icc_profile()
    packed = zlib.compress(profile)
    for body, why in [
        (b"p\x00\x00not zlib", "compressed data is invalid"),
        (b"p\x00\x00" + packed[: len(packed) // 2], "cut short"),
    ]:
        got = read_icc(_with_iccp(png, body))
        assert got is not None and not got.data and why in got.problem, got
    wrong_crc = bytearray(_with_iccp(png, b"p\x00\x00" + packed))
    wrong_crc[33 + 8 + 3 + len(packed) + 2] ^= 1
    assert "checksum" in read_icc(bytes(wrong_crc)).problem
    gray = profile[:16] + b"GRAY" + profile[20:]
    got = read_icc(_with_iccp(png, b"g\x00\x00" + zlib.compress(gray)))
    assert not got.data and "for GRAY colour, not RGB" in got.problem, got
    marker = b"ICC_PROFILE\x00"
    seg = marker + bytes([2, 2]) + profile  # piece 2 of 2, piece 1 missing
    jpeg = b"\xff\xd8\xff\xe2" + struct.pack(">H", len(seg) + 2) + seg + b"\xff\xda"
    assert "mis-numbered" in read_icc(jpeg).problem
    # a pipe keeps 4 MiB: text chunks fill them, the profile comes after
    text = b"x" * (5 << 20)
    before = (
        struct.pack(">I", len(text))
        + b"tEXt"
        + text
        + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    )
    head = _with_iccp(png, b"p\x00\x00" + packed, before)[: 4 << 20]
    assert read_icc(head, whole=True) is None  # a file that short is truncated: no profile
    assert "not looked for" in read_icc(head, whole=False).problem
    out = embed_png(png, IccProfile(profile, "sRGB built-in"))
    assert read_icc(out) == IccProfile(profile, "sRGB built-in")
    assert out.index(b"iCCP") < out.index(b"IDAT")
    # a profile too big for JPEG's 255 APP2 pieces: no profile, a warning (PNG keeps it)
    big = IccProfile(profile + bytes(17 << 20), "big", source="in.png")
    said: list[str] = []
    assert kept_icc(big, ".jpg", said.append) is None
    assert len(said) == 1 and "in.png: its ICC colour profile 'big'" in said[0], said
    assert "too big for a JPEG" in said[0] and "write a .png image" in said[0]
    assert kept_icc(big, ".png", said.append) is big and len(said) == 1


def test_a_profile_that_is_not_rgb_is_named_not_written(tmp_path, weights, env):
    """A PNG carrying a GRAY profile: the RGB output is written without it, and a warning
    names the input and why."""
    import zlib

    from adcvsr_cli.media.icc import read_icc

    profile = _icc_profile()
    gray = profile[:16] + b"GRAY" + profile[20:]
    png = make_image(tmp_path / "p.png", 8, 6).read_bytes()
    src = tmp_path / "gray.png"
    src.write_bytes(_with_iccp(png, b"g\x00\x00" + zlib.compress(gray)))
    r = upscale(weights, env, src, tmp_path / "out.png")
    want = f"warning: {src}: its ICC colour profile 'sRGB built-in' is for GRAY colour, not RGB"
    assert want + "; the output is written without it" in r.stderr.splitlines(), r.stderr
    assert read_icc((tmp_path / "out.png").read_bytes()) is None
    assert rgb_frames(tmp_path / "out.png")[0].shape == (24, 32, 3)


def test_encoder_qp0_is_lossless(tmp_path, weights, env):
    """`-e qp=0` with libx264 is lossless: the tool adds no default quality beside it (x264
    would then use CRF), so the frames decode equal to an FFV1 run of the same command."""
    src = make_video(tmp_path / "a.mp4", frames=3, size=(16, 12))
    common = ("--pix-fmt", "yuv444p")
    upscale(weights, env, src, tmp_path / "qp0.mkv", "--codec", "libx264", "-e", "qp=0", *common)
    upscale(weights, env, src, tmp_path / "ffv1.mkv", "--codec", "ffv1", *common)

    def planes(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.pix_fmt == "yuv444p"
            return [f.to_ndarray() for f in c.decode(c.streams.video[0])]

    got, want = planes(tmp_path / "qp0.mkv"), planes(tmp_path / "ffv1.mkv")
    assert len(got) == len(want) == 3
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)

"""Segmented runs of the real pipeline (tiny networks, tiny frames): equal to one piece, resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import make_srt, make_video, pattern
from tiny import tiny_dims

from adcvsr_cli.media import EncodeOptions
from adcvsr_cli.model import AdcVSR, init_random_
from adcvsr_cli.pipeline import UpscaleOptions, Upscaler, upscale
from adcvsr_cli.segmented import upscale_long
from adcvsr_cli.workdir import ResumeRefused, work_dir

LOSSLESS = EncodeOptions(codec="libx264", crf=0, preset="ultrafast")
OPTS = UpscaleOptions(chunk=6, chunk_overlap=2)


def tiny(temporal: bool = False) -> Upscaler:
    m = AdcVSR(tiny_dims(temporal=temporal)).eval()
    init_random_(m, seed=0)
    return Upscaler(m, device=torch.device("cpu"), dtype=torch.float32, source="tiny")


def make_shots(
    path: Path, lengths: list[int], *, bframes: bool = True, audio: bool = False
) -> Path:
    """Shots of unrelated content (hard cuts between them), keyframes every 5 frames."""
    w, h = 32, 24
    with av.open(str(path), "w") as out:
        opts = {"preset": "veryfast" if bframes else "ultrafast", "g": "5", "sc_threshold": "0"}
        vs = out.add_stream("libx264", rate=25, options=opts)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        i = 0
        for shot, n in enumerate(lengths):
            for _ in range(n):
                img = pattern(i, w, h, seed=shot)
                if shot % 2:
                    img = np.ascontiguousarray(255 - img[::-1, ::-1])
                f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
                f.pts = i
                for p in vs.encode(f):
                    out.mux(p)
                i += 1
        for p in vs.encode(None):
            out.mux(p)
    return path


def decoded(path: Path) -> list[tuple[float, bytes]]:
    """(presentation time, YUV planes) of every frame, in order."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            planes = b"".join(bytes(p) for p in f.planes)
            out.append((float(f.pts * f.time_base), planes))
    return out


def side_packets(path: Path, kind: str) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as c:
        s = [st for st in c.streams if st.type == kind][0]
        return [(p.pts, bytes(p)) for p in c.demux(s) if p.size]


def source_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


def assert_same(seg: Path, whole: Path, src: Path) -> None:
    a, b = decoded(seg), decoded(whole)
    assert len(a) == len(b) == len(source_times(src))
    assert [t for t, _ in a] == [t for t, _ in b]  # timestamp for timestamp
    for t_out, t_src in zip([t for t, _ in a], source_times(src), strict=True):
        assert abs(t_out - t_src) <= 0.001  # the Matroska clock is milliseconds
    bad = [i for i, ((_, x), (_, y)) in enumerate(zip(a, b, strict=True)) if x != y]
    assert bad == [], f"frames differ: {bad[:10]}"


@pytest.mark.parametrize("temporal", [False, True], ids=["image", "temporal"])
def test_segmented_equals_unsegmented_with_cut_and_uncut_boundaries(tmp_path, temporal):
    src = make_shots(tmp_path / "in.mp4", [24, 18])  # a cut at 24 (on the image batch grid)
    events: list[dict] = []
    rep = upscale_long(
        src,
        tmp_path / "seg.mkv",
        [tiny(temporal)],
        OPTS,
        LOSSLESS,
        segment=10,
        on_event=events.append,
    )
    upscale(src, tmp_path / "whole.mkv", tiny(temporal), OPTS, LOSSLESS)
    assert_same(tmp_path / "seg.mkv", tmp_path / "whole.mkv", src)
    segs = [e for e in events if e["type"] == "segment"]
    assert rep.media["segments"] == {"total": len(segs), "run": len(segs), "reused": 0}
    assert len(segs) >= 3
    starts = [e["start"] for e in segs]
    assert 24 in starts and rep.scene_cuts == [24]  # one boundary on the cut ...
    assert any(s not in (0, 24) for s in starts)  # ... and at least one inside a shot
    assert not work_dir(tmp_path / "seg.mkv").exists()


def test_vfr_audio_subtitles_and_ffv1(tmp_path):
    pts = [0, 40, 80, 200, 240, 250, 260, 400, 440, 480, 600, 640, 700, 720, 760, 900, 940]
    pts += [1000 + 40 * i for i in range(20)]
    src = make_video(
        tmp_path / "in.mkv",
        size=(32, 24),
        pts=pts,
        time_base=Fraction(1, 1000),
        audio="aac",
        subtitles=make_srt(tmp_path / "s.srt"),
        options={"g": "4"},
        fmt="matroska",
    )
    enc = EncodeOptions(codec="ffv1")
    upscale_long(src, tmp_path / "seg.mkv", [tiny(True)], OPTS, enc, segment=8)
    upscale(src, tmp_path / "whole.mkv", tiny(True), OPTS, enc)
    assert_same(tmp_path / "seg.mkv", tmp_path / "whole.mkv", src)
    for kind in ("audio", "subtitle"):
        pa, pb = (
            side_packets(tmp_path / "seg.mkv", kind),
            side_packets(tmp_path / "whole.mkv", kind),
        )
        assert pa == pb and pa, kind


def test_an_odd_sized_10_bit_input_segmented_equals_the_full_run(tmp_path):
    """Segments run the same stages as the full run: the even rule for an odd derived size
    (33x25 x3 -> 100x76) and the depth (10-bit in, 10-bit out) are the full run's."""
    src = make_video(
        tmp_path / "in.mkv", size=(33, 25), frames=20, codec="ffv1", pix_fmt="yuv420p10le"
    )
    opts = UpscaleOptions(chunk=6, chunk_overlap=2, scale=3)
    enc = EncodeOptions(codec="ffv1")
    rep = upscale_long(src, tmp_path / "seg.mkv", [tiny(True)], opts, enc, segment=8)
    assert rep.media["segments"]["run"] >= 2
    upscale(src, tmp_path / "whole.mkv", tiny(True), opts, enc)
    assert_same(tmp_path / "seg.mkv", tmp_path / "whole.mkv", src)
    with av.open(str(tmp_path / "seg.mkv")) as c:
        f = next(c.decode(video=0))
        assert (f.width, f.height) == (100, 76) and f.format.name.endswith("10le")


def test_changed_input_or_options_refused_and_restart(tmp_path):
    src = make_shots(tmp_path / "in.mp4", [30], bframes=False)
    dst = tmp_path / "out.mkv"
    folder = work_dir(dst)

    def crash_after_first(e):
        if e["type"] == "segment":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale_long(src, dst, [tiny()], OPTS, LOSSLESS, segment=10, on_event=crash_after_first)
    assert folder.is_dir() and not dst.exists()
    other = UpscaleOptions(chunk=6, chunk_overlap=2, color_fix="none")
    with pytest.raises(ResumeRefused, match=r"--color-fix was 'adain', now 'none'.*--restart"):
        upscale_long(src, dst, [tiny()], other, LOSSLESS, segment=10)
    os.utime(src, ns=(1, 1))
    with pytest.raises(ResumeRefused, match="the input's modification time changed"):
        upscale_long(src, dst, [tiny()], OPTS, LOSSLESS, segment=10)
    events: list[dict] = []
    rep = upscale_long(
        src, dst, [tiny()], other, LOSSLESS, segment=10, restart=True, on_event=events.append
    )
    assert rep.media["segments"]["reused"] == 0 and dst.exists() and not folder.exists()


def test_resume_after_sigkill_runs_only_the_missing_segments(tmp_path):
    src = make_shots(tmp_path / "in.mp4", [26, 20])
    dst = tmp_path / "out.mkv"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_segmented import LOSSLESS, OPTS, tiny
        from adcvsr_cli.segmented import upscale_long
        seen = []
        def on_event(e):
            seen.append(e["type"])
            # in the middle of the third segment: two are complete, one is half done
            if seen.count("segment") == 2 and e["type"] == "progress":
                os.kill(os.getpid(), signal.SIGKILL)
        upscale_long({str(src)!r}, {str(dst)!r}, [tiny(True)], OPTS, LOSSLESS, segment=8,
                     on_event=on_event)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    folder = work_dir(dst)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["done"]) == 2 and not dst.exists()
    total = len(manifest["plan"]["segments"])
    events: list[dict] = []
    rep = upscale_long(src, dst, [tiny(True)], OPTS, LOSSLESS, segment=8, on_event=events.append)
    ran = [e["index"] for e in events if e["type"] == "segment"]
    assert len(ran) == total - 2 and rep.media["segments"]["reused"] == 2
    assert sorted(ran) == sorted(set(range(total)) - {int(k) for k in manifest["done"]})
    upscale(src, tmp_path / "whole.mkv", tiny(True), OPTS, LOSSLESS)
    assert_same(dst, tmp_path / "whole.mkv", src)
    assert not folder.exists()


def test_two_cpu_workers_equal_one_and_a_dead_worker_has_its_segment_redone(tmp_path):
    src = make_shots(tmp_path / "in.mp4", [20, 16])
    events: list[dict] = []
    dying = tiny(True)
    calls = {"n": 0}
    clip = dying.upscale_clip

    def fail_on_second_chunk(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # in the middle of its first segment
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return clip(*args, **kw)

    dying.upscale_clip = fail_on_second_chunk
    rep = upscale_long(
        src,
        tmp_path / "two.mkv",
        [tiny(True), dying],
        OPTS,
        LOSSLESS,
        segment=8,
        on_event=events.append,
    )
    upscale(src, tmp_path / "one.mkv", tiny(True), OPTS, LOSSLESS)
    assert_same(tmp_path / "two.mkv", tmp_path / "one.mkv", src)
    segs = [e for e in events if e["type"] == "segment"]
    assert sorted(e["index"] for e in segs) == list(range(rep.media["segments"]["total"]))
    assert {e["worker"] for e in segs} == {"cpu worker 0"}  # worker 1 died, 0 redid its work
    lost = [e["message"] for e in events if e["type"] == "warning" and "retired" in e["message"]]
    assert len(lost) == 1 and "cpu worker 1 failed (RuntimeError: CUDA error" in lost[0]


def test_two_healthy_cpu_workers_share_the_segments(tmp_path):
    src = make_shots(tmp_path / "in.mp4", [40], bframes=False)
    events: list[dict] = []
    slow = [tiny(), tiny()]
    upscale_long(src, tmp_path / "two.mkv", slow, OPTS, LOSSLESS, segment=8, on_event=events.append)
    upscale(src, tmp_path / "one.mkv", tiny(), OPTS, LOSSLESS)
    assert_same(tmp_path / "two.mkv", tmp_path / "one.mkv", src)
    workers = [e["worker"] for e in events if e["type"] == "segment"]
    assert len(workers) == 5 and set(workers) == {"cpu worker 0", "cpu worker 1"}
    done = [e["frames_done"] for e in events if e["type"] == "progress"]
    assert done == sorted(done) and done[-1] == 40  # one aggregated progress stream


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_b_frame_encoder_joins_with_the_source_timestamps(tmp_path, ext):
    src = make_shots(tmp_path / "in.mp4", [30], bframes=False)
    enc = EncodeOptions(preset="veryfast")  # the default crf, with B-frames: lossy, reordered
    upscale_long(src, tmp_path / f"seg{ext}", [tiny()], OPTS, enc, segment=8)
    upscale(src, tmp_path / f"whole{ext}", tiny(), OPTS, enc)
    a, b = decoded(tmp_path / f"seg{ext}"), decoded(tmp_path / f"whole{ext}")
    assert [t for t, _ in a] == [t for t, _ in b]
    assert [round(t, 3) for t, _ in a] == [round(t, 3) for t in source_times(src)]
    with av.open(str(tmp_path / f"seg{ext}")) as c:
        assert c.streams.video[0].codec_context.has_b_frames

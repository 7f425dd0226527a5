"""A long video in segments: plan (or resume), run the missing segments on the workers, join.

:func:`upscale_long` is :func:`~adcvsr_cli.pipeline.upscale` for videos longer than a segment
written to a file: it scans the input once, plans segments (:mod:`adcvsr_cli.segments`), keeps
the plan and the finished segments in a work folder beside the output (:mod:`adcvsr_cli.workdir`)
and runs the rest on a :class:`~adcvsr_cli.workers.DevicePool`. A rerun of the same command after
a crash continues with the missing segments; ``restart`` discards the work folder first. The
output appears only after the join has been verified; then the work folder is removed. Anything
else (short videos, images, pipes, inputs that cannot be cut) runs as one piece.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .engine.options import UpscaleOptions
from .engine.upscaler import ChunkStats, OnEvent, Upscaler
from .engine.yuv import layout_for
from .errors import UsageError, VideoError
from .media import (
    EncodeOptions,
    OutputExists,
    is_image_path,
    is_sequence_pattern,
    is_stream_input,
    probe,
)
from .media.encode import YuvTarget
from .media.outputs import _EXT_FORMAT
from .media.parts import Scan, decode_range, encode_segment, join, scan
from .pipeline import UpscaleReport
from .pipeline import upscale as upscale_one
from .segments import DEFAULT_SEGMENT, Rules, Segment, plan_segments
from .workdir import (
    Manifest,
    ResumeRefused,
    WorkLock,
    differences,
    file_sha256,
    input_identity,
    remove_stale_temps,
    remove_work_dir,
    work_dir,
)
from .workers import DevicePool, Post

# Encoder settings that change the segments' bytes (audio and stream choices only touch the join).
_PIXEL_ENCODE_FIELDS = (
    "codec",
    "crf",
    "preset",
    "pix_fmt",
    "bitrate",
    "encoder_options",
    "deinterlace",
)


def _noop(_: dict[str, Any]) -> None:
    pass


def segmentable_paths(src: Any, dst: Any) -> bool:
    """Whether ``src -> dst`` can run in segments: a video file into a video container file."""
    if not isinstance(src, (str, os.PathLike)) or not isinstance(dst, (str, os.PathLike)):
        return False
    s, d = os.fspath(src), os.fspath(dst)
    if "-" in (s, d) or is_image_path(s) or is_image_path(d) or is_sequence_pattern(d):
        return False
    if is_stream_input(s):  # a pipe or /dev/fd/N is read once, by one plain run
        return False
    return Path(d).suffix.lower() in _EXT_FORMAT and not (
        os.path.exists(d) and not os.path.isfile(d)
    )


def rules_for(upscaler: Upscaler, options: UpscaleOptions, height: int, width: int) -> Rules:
    """What may cross a segment boundary with this network and these options (the batch of an
    image model is the one its plan picks for frames of this size)."""
    plan = upscaler.initial_plan(height, width, options)
    return Rules(
        temporal=upscaler.temporal,
        chunk=options.chunk,
        overlap=options.chunk_overlap,
        batch=plan.batch,
        temporal_color=options.color_fix == "adain-temporal",
    )


def pixel_options(
    upscaler: Upscaler, options: UpscaleOptions, encode: EncodeOptions, segment: int
) -> dict[str, Any]:
    """Everything that changes a segment's pixels or bytes, as the manifest keeps it."""
    enc = {f"encode.{k}": getattr(encode, k) for k in _PIXEL_ENCODE_FIELDS}
    ups = {f"upscale.{k}": v for k, v in asdict(options).items()}
    return {
        "weights": upscaler.source,
        "precision": upscaler.dtype_name(),
        "device_type": upscaler.device.type,
        "segment": segment,
        **ups,
        **enc,
    }


@dataclass
class _Job:
    """One segmented file: what every segment task needs."""

    src: str
    dst: str
    folder: Path
    scan: Scan
    fmt: str
    size: tuple[int, int]
    options: UpscaleOptions
    encode: EncodeOptions
    manifest: Manifest

    @property
    def segments(self) -> list[Segment]:
        return [Segment.from_dict(x) for x in self.manifest.plan["segments"]]

    def part(self, seg: Segment) -> Path:
        return self.folder / f"seg-{seg.index:05d}{Path(self.dst).suffix.lower()}"


def _segment_frames(
    job: _Job, up: Upscaler, seg: Segment, post: Post, stop: threading.Event, yuv: YuvTarget | None
) -> Iterator[tuple[Any, int]]:
    """The segment's output frames with their source timestamps (context frames dropped), as
    the encoder's planes where ``yuv`` (its target) allows it, as a run in one piece does."""
    cuts = [c - seg.decode_start for c in job.scan.cuts if seg.decode_start <= c < seg.decode_end]
    stats = ChunkStats()

    def planes(w: int, h: int, deep: bool) -> Any:
        return None if yuv is None else layout_for(*yuv, w, h, deep_source=deep)

    process = up.processor(
        job.options, lambda w, h: job.size, post, stats, stop, cuts=cuts, planes=planes
    )
    frames = decode_range(job.src, job.scan, seg.decode_start, seg.decode_end, job.encode)
    for i, arr in enumerate(process(frames), start=seg.decode_start):
        if seg.start <= i < seg.end:
            post({"type": "segment-progress", "frames": 1})
            yield arr, job.scan.pts[i]


def run_segment(
    job: _Job, up: Upscaler, seg: Segment, post: Post, stop: threading.Event
) -> dict[str, Any]:
    """Upscale and encode one segment into its file; returns its manifest record."""
    path = job.part(seg)
    warn = lambda m: post({"type": "warning", "message": m})  # noqa: E731
    t0 = time.perf_counter()
    n = encode_segment(
        job.src,
        str(path),
        lambda yuv: _segment_frames(job, up, seg, post, stop, yuv),
        fmt=job.fmt,
        info=job.scan.info,
        size=job.size,
        opts=job.encode,
        warn=warn,
    )
    if n != len(seg):
        raise VideoError(f"{path}: {n} frames written for a segment of {len(seg)}")
    return {
        "part": path.name,
        "frames": n,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "device": str(up.device),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _scan_input(src: str, up: Upscaler, options: UpscaleOptions, encode: EncodeOptions) -> Scan:
    """Decode the input once: timestamps, keyframes and (as the network run would) scene cuts."""
    from .engine.scenes import SceneDetector

    if not options.scene_split:
        return scan(src, encode)
    det = SceneDetector()
    # From the decoded arrays, as the engine detects them (on the host).
    return scan(src, encode, lambda rgb: bool(det.feed(rgb)))


def _new_manifest(
    src: str,
    up: Upscaler,
    options: UpscaleOptions,
    encode: EncodeOptions,
    segment: int,
    identity: dict[str, Any],
    opts: dict[str, Any],
) -> tuple[Manifest, Scan] | None:
    """Scan and plan; None when the input runs better (or only) in one piece."""
    sc = _scan_input(src, up, options, encode)
    if sc.unsegmentable is not None:
        return None
    rules = rules_for(up, options, sc.info.height, sc.info.width)
    segs = plan_segments(sc.frames, sc.cuts, segment, rules)
    if len(segs) < 2:
        return None
    plan = {
        "frames": sc.frames,
        "pts": sc.pts,
        "keyframes": sc.keyframes,
        "cuts": sc.cuts,
        "segments": [s.to_dict() for s in segs],
    }
    return Manifest(input=identity, options=opts, plan=plan), sc


def _scan_from(manifest: Manifest, src: str) -> Scan:
    info = probe(src)
    p = manifest.plan
    return Scan(info=info, pts=p["pts"], keyframes=p["keyframes"], cuts=p["cuts"])


def _valid_parts(job: _Job, m: Manifest, segs: list[Segment]) -> None:
    """Forget finished segments whose file is missing or not what was recorded."""
    for seg in segs:
        rec = m.done.get(seg.index)
        if rec is None:
            continue
        path = job.part(seg)
        ok = path.is_file() and path.stat().st_size == rec.get("bytes")
        if not ok or file_sha256(path) != rec.get("sha256"):
            del m.done[seg.index]


def restart_hint(dst: str) -> str:
    return "rerun the same command with --restart to discard it and start over"


def _refuse(dst: str, folder: Path, changes: list[str]) -> ResumeRefused:
    return ResumeRefused(
        f"{dst}: the unfinished run in {folder} was made with another input or other options "
        f"({'; '.join(changes)}); {restart_hint(dst)}",
        changes,
    )


def upscale_long(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    upscalers: Sequence[Upscaler],
    options: UpscaleOptions | None = None,
    encode: EncodeOptions | None = None,
    *,
    segment: int = DEFAULT_SEGMENT,
    restart: bool = False,
    on_event: OnEvent | None = None,
    cancel: threading.Event | None = None,
    pool: Any = None,
) -> UpscaleReport:
    """Upscale ``src`` into ``dst`` in segments when it is longer than ``segment`` frames.

    ``pool``: where the segments run (a :class:`~adcvsr_cli.cluster.RayPool`); by default a
    :class:`~adcvsr_cli.workers.DevicePool` of ``upscalers``, which also plan and scan.

    ``upscalers``: one per worker (device). Resumes an unfinished run of the same command;
    ``restart`` discards it. Raises :class:`~adcvsr_cli.workdir.ResumeRefused` when the work
    folder belongs to another input or other options, and the errors of ``upscale``.
    """
    options = options or UpscaleOptions()
    encode = encode or EncodeOptions()
    emit = on_event or _noop
    if not upscalers:
        raise ValueError("upscale_long needs at least one upscaler")
    long = open_long(
        src, dst, upscalers[0], options, encode, segment=segment, restart=restart, emit=emit
    )
    if long is None:
        return upscale_one(src, dst, upscalers[0], options, encode, on_event=emit, cancel=cancel)
    try:
        (pool or device_pool(upscalers)).run(
            long.todo,
            lambda up, seg, post, stop: run_segment(long.job, up, seg, post, stop),
            long.on_done,
            long.on_event,
            cancel,
        )
        return long.finish(",".join(str(u.device) for u in upscalers))
    finally:
        long.abandon()


def device_pool(upscalers: Sequence[Upscaler]) -> DevicePool[Any, Any]:
    """One worker per network, named by its device (``cpu worker 0``, ``cuda:1 worker 1``)."""
    return DevicePool(list(upscalers), [f"{u.device} worker {i}" for i, u in enumerate(upscalers)])


def open_long(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    up: Upscaler,
    options: UpscaleOptions,
    encode: EncodeOptions,
    *,
    segment: int,
    restart: bool,
    emit: OnEvent,
) -> Long | None:
    """``src -> dst`` planned (or resumed) in segments and locked; None when it runs in one
    piece (short, not a file to a file, a part or an A/B video). The caller runs ``todo``,
    hands each result to :meth:`Long.on_done`, then calls :meth:`Long.finish`, and
    :meth:`Long.abandon` in any case."""
    options.validate()
    if segment < 1:
        raise UsageError(f"--segment must be at least 1 frame, got {segment}")
    # A part (--start ...) or an A/B video (--compare) runs in one piece: segments join whole
    # runs of network frames only.
    if not segmentable_paths(src, dst) or options.range is not None or options.compare:
        return None
    s, d = os.path.abspath(os.fspath(src)), os.path.abspath(os.fspath(dst))
    folder = work_dir(d)
    if restart:
        remove_work_dir(folder)
    if os.path.lexists(d) and not encode.overwrite:
        raise OutputExists(f"{os.fspath(dst)}: output exists (use --overwrite / -y to replace it)")
    if not folder.exists():
        est = probe(s).frames
        if est is not None and est <= segment + segment // 2:
            return None
    lock = WorkLock(folder)
    lock.acquire(os.fspath(dst))
    try:
        job = _prepare(s, d, folder, up, options, encode, segment, emit)
    except BaseException:
        lock.release()
        raise
    if job is None:
        lock.release()
        remove_work_dir(folder)
        return None
    return Long(job, lock, emit)


def _prepare(
    src: str,
    dst: str,
    folder: Path,
    up: Upscaler,
    options: UpscaleOptions,
    encode: EncodeOptions,
    segment: int,
    emit: OnEvent,
) -> _Job | None:
    """The job for ``src -> dst``: resumed from the work folder, or scanned and planned anew."""
    remove_stale_temps(folder)
    identity = input_identity(src)
    opts = pixel_options(up, options, encode, segment)
    m = Manifest.load(folder)
    if m is not None:
        changes = differences(m, identity, opts)
        if changes:
            raise _refuse(dst, folder, changes)
        sc = _scan_from(m, src)
    else:
        made = _new_manifest(src, up, options, encode, segment, identity, opts)
        if made is None:
            return None
        m, sc = made
        m.save(folder)
    fmt = encode.format or _EXT_FORMAT[Path(dst).suffix.lower()]
    size = options.size_for(sc.info)  # a video: even sides, as the full run
    job = _Job(src, dst, folder, sc, fmt, size, options, encode, m)
    _valid_parts(job, m, job.segments)
    return job


def _start_events(job: _Job, emit: OnEvent, todo: list[Segment]) -> None:
    info, segs, done = job.scan.info, job.segments, job.manifest.done
    emit(
        {
            "type": "start",
            "input": job.src,
            "output": job.dst,
            "frames": job.scan.frames,
            "width": info.width,
            "height": info.height,
            "out_width": job.size[0],
            "out_height": job.size[1],
        }
    )
    emit({"type": "segments", "total": len(segs), "done": len(done), "todo": len(todo)})
    if done:
        emit(
            {
                "type": "notice",
                "message": f"{job.dst}: resuming: {len(done)} of {len(segs)} segments were "
                f"finished before; {len(todo)} to go",
            }
        )


class Long:
    """A segmented file under way: the segments still to run, their results as they come in
    (saved in the manifest at once), and the join once every segment is there."""

    def __init__(self, job: _Job, lock: WorkLock, emit: OnEvent) -> None:
        self.job, self.lock, self.emit = job, lock, emit
        self.t0 = time.perf_counter()
        m, segs = job.manifest, job.segments
        self.todo = [s for s in segs if s.index not in m.done]
        self.reused = len(segs) - len(self.todo)
        self.frames_done = sum(len(s) for s in segs if s.index in m.done)
        _start_events(job, emit, self.todo)

    def on_event(self, e: dict[str, Any]) -> None:
        """A worker's event: segment progress becomes the file's progress."""
        if e.get("type") != "segment-progress":
            self.emit(e)
            return
        self.frames_done += int(e["frames"])
        self.emit(
            {
                "type": "progress",
                "frames_done": self.frames_done,
                "frames_total": self.job.scan.frames,
            }
        )

    def on_done(self, seg: Segment, rec: dict[str, Any], worker: str) -> None:
        rec = {**rec, "worker": worker}
        self.job.manifest.done[seg.index] = rec
        self.job.manifest.save(self.job.folder)
        self.lock.touch()
        self.emit(
            {"type": "segment", "index": seg.index, "start": seg.start, "end": seg.end, **rec}
        )

    @property
    def complete(self) -> bool:
        return all(s.index in self.job.manifest.done for s in self.job.segments)

    def finish(self, devices: str) -> UpscaleReport:
        """Join every segment into the output, remove the work folder; the file's report."""
        job = self.job
        media = _join(job, self.emit)
        segs = job.segments
        media["segments"] = {
            "total": len(segs),
            "run": len(segs) - self.reused,
            "reused": self.reused,
        }
        self.lock.release()
        remove_work_dir(job.folder)
        report = _report(job, devices, media, time.perf_counter() - self.t0)
        self.emit({"type": "done", "report": report.to_dict()})
        return report

    def abandon(self) -> None:
        """Let go of the work folder (kept for a rerun to resume; nothing if finished)."""
        self.lock.release()


def _join(job: _Job, emit: OnEvent) -> dict[str, Any]:
    """Join every segment into the output; the media fields of the report."""
    t0 = time.perf_counter()
    media = join(
        job.src,
        [str(job.part(s)) for s in job.segments],
        job.dst,
        fmt=job.fmt,
        info=job.scan.info,
        size=job.size,
        frames=job.scan.frames,
        opts=job.encode,
        warn=lambda msg: emit({"type": "warning", "message": msg}),
    )
    media["seconds_join"] = round(time.perf_counter() - t0, 3)
    return media


def _report(job: _Job, devices: str, media: dict[str, Any], seconds: float) -> UpscaleReport:
    opts = job.manifest.options
    return UpscaleReport(
        input=job.src,
        output=job.dst,
        frames_in=job.scan.frames,
        frames_out=job.scan.frames,
        seconds=seconds,
        seconds_network=sum(float(r.get("seconds", 0.0)) for r in job.manifest.done.values()),
        plan=f"{len(job.segments)} segments",
        device=devices,
        precision=str(opts["precision"]),
        weights=str(opts["weights"]),
        out_width=job.size[0],
        out_height=job.size[1],
        chunks=0,
        scene_cuts=list(job.scan.cuts),
        plan_changes=[],
        media=media,
    )

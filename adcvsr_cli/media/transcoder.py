"""One input into one output, as pieces a caller joins itself:

    with open_session(src, dst, out_size=..., options=..., events=...) as session:
        # (the target planned, the source opened, the size checked, the sink open: "start")
        run = session.start(cancel)        # decode and encode in worker threads
        for arr in stages(run.decoded()):  # the caller's work, in the caller's thread
            run.put(arr)                   # timestamps, alpha and cuts travel beside
        report = session.commit(run.end()) # close, verify, warn, publish

Decoding and encoding each run in a worker thread (:class:`~.run.Run`, over :mod:`.threads`),
joined to the caller's thread by bounded queues, so decode, processing and encode overlap. :func:`transcode` is that
loop with a frame processor in the middle; ``adcvsr upscale`` writes it out itself
(:func:`adcvsr_cli.pipeline.upscale`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import UsageError, VideoError
from .avlog import libav_quiet
from .common import INPUT_ERRORS, _display, _err_text
from .decode import _to_rgb
from .encode import ContainerSink, YuvTarget
from .hdr import hdr_metadata
from .images import ImageSink, SequenceSink
from .inputs import _check_input_path
from .outputs import Target, _wrap_write_error, plan_target
from .run import Run
from .sides import Side, _plan_sides, _stream_label
from .source import SIDE_SLACK, Source, open_source
from .threads import Events
from .types import (
    BrokenOutputPipe,
    EncodeOptions,
    Frame,
    FrameProcessor,
    MediaInfo,
    TranscodeReport,
)

# Output sizes (reliability.md §8 decision 6): above the first, most codec levels and players
# give up (a warning); above the second, refused unless EncodeOptions.force.
_WARN_SIDE = 8192
_MAX_SIDE = 16384


Sink = ContainerSink | ImageSink | SequenceSink


def check_output_size(
    name: str, out_w: int, out_h: int, force: bool, warn: Callable[[str], None]
) -> None:
    """Refuse (or warn about) an output size; the run and ``upscale --dry-run`` both call it."""
    if out_w <= 0 or out_h <= 0:
        raise UsageError(f"output size {out_w}x{out_h} is not positive")
    if max(out_w, out_h) > _MAX_SIDE and not force:
        raise VideoError(
            f"{name}: the output would be {out_w}x{out_h}, over {_MAX_SIDE} pixels on a "
            "side (beyond every codec level); use --force to try anyway"
        )
    if max(out_w, out_h) > _WARN_SIDE:
        warn(
            f"{name}: the output is {out_w}x{out_h}, over {_WARN_SIDE} pixels on a side: "
            "beyond the levels of most codecs; many players and hardware decoders refuse it"
        )


def _check_kind(target: Target, info: MediaInfo, name_in: str) -> None:
    name_out = target.name
    if target.kind == "image" and not info.is_image:
        stem = Path(name_out).stem
        raise UsageError(
            f"{name_out}: {name_in} is a video, and a video cannot be written to an image "
            f"file; write it to a video container such as {stem}.mkv or "
            f".mp4, or to numbered images with a pattern such as {stem}_%06d.png"
        )
    if target.bad_image_ext:
        raise UsageError(
            f"{name_out}: images are written as .png or .jpg, not {Path(name_out).suffix.lower()}"
        )


def _input_warnings(
    source: Source, target: Target, opts: EncodeOptions, warn: Callable[[str], None]
) -> None:
    info = source.info
    if info.interlaced and not opts.deinterlace:
        warn(f"{info.path}: interlaced input kept as fields (deinterlacing is off)")
    # (deinterlacing is announced once bwdif actually engages, on a flagged frame)
    if info.has_alpha and target.kind not in ("image", "sequence"):
        _, a0 = _to_rgb(source.first, False, True)
        if a0 is not None and a0.min() < 255:
            warn(f"{info.path}: the alpha channel is dropped (the output video has none)")


def _pq_or_hlg(info: MediaInfo) -> bool:
    """Whether the input is HDR (PQ or HLG transfer), the only case whose frame side data is
    read: PyAV 18 crashes on exit after reading some other kinds (an image's ICC profile)."""
    return info.color_trc in (16, 18)


def _container_sink(
    target: Target,
    source: Source,
    sides: list[Side],
    opts: EncodeOptions,
    size: tuple[int, int],
    warn: Callable[[str], None],
) -> ContainerSink:
    return ContainerSink(
        target=target.tmp or "",
        pipe=target.pipe,
        fmt=target.fmt,
        name=target.name,
        info=source.info,
        in_container=source.container,
        vstream=source.vstream,
        sides=sides,
        side_queue=source.side,
        opts=opts,
        out_w=size[0],
        out_h=size[1],
        warn=warn,
        cut=source.cut,
        hdr=hdr_metadata(source.first) if _pq_or_hlg(source.info) else None,
    )


def _open_container_sink(
    target: Target,
    source: Source,
    opts: EncodeOptions,
    size: tuple[int, int],
    warn: Callable[[str], None],
) -> tuple[ContainerSink, list[str]]:
    required, optional, dropped = _plan_sides(source.container, source.vstream, opts, warn)
    sink = _container_sink(target, source, required + optional, opts, size, warn)
    try:
        # A muxer that refuses an optional stream logs why; the warning below says it for us.
        with libav_quiet() if optional else contextlib.nullcontext():
            _opened(sink)
    except VideoError as e:
        # Some muxers refuse a data stream only when the header is written.
        if not optional or target.kind == "pipe" or isinstance(e, BrokenOutputPipe):
            raise
        for side in optional:
            dropped.append(side.label)
            warn(f"{side.label}: the {target.fmt} container cannot hold this stream; dropped")
        kept = [Side(s.stream, s.mode) for s in required]
        sink = _opened(_container_sink(target, source, kept, opts, size, warn))
    return sink, dropped + sink.dropped


def _opened(sink: ContainerSink) -> ContainerSink:
    """Open ``sink``; on failure close what it opened before raising."""
    try:
        sink.open()
    except BaseException:
        sink.abort()
        raise
    return sink


def open_sink(
    target: Target,
    source: Source,
    opts: EncodeOptions,
    size: tuple[int, int],
    warn: Callable[[str], None],
) -> tuple[Sink, list[str]]:
    """The sink for ``target`` and the labels of the input streams it does not keep."""
    if target.kind in ("file", "pipe"):
        return _open_container_sink(target, source, opts, size, warn)
    others = [_stream_label(s) for s in source.container.streams if s.index != source.vstream.index]
    out_w, out_h = size
    if target.kind == "image":
        assert target.tmp is not None
        return ImageSink(
            target=target.tmp,
            name=target.name,
            out_w=out_w,
            out_h=out_h,
            warn=warn,
            icc=source.info.icc,
        ), others
    assert target.tmpdir is not None and target.final is not None
    if others:
        warn(f"{target.name}: an image sequence holds video only; dropped {', '.join(others)}")
    sink = SequenceSink(
        pattern=target.final,
        tmpdir=target.tmpdir,
        name=target.name,
        out_w=out_w,
        out_h=out_h,
        warn=warn,
        icc=source.info.icc,
    )
    return sink, others


class Session:
    """One input opened into one output: the source, the sink, the report and the events.

    Made by :meth:`open`; ended by :meth:`commit` (after every frame was written and the sink
    finished) or :meth:`abort`. Frames go to ``sink.write(Frame(array, pts, alpha))`` with the
    pts and alpha of the source frame they came from.
    """

    def __init__(
        self,
        target: Target,
        source: Source,
        sink: Sink,
        opts: EncodeOptions,
        events: Events,
        report: TranscodeReport,
    ):
        self.target, self.source, self.sink = target, source, sink
        self.opts, self.events, self.report = opts, events, report
        self.run: Run | None = None
        info = source.info
        self.deep = info.bit_depth > 8
        self.want_alpha = info.has_alpha and target.kind in ("image", "sequence")
        if target.kind == "image" and Path(target.name).suffix.lower() != ".png":
            self.want_alpha = False

    @classmethod
    def open(
        cls,
        target: Target,
        source: Source,
        out_size: tuple[int, int] | Callable[[MediaInfo], tuple[int, int]],
        opts: EncodeOptions,
        events: Events,
    ) -> Session:
        info, warn = source.info, events.warn
        _check_kind(target, info, source.name)
        size = out_size(info) if callable(out_size) else out_size
        out_w, out_h = int(size[0]), int(size[1])
        check_output_size(source.name, out_w, out_h, opts.force, warn)
        _input_warnings(source, target, opts, warn)
        sink, dropped = open_sink(target, source, opts, (out_w, out_h), warn)
        report = TranscodeReport(input=source.name, output=target.name)
        report.codec, report.pix_fmt = sink.codec, sink.pix_fmt
        report.container = {"image": "image", "sequence": "image2"}.get(target.kind, target.fmt)
        if isinstance(sink, ContainerSink):
            report.streams_copied = [s.label for s in sink.sides] + sink.attached
        report.streams_dropped = dropped
        report.width, report.height = info.width, info.height
        report.out_width, report.out_height = out_w, out_h
        session = cls(target, source, sink, opts, events, report)
        events.emit(session._start_event())
        return session

    def _start_event(self) -> dict[str, Any]:
        info, report = self.source.info, self.report
        return {
            "type": "start",
            "input": report.input,
            "output": report.output,
            "frames": info.frames,
            "width": info.width,
            "height": info.height,
            "out_width": report.out_width,
            "out_height": report.out_height,
            "fps": float(info.avg_rate) if info.avg_rate else None,
            "duration": info.duration,
            "bit_depth": info.bit_depth,
            "dtype": "uint16" if self.deep else "uint8",
            "rotation": info.rotation,
            "interlaced": info.interlaced,
            "codec": report.codec,
            "pix_fmt": report.pix_fmt,
            "container": report.container,
            "streams_copied": list(report.streams_copied),
            "streams_dropped": list(report.streams_dropped),
        }

    def yuv_target(self) -> YuvTarget | None:
        """The Y'CbCr format the encoder takes frames in, when it takes planes (a container
        whose pixel format is not RGB): :meth:`Run.put` then also accepts frames as planes."""
        return self.sink.yuv_target() if isinstance(self.sink, ContainerSink) else None

    def start(
        self,
        cancel: threading.Event | None = None,
        on_frame: Callable[[np.ndarray], None] | None = None,
    ) -> Run:
        """Start decoding and encoding in their worker threads (``cancel``: Interrupted;
        ``on_frame``: see :class:`Run`)."""
        assert self.run is None, "a session runs once"
        self.run = Run(self, cancel, on_frame)
        return self.run

    def frames(self) -> Iterator[Frame]:
        """The source's frames, as the output wants them (depth, alpha)."""
        return self.source.frames(deep=self.deep, want_alpha=self.want_alpha, warn=self.events.warn)

    def cut_frames(self) -> Iterator[tuple[Frame, bool]]:
        """``(frame, written)``: with a cut (``--start`` and the like) the frames around the range
        are context, decoded and processed but not written; decoding stops after them, and
        demuxing goes on until the side streams pass the range end (late-stored audio)."""
        cut = self.source.cut
        for frame in self.frames():
            if cut is None:
                yield frame, True
                continue
            if cut.stop_pts is not None and frame.pts is not None and frame.pts >= cut.stop_pts:
                error = self.source.drain_sides(cut.t_to)
                if error is not None:
                    self.events.warn(
                        f"{self.source.name}: read error after the range ({error}); side "
                        "packets stored after it are not in the output"
                    )
                return
            yield frame, cut.keeps(frame.pts)

    def commit(self, frames_in: int, t_start: float | None = None) -> TranscodeReport:
        """Close and verify the output, say what the input was missing, then publish it; emits
        the done event (``t_start``: the run's start on ``time.monotonic``, for its seconds)."""
        sink, source, report, warn = self.sink, self.source, self.report, self.events.warn
        name_out, name_in = self.target.name, source.name
        try:
            sink.close()
        except (OSError, ValueError) as e:
            raise _wrap_write_error(e, name_out) from e
        self.target.close_pipe()
        report.frames_in, report.frames_out = frames_in, sink.frames
        report.bad_packets = source.bad_packets
        if sink.frames != frames_in:
            raise VideoError(f"{name_out}: {sink.frames} frames written for {frames_in} decoded")
        try:
            notes = sink.verify(frames_in, sink.first_pts, sink.last_pts)
        except VideoError:
            raise
        except INPUT_ERRORS as e:  # reading the written file back failed
            raise VideoError(f"{name_out}: verification failed: {_err_text(e)}") from e
        for n in notes:
            warn(f"{name_out}: {n}")
        self._input_notes(frames_in)
        if sink.pts_fixed:
            warn(
                f"{name_in}: {sink.pts_fixed} frame(s) had non-increasing timestamps; nudged by one tick"
            )
        report.bytes_written = self.target.publish(self.opts.overwrite, sink)
        self.events.flush()
        report.warnings = list(self.events.warnings)
        if t_start is not None:
            report.seconds_total = time.monotonic() - t_start
        self.events.emit({"type": "done", "report": report.to_dict()})
        return report

    def _input_notes(self, frames_in: int) -> None:
        dec, name_in, warn = self.source.decoder, self.source.name, self.events.warn
        if self.source.cut is not None:
            self.report.cut = self.source.cut.to_dict()
        if dec.bad_packets:
            warn(
                f"{name_in}: {dec.bad_packets} corrupt video packet(s) skipped "
                f"({dec.last_bad}); {frames_in} frames decoded"
            )
        if dec.read_error:
            warn(
                f"{name_in}: read error, input ends early after {frames_in} frames ({dec.read_error})"
            )
        early = None if self.source.cut is not None else self.source.end_message(frames_in)
        if early is not None:
            if self.opts.strict:
                raise VideoError(early + "; --strict stops here")
            warn(early)


@contextlib.contextmanager
def open_session(
    src: str | os.PathLike[str] | IO[bytes],
    dst: str | os.PathLike[str] | IO[bytes],
    *,
    out_size: tuple[int, int] | Callable[[MediaInfo], tuple[int, int]],
    options: EncodeOptions,
    events: Events,
    cut: Any = None,
) -> Iterator[Session]:
    """``src`` opened into ``dst`` (see :func:`transcode` for both): the :class:`Session`, for
    ``with``. On any failure the run's threads are stopped, no temporary file is left and an
    existing output is untouched."""
    name_in = _display(src)
    src_path = None
    if isinstance(src, (str, os.PathLike)) and os.fspath(src) != "-":
        src_path = os.path.abspath(os.fspath(src))
        _check_input_path(src_path)
    target = plan_target(dst, options.overwrite, options.format, src_path, name_in)
    target.prepare()
    source: Source | None = None
    session: Session | None = None
    try:
        target.open_pipe()
        source = open_source(src, deinterlace=options.deinterlace, strict=options.strict)
        if cut is not None:
            source.seek(cut.seek_pts, lead=SIDE_SLACK if source.decoder.side_streams else 0.0)
            source.cut = cut
            source.info.frames = cut.frames
        session = Session.open(target, source, out_size, options, events)
        yield session
    except BaseException:
        if session is not None and session.run is not None:
            session.run.abort()
        raise
    finally:
        target.cleanup()
        run = session.run if session is not None else None
        if source is not None and not (run is not None and run.decoder_alive()):
            # the input is only read: an error closing it loses nothing
            with contextlib.suppress(*INPUT_ERRORS):
                source.close()


def transcode(
    src: str | os.PathLike[str] | IO[bytes],
    dst: str | os.PathLike[str] | IO[bytes],
    process: FrameProcessor,
    *,
    out_size: tuple[int, int] | Callable[[MediaInfo], tuple[int, int]],
    options: EncodeOptions | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    cancel: threading.Event | None = None,
    cut: Any = None,
) -> TranscodeReport:
    """Decode ``src``, pass its frames through ``process`` and write them to ``dst``.

    ``src``: a path, ``"-"`` (standard input) or a readable binary file object.
    ``dst``: a path (the container follows the extension; ``.png``/``.jpg`` for an image
    input; a pattern such as ``out/%06d.png`` for a PNG sequence), ``"-"`` (standard output,
    Matroska unless ``options.format`` says otherwise) or a writable binary file object.
    ``out_size``: ``(width, height)`` of the output frames, or a function of the probed
    :class:`MediaInfo` returning it. ``cut``: a :class:`~adcvsr_cli.ranges.Cut` (a path input
    only): only that range is decoded (from the keyframe before its context) and written, its
    timestamps and side streams starting at zero.

    Raises :class:`VideoError` (bad input, unwritable output, verification failure),
    :class:`BrokenOutputPipe` (a ``BrokenPipeError``: the stdout reader went away),
    :class:`OutputExists` / :class:`UsageError` (exit code 2), :class:`Interrupted` when
    ``cancel`` is set, and lets ``KeyboardInterrupt`` and the processor's own exceptions
    through unchanged. In every failure case no temporary file is left and an existing output
    is untouched. (``adcvsr upscale`` joins the same pieces itself: :mod:`adcvsr_cli.pipeline`.)
    """
    opts = options or EncodeOptions()
    t_start = time.monotonic()
    events = Events(on_event)
    with open_session(src, dst, out_size=out_size, options=opts, events=events, cut=cut) as s:
        run = s.start(cancel)
        out_iter = iter(process(run.decoded()))
        try:
            for out in out_iter:
                run.put(out)
        except BaseException:  # end the processor's generator, then re-raise
            close = getattr(out_iter, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as again:  # the first error is the one raised; say this one
                    events.warn(
                        f"{_display(src)}: closing the frame processor also failed: {again}"
                    )
            raise
        return s.commit(run.end(), t_start)

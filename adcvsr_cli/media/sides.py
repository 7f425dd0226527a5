"""Side streams: the input's audio, subtitle, data and attachment streams, copied packet for
packet (or audio transcoded) into the output beside the upscaled video."""

from __future__ import annotations

import collections
import contextlib
import io
from collections.abc import Callable
from typing import Any

import av
import av.error

from ..errors import UsageError, VideoError
from .avlog import libav_quiet
from .common import _err_text
from .types import EncodeOptions

# Tags a muxer writes itself, or that would be wrong after re-encoding the video.
_DROP_CONTAINER_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands"}
_DROP_STREAM_TAGS = {
    "encoder",
    "duration",
    "number_of_frames",
    "number_of_bytes",
    "bps",
    "_statistics_tags",
    "_statistics_writing_app",
    "_statistics_writing_date_utc",
    "handler_name",
    "vendor_id",
    "alpha_mode",  # the output video carries no alpha plane
}


_DEFAULT_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "2.1",
    4: "quad",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}


def _stream_label(s: Any) -> str:
    md = s.metadata or {}
    codec = s.codec_context.name if s.codec_context is not None else None
    if codec is None:
        with contextlib.suppress(AttributeError):  # a data stream has no codec
            codec = s.codec.name
    parts = [f"#{s.index} {s.type} ({codec or 'unknown codec'}"]
    if md.get("language") and md.get("language") != "und":
        parts.append(f", {md['language']}")
    if md.get("title"):
        parts.append(f", '{md['title']}'")
    if md.get("filename"):
        parts.append(f", '{md['filename']}'")
    return "".join(parts) + ")"


def _copy_tags(dst: Any, src: dict[str, str], drop: set[str]) -> None:
    for k, v in (src or {}).items():
        if k.lower() in drop or k.lower().startswith("_statistics"):
            continue
        dst[k] = v


# --------------------------------------------------------------------------------------------
# Sinks: where the processed frames go
# --------------------------------------------------------------------------------------------


# Muxers that store no times before zero: they move every stream later by what lies below zero,
# less what a stream's codec delay (an Opus pre-skip, an AAC priming the input names) allows.
_NO_TIMES_BELOW_ZERO = ("matroska", "webm")


def _muxer_shift(fmt: str, pkt: Any, t: float) -> float:
    """How much later (seconds) the ``fmt`` muxer moves its output for ``pkt``, stored at ``t``
    seconds (below zero): the packet is written alone into a file in memory and read back, so
    the answer is this libavformat's own (its rules on codec delays change between versions).
    Unreadable: all of ``-t``, what a muxer without codec delays does."""
    buf = io.BytesIO()
    try:
        with av.open(buf, "w", format=fmt) as probe:
            ost = probe.add_stream_from_template(pkt.stream)
            copy = av.Packet(bytes(pkt))
            copy.stream = ost
            copy.time_base, copy.pts, copy.dts = pkt.time_base, pkt.pts, pkt.dts
            probe.mux(copy)
        buf.seek(0)
        with av.open(buf, "r", format=fmt) as back:
            got = next((p for p in back.demux() if p.pts is not None and p.time_base), None)
            if got is None:
                return -t
            return max(0.0, float(got.pts * got.time_base) - t)
    except (av.error.FFmpegError, ValueError):
        return -t


class Side:
    """A non-video input stream and what we do with it."""

    def __init__(self, stream: Any, mode: str, optional: bool = False):
        self.stream = stream
        self.mode = mode  # "copy" or "transcode"
        self.optional = (
            optional  # data, attachments, cover art: dropped (with a warning) if refused
        )
        self.out: Any = None
        # The output stream's index, kept for the read-back check after the output is closed
        # (PyAV 19 refuses to read a stream of a closed container).
        self.out_index: int | None = None
        self.muxed = 0
        self.undecodable = 0  # packets a transcoded side could not decode (gaps in its audio)
        self.label = _stream_label(stream)


def timecode_of(stream: Any) -> str | None:
    """The start timecode a stream carries as a tag ("01:00:00:00"), if any."""
    for k, v in (stream.metadata or {}).items():
        if str(k).lower() == "timecode" and isinstance(v, str) and v:
            return v
    return None


def input_timecode(container: Any) -> str | None:
    """The input's start timecode: the video's tag, else a timecode (tmcd) track's. The
    MP4/MOV muxers write a tmcd track from the video's tag; Matroska keeps it as a tag."""
    streams = sorted(container.streams, key=lambda s: s.type != "video")
    return next((tc for tc in map(timecode_of, streams) if tc is not None), None)


def _plan_sides(
    container: Any, vstream: Any, opts: EncodeOptions, warn: Callable[[str], None]
) -> tuple[list[Side], list[Side], list[str]]:
    """Split the other input streams into (required, optional) sides and dropped labels."""
    required: list[Side] = []
    optional: list[Side] = []
    dropped: list[str] = []
    for s in container.streams:
        if s.index == vstream.index:
            continue
        label = _stream_label(s)
        if s.type == "video":
            if _is_cover(s):
                optional.append(Side(s, "copy", optional=True))
            else:
                dropped.append(label)
                warn(f"{label}: only one video track is upscaled; this one is dropped")
        elif s.type == "audio":
            if opts.no_audio:
                dropped.append(label)
            elif s.codec_context is None:
                dropped.append(label)
                warn(f"{label}: audio stream without codec parameters dropped")
            else:
                required.append(Side(s, "transcode" if opts.audio_codec else "copy"))
        elif s.type == "subtitle":
            if opts.no_subs:
                dropped.append(label)
            else:
                required.append(Side(s, "copy"))
        elif s.type == "data" and timecode_of(s) is not None:
            continue  # a timecode (tmcd) track: carried as the video's timecode tag
        elif s.type in ("data", "attachment"):
            optional.append(Side(s, "copy", optional=True))
        else:
            dropped.append(label)
            warn(f"{label}: stream of unknown type dropped")
    return required, optional, dropped


def _container_refuses(fmt: str, stream: Any) -> BaseException | None:
    """Try the stream alone in a scratch container in memory: ``supported_codecs`` is not
    strict enough (mp4 lists pcm_s16be, then fails to write its header)."""
    with libav_quiet():
        return _scratch_refuses(fmt, lambda out: _template_stream(out, stream))


def _template_stream(scratch: Any, stream: Any) -> None:
    ost = scratch.add_stream_from_template(stream)
    scratch.start_encoding()
    name = stream.codec_context.name if stream.codec_context is not None else ""
    if name.startswith("pcm_"):
        # PCM payloads are plain samples, so a silent packet is valid; the mp4 muxer only
        # fails at the trailer once it has seen one.
        pkt = av.Packet(bytes(4096))
        pkt.pts = pkt.dts = 0
        pkt.time_base = stream.time_base
        pkt.stream = ost
        scratch.mux(pkt)


def _scratch_refuses(fmt: str, fill: Callable[[Any], None]) -> BaseException | None:
    """The error a ``fmt`` container in memory raises when ``fill`` sets it up and it is
    closed (its trailer written), or ``None``."""
    scratch = None
    try:
        scratch = av.open(io.BytesIO(), "w", format=fmt)
        fill(scratch)
        out, scratch = scratch, None
        out.close()
    except (av.error.FFmpegError, ValueError, OSError) as e:
        return e
    finally:
        if scratch is not None:
            with contextlib.suppress(av.error.FFmpegError, OSError):
                scratch.close()
    return None


# Audio encoders to suggest, best first; the first one the container takes is named in hints.
_AUDIO_CANDIDATES = ("aac", "libopus", "flac", "libmp3lame", "pcm_s16le")


def _audio_refused(fmt: str, codec: str) -> BaseException | None:
    """Whether the ``fmt`` container refuses ``codec`` audio (tried in memory)."""

    def fill(scratch: Any) -> None:
        scratch.add_stream(codec, rate=48000, layout="stereo")
        scratch.start_encoding()

    with libav_quiet():
        return _scratch_refuses(fmt, fill)


def audio_codec_for(fmt: str) -> str | None:
    """The first audio encoder of :data:`_AUDIO_CANDIDATES` that ``fmt`` can hold."""
    return next((c for c in _AUDIO_CANDIDATES if _audio_refused(fmt, c) is None), None)


def _cannot_hold(name: str, fmt: str, side: Side, e: BaseException) -> VideoError:
    kind = side.stream.type
    ways = []
    if kind == "audio":
        ways = ["--no-audio to drop audio"]
        codec = audio_codec_for(fmt)
        if codec is not None:
            ways.insert(0, f"--audio-codec {codec} to transcode it")
    elif kind == "subtitle":
        ways = ["--no-subs to drop subtitles"]
    ways.append("another container such as .mkv")
    return VideoError(
        f"{name}: the {fmt} container cannot hold input stream {side.label} ({_err_text(e)}); "
        f"use {', or '.join(ways)}"
    )


_IMAGE_MIMETYPES = {"mjpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_MIMETYPE_EXT = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


def _is_cover(stream: Any) -> bool:
    disp = stream.disposition
    return (
        stream.type == "video"
        and disp is not None
        and bool(disp & av.stream.Disposition.attached_pic)
    )


class SideMuxer:
    """Adds the side streams to an output container and muxes their packets in time order
    beside the video: packets come from the decoder's ``queue`` (a deque filled as it demuxes)
    and go out up to the time of the latest video frame written."""

    def __init__(
        self,
        out: Any,
        fmt: str,
        name: str,
        sides: list[Side],
        queue: collections.deque[Any],
        opts: EncodeOptions,
        warn: Callable[[str], None],
        cut: Any = None,
    ):
        self.out, self.fmt, self.name = out, fmt, name
        self.queue = queue
        self.cut = cut  # a ranges.Cut: keep the packets that start in its span, shifted to zero
        self.opts = opts
        self.warn = warn
        self.dropped: list[str] = []
        self.attached: list[str] = []
        # How much later (seconds) a muxer that stores no times before zero moves the output,
        # and per stream the earliest time below zero already accounted for.
        self.shift = 0.0
        self._below: dict[int, float] = {}
        self.sides = [s for s in sides if not self._as_attachment(s) and self._keep(s)]
        for side in self.sides:
            self._add(side)
        self._by_index = {s.stream.index: s for s in self.sides}

    def _keep(self, side: Side) -> bool:
        """Whether the container can hold a copied stream; optional ones are dropped (with a
        warning) when it cannot, required ones are an error."""
        if side.mode != "copy":
            self._check_audio_codec(side)
            return True
        problem = _container_refuses(self.fmt, side.stream)
        if problem is None:
            return True
        if side.optional:
            self.dropped.append(side.label)
            self.warn(f"{side.label}: the {self.fmt} container cannot hold this stream; dropped")
            return False
        raise _cannot_hold(self.name, self.fmt, side, problem)

    def _as_attachment(self, side: Side) -> bool:
        """Matroska keeps a cover image as an attachment (FFmpeg shows it as a video stream
        with the attached-picture role): write it back as one, so it stays a cover."""
        if self.fmt != "matroska" or not _is_cover(side.stream):
            return False
        pkt = next((p for p in self.queue if p.stream.index == side.stream.index), None)
        if pkt is None:  # the picture comes first in the file; absent, the stream is copied
            return False
        md = dict(side.stream.metadata or {})
        codec = side.stream.codec_context.name if side.stream.codec_context else ""
        mimetype = md.get("mimetype") or _IMAGE_MIMETYPES.get(codec, "application/octet-stream")
        filename = md.get("filename") or f"cover{_MIMETYPE_EXT.get(mimetype, '')}"
        self.out.add_attachment(filename, mimetype, bytes(pkt))
        self.queue.remove(pkt)
        self.attached.append(side.label)
        return True

    def _check_audio_codec(self, side: Side) -> None:
        codec = self.opts.audio_codec or "aac"
        problem = _audio_refused(self.fmt, codec)
        if problem is None:
            return
        fits = audio_codec_for(self.fmt)
        instead = f"--audio-codec {fits}" if fits else "--no-audio"
        raise UsageError(
            f"{self.name}: the {self.fmt} container cannot hold {codec} audio "
            f"({_err_text(problem)}); use {instead}, or another container such as .mkv"
        )

    def _add(self, side: Side) -> None:
        s = side.stream
        try:
            if side.mode == "transcode":
                acodec = self.opts.audio_codec or "aac"
                icc = s.codec_context
                # A layout with no channel order ("2 channels") makes aac refuse to open.
                channels = icc.layout.nb_channels if icc.layout is not None else 2
                side.out = self.out.add_stream(
                    acodec,
                    rate=icc.sample_rate or 48000,
                    layout=_DEFAULT_LAYOUTS.get(channels, "stereo"),
                )
            else:
                side.out = self.out.add_stream_from_template(s)
        except (av.error.FFmpegError, ValueError) as e:
            if side.mode == "transcode":
                raise UsageError(
                    f"{self.name}: cannot transcode {side.label} to "
                    f"{self.opts.audio_codec}: {_err_text(e)}"
                ) from e
            raise _cannot_hold(self.name, self.fmt, side, e) from e
        side.out_index = side.out.index
        _copy_tags(side.out.metadata, dict(s.metadata or {}), _DROP_STREAM_TAGS)
        if s.disposition is not None:
            side.out.disposition = s.disposition

    def mux_upto(self, upto: float | None) -> None:
        """Mux the queued packets that start at or before ``upto`` seconds (all: ``None``)."""
        side_q = self.queue
        offset = self.cut.t_from if self.cut is not None else 0.0
        while side_q:
            pkt = side_q[0]
            if upto is not None:
                t = pkt.dts if pkt.dts is not None else pkt.pts
                if t is not None and pkt.time_base and float(t * pkt.time_base) - offset > upto:
                    return
            side_q.popleft()
            if self.cut is None or self._in_cut(pkt):
                self._mux_packet(pkt)

    def _in_cut(self, pkt: Any) -> bool:
        """Whether a packet starts inside the cut; if so its timestamps are moved to the cut's
        time line (packet-accurate: a packet is kept whole or dropped)."""
        cut, tb = self.cut, pkt.time_base
        if pkt.pts is None or not tb:
            return False
        t = float(pkt.pts * tb)
        if t < cut.t_from - 1e-9 or (cut.t_to is not None and t >= cut.t_to - 1e-9):
            return False
        shift = round(cut.t_from / tb)
        pkt.pts -= shift
        if pkt.dts is not None:
            pkt.dts -= shift
        return True

    def _mux_packet(self, pkt: Any) -> None:
        side = self._by_index.get(pkt.stream.index)
        if side is None:
            return
        if side.mode == "copy":
            pkt.stream = side.out
            self.put(pkt)
            side.muxed += 1
            return
        try:
            frames = side.stream.codec_context.decode(pkt)
        except av.error.FFmpegError:
            side.undecodable += 1  # named in a warning by finish()
            return
        self._encode(side, frames)

    def put(self, pkt: Any) -> None:
        """Mux one packet; one stored before zero may move the whole output later (``shift``),
        which a pipe output cannot be read back for."""
        if pkt.pts is not None and pkt.time_base and self.fmt in _NO_TIMES_BELOW_ZERO:
            t = float(pkt.pts * pkt.time_base)
            index = pkt.stream.index
            if t < min(0.0, self._below.get(index, 0.0)):
                self._below[index] = t
                self.shift = max(self.shift, _muxer_shift(self.fmt, pkt, t))
        self.out.mux(pkt)

    def _encode(self, side: Side, frames: Any) -> None:
        for f in frames:
            f.pts = None
            for p in side.out.encode(f):
                self.put(p)
                side.muxed += 1

    def finish(self) -> None:
        """Mux what is left, and flush the audio decoders and encoders of transcoded sides."""
        self.mux_upto(None)
        for side in self.sides:
            if side.mode != "transcode":
                continue
            with contextlib.suppress(av.error.FFmpegError):
                self._encode(side, side.stream.codec_context.decode(None))
            for p in side.out.encode(None):
                self.put(p)
                side.muxed += 1
            if side.undecodable:
                self.warn(
                    f"{self.name}: {side.undecodable} packet(s) of {side.label} could not be "
                    f"decoded; the transcoded audio has gaps there"
                )

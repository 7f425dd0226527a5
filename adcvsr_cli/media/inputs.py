"""Opening an input: a path, standard input or a file object, through a demuxer allow-list."""

from __future__ import annotations

import os
import stat
import sys
from typing import IO, Any

import av
import av.error

from ..errors import VideoError
from .common import INPUT_ERRORS, OPEN_OPTIONS, _display, _err_text

# Demuxers we accept. Playlists (hls), concat and dash are left out on purpose: they make
# FFmpeg open other files named inside the input (reliability.md F28).
_DEMUXER_WHITELIST = ",".join(
    [
        "mov,mp4,m4a,3gp,3g2,mj2",
        "matroska,webm",
        "avi",
        "mpegts",
        "mpeg",
        "mpegvideo",
        "m4v",
        "flv",
        "asf",
        "ogg",
        "nut",
        "mxf",
        "dv",
        "gif",
        "apng",
        "image2",
        "png_pipe",
        "jpeg_pipe",
        "webp_pipe",
        "bmp_pipe",
        "tiff_pipe",
        "h264",
        "hevc",
        "ivf",
        "obu",
        "yuv4mpegpipe",
        # Audio-only formats, so that such an input gets "no video stream", not "unknown".
        "wav",
        "mp3",
        "aac",
        "flac",
        "w64",
        "caf",
    ]
)
_INPUT_OPTIONS = {"format_whitelist": _DEMUXER_WHITELIST, "pattern_type": "none"}

_IMAGE_DEMUXERS = {
    "image2",
    "png_pipe",
    "jpeg_pipe",
    "webp_pipe",
    "bmp_pipe",
    "tiff_pipe",
}


def _moov_missing(path: str) -> bool:
    """Walk top-level MP4 boxes: an ``ftyp`` file without ``moov`` lost its index."""
    try:
        size_total = os.path.getsize(path)
        seen: list[bytes] = []
        with open(path, "rb") as fh:
            pos = 0
            while pos + 8 <= size_total and len(seen) < 10000:
                fh.seek(pos)
                hdr = fh.read(8)
                size = int.from_bytes(hdr[:4], "big")
                kind = hdr[4:8]
                if size == 1:
                    size = int.from_bytes(fh.read(8), "big")
                elif size == 0:
                    size = size_total - pos
                seen.append(kind)
                if size < 8:
                    break
                pos += size
        return bool(seen) and seen[0] == b"ftyp" and b"moov" not in seen
    except OSError:
        return False


_MP4_PIPE_MESSAGE = (
    "{name}: cannot read this MP4 from a pipe: its index (moov) is at the end. Pass the file "
    "path instead, or remux it with '+faststart', or pipe Matroska"
)


# How much of a piped input is kept: enough for an image's headers (its ICC profile) and to
# word errors about pipes.
_HEAD_BYTES = 4 << 20


class _HeadRecorder:
    """A read-only file wrapper that remembers the first bytes (the headers of a piped image,
    the start of an MP4 to word errors about pipes)."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self._head = bytearray()
        self._pos = 0

    @property
    def head(self) -> bytes:
        return bytes(self._head)

    @property
    def whole(self) -> bool:
        """Whether ``head`` holds the whole input read so far (it was shorter than the
        bytes kept)."""
        return len(self._head) < _HEAD_BYTES

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if self._pos == len(self._head) and len(self._head) < _HEAD_BYTES:
            self._head += data[: _HEAD_BYTES - len(self._head)]
        self._pos += len(data)
        return data

    def seekable(self) -> bool:
        try:
            return bool(self._raw.seekable())
        except (AttributeError, OSError, ValueError):  # no seekable(), or a closed file
            return False

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._raw.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._raw.tell()


def is_stream_input(src: str | os.PathLike[str]) -> bool:
    """True for an input that can be read only once: ``"-"``, a named pipe, a process
    substitution (``/dev/fd/N``), a character device or a socket. Probe such an input and it
    is gone: read it by :func:`~adcvsr_cli.media.transcode` alone, as standard input is."""
    p = os.fspath(src)
    if p == "-":
        return True
    try:
        mode = os.stat(p).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _check_input_path(path: str) -> None:
    name = path
    if not os.path.lexists(path):
        raise VideoError(f"{name}: no such file")
    if not os.path.exists(path):
        raise VideoError(f"{name}: broken symbolic link")
    if os.path.isdir(path):
        raise VideoError(f"{name}: is a directory, not a video file")
    st = os.stat(path)
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise VideoError(f"{name}: input is empty (0 bytes)")


def _open_input(src: Any) -> tuple[Any, str, Any]:
    """Open ``src`` (path, ``"-"`` or binary file object). Returns (container, name, raw)."""
    name = _display(src)
    kwargs: dict[str, Any] = {**OPEN_OPTIONS, "container_options": _INPUT_OPTIONS}
    if isinstance(src, (str, os.PathLike)) and os.fspath(src) != "-":
        path = os.path.abspath(os.fspath(src))
        _check_input_path(path)
        try:
            return av.open(path, **kwargs), name, None
        except av.error.FFmpegError as e:
            if _moov_missing(path):
                raise VideoError(
                    f"{name}: MP4 index (moov) missing - the file is truncated (an interrupted "
                    "recording?) and cannot be read"
                ) from e
            if isinstance(e, (av.error.InvalidDataError, av.error.ArgumentError)):
                raise VideoError(f"{name}: not a recognised media file ({_err_text(e)})") from e
            raise VideoError(f"{name}: cannot open: {_err_text(e)}") from e
        except (OSError, UnicodeDecodeError, IndexError, ValueError) as e:
            raise VideoError(f"{name}: cannot open: {_err_text(e)}") from e
    raw = sys.stdin.buffer if isinstance(src, (str, os.PathLike)) else src
    rec = _HeadRecorder(raw)
    try:
        return av.open(rec, **kwargs), name, rec
    except INPUT_ERRORS as e:
        if not rec.head:
            raise VideoError(f"{name}: input is empty") from e
        if rec.head[4:8] == b"ftyp" and not rec.seekable():
            raise VideoError(_MP4_PIPE_MESSAGE.format(name=name)) from e
        raise VideoError(f"{name}: not a recognised media file ({_err_text(e)})") from e


def _pick_video_stream(container: Any, name: str) -> Any:
    candidates = []
    for s in container.streams.video:
        disp = s.disposition
        cover = bool(disp & av.stream.Disposition.attached_pic) if disp is not None else False
        if cover:
            continue
        area = (s.codec_context.width * s.codec_context.height) if s.codec_context else 0
        default = bool(disp & av.stream.Disposition.default) if disp is not None else False
        candidates.append((default, area, -s.index, s))
    if not candidates:
        if container.streams.video:
            raise VideoError(f"{name}: no video stream (only cover art)")
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(f"{name}: no video stream (streams: {', '.join(kinds)})")
    candidates.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
    s = candidates[0][3]
    if s.codec_context is None:
        raise VideoError(f"{name}: no decodable video (the stream has no codec parameters)")
    return s

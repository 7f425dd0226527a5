"""Still images and image sequences: reading and writing PNG/JPEG, and the sinks that write
an image output (one frame) or a numbered PNG sequence."""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from ..errors import UsageError, VideoError
from .common import _bits, _err_text, _has_alpha
from .decode import _to_rgb
from .icc import IccProfile, embed_jpeg, embed_png, kept_icc
from .outputs import _EXISTS_HINT, _fsync_dir, _write_atomic_bytes, sequence_name
from .probe import with_first_frame
from .types import Frame, OutputExists


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a still image (PNG, JPEG, WebP, BMP, TIFF) as RGB plus optional alpha.

    Returns ``(rgb, alpha)``: ``rgb`` is ``(H, W, 3)`` uint8, or uint16 for 16-bit images;
    ``alpha`` is ``(H, W)`` of the same dtype, or ``None`` when the image has none.
    """

    def pixels(container: Any, vstream: Any, frame: Any, name: str) -> Any:
        return _to_rgb(frame, _bits(frame.format) > 8, _has_alpha(frame.format))

    rgb, alpha = with_first_frame(path, pixels, "image")
    return rgb, alpha


def _encode_image_bytes(
    ext: str, rgb: np.ndarray, alpha: np.ndarray | None, name: str
) -> tuple[bytes, list[str]]:
    warnings: list[str] = []
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype not in (np.uint8, np.uint16):
        raise UsageError(
            f"{name}: image must be (H, W, 3) uint8 or uint16, got {rgb.shape} {rgb.dtype}"
        )
    h, w = rgb.shape[:2]
    deep = rgb.dtype == np.uint16
    if alpha is not None and alpha.shape != (h, w):
        raise UsageError(f"{name}: alpha shape {alpha.shape} does not match image {(h, w)}")
    if ext == ".png":
        if alpha is not None:
            a = alpha.astype(rgb.dtype)
            arr = np.ascontiguousarray(np.dstack([rgb, a]))
            src_fmt, dst_fmt = ("rgba64le", "rgba64be") if deep else ("rgba", "rgba")
        else:
            arr = np.ascontiguousarray(rgb)
            src_fmt, dst_fmt = ("rgb48le", "rgb48be") if deep else ("rgb24", "rgb24")
        frame = av.VideoFrame.from_ndarray(arr, format=src_fmt)
        if dst_fmt != src_fmt:
            frame = frame.reformat(format=dst_fmt)
        cc = av.CodecContext.create("png", "w")
        cc.width, cc.height, cc.pix_fmt = w, h, dst_fmt
    elif ext in (".jpg", ".jpeg"):
        if alpha is not None:
            warnings.append(f"{name}: JPEG has no alpha channel; alpha dropped")
        if deep:
            warnings.append(f"{name}: JPEG is 8-bit; 16-bit image reduced to 8 bits")
            rgb = (rgb.astype(np.uint32) * 255 + 32767) // 65535
            rgb = rgb.astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuvj444p" if (w % 2 or h % 2) else "yuvj420p")
        cc = av.CodecContext.create("mjpeg", "w")
        cc.width, cc.height, cc.pix_fmt = w, h, frame.format.name
        cc.qscale = True
        cc.global_quality = 2 * 118  # q=2 (FF_QP2LAMBDA = 118): visually lossless
    else:
        raise UsageError(f"{name}: cannot write images of type '{ext}' (use .png or .jpg)")
    cc.time_base = Fraction(1, 25)
    frame.pts = 0
    frame.time_base = cc.time_base
    packets = list(cc.encode(frame)) + list(cc.encode(None))
    data = b"".join(bytes(p) for p in packets)
    if not data:
        raise VideoError(f"{name}: the image encoder produced no data")
    return data, warnings


def _with_icc(ext: str, data: bytes, icc: IccProfile | None) -> bytes:
    """The encoded image with the ICC profile written into it (PNG iCCP, JPEG APP2)."""
    if icc is None:
        return data
    return embed_png(data, icc) if ext == ".png" else embed_jpeg(data, icc)


def write_image(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    icc: IccProfile | None = None,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Write ``rgb`` (and ``alpha``) as PNG or JPEG, chosen by the extension, atomically,
    with the ICC colour profile ``icc`` when given (a profile the file cannot hold is left
    out, said to ``warn``; without ``warn`` that is a :class:`VideoError`).

    16-bit arrays make 16-bit PNGs (JPEG is reduced to 8 bits). The file appears complete
    or not at all. Raises :class:`VideoError` when the folder is not writable.
    """
    p = os.fspath(path)
    ext = Path(p).suffix.lower()
    data, _ = _encode_image_bytes(ext, rgb, alpha, p)
    data = _with_icc(ext, data, kept_icc(icc, ext, warn or _refuse))
    try:
        _write_atomic_bytes(p, data)
    except OSError as e:
        raise VideoError(f"{p}: cannot write: {_err_text(e)}") from e


def _refuse(message: str) -> None:
    raise VideoError(message)


def _resize_plane(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear (triangle filter, area-like when shrinking is not needed) plane resize."""
    if a.shape == (h, w):
        return a.copy()
    src = a.astype(np.float32)

    def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
        x = np.clip(x, 0, n_in - 1)
        i0 = np.floor(x).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        t = (x - i0).astype(np.float32)
        return i0, i1, t

    r0, r1, rt = axis_weights(a.shape[0], h)
    c0, c1, ct = axis_weights(a.shape[1], w)
    rows = src[r0] * (1 - rt)[:, None] + src[r1] * rt[:, None]
    out = rows[:, c0] * (1 - ct)[None, :] + rows[:, c1] * ct[None, :]
    info = np.iinfo(a.dtype) if np.issubdtype(a.dtype, np.integer) else None
    if info is not None:
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(a.dtype)


# --------------------------------------------------------------------------------------------
# Output paths
# --------------------------------------------------------------------------------------------


class ImageSink:
    """One frame in, one still image out (PNG or JPEG)."""

    def __init__(
        self,
        *,
        target: str,
        name: str,
        out_w: int,
        out_h: int,
        warn: Callable[[str], None],
        icc: IccProfile | None = None,
    ):
        # the input's ICC profile, written into the image (or named in a warning)
        self.icc = kept_icc(icc, Path(name).suffix.lower(), warn)
        self.target = target
        self.name = name
        self.out_w, self.out_h = out_w, out_h
        self.warn = warn
        self.frames = 0
        self.codec = "png" if target.lower().endswith(".png") else "mjpeg"
        self.pix_fmt = ""
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.pts_fixed = 0

    def open(self) -> None:
        pass

    def write(self, frame: Frame) -> None:
        arr, alpha = frame.array, frame.alpha
        if self.frames:
            raise VideoError(f"{self.name}: an image output takes one frame; the input has more")
        if alpha is not None:
            alpha = _resize_plane(alpha, self.out_h, self.out_w)
        ext = Path(self.name).suffix.lower()
        data, warns = _encode_image_bytes(ext, arr, alpha, self.name)
        for w in warns:
            self.warn(w)
        data = _with_icc(ext, data, self.icc)
        with open(self.target, "wb") as fh:
            fh.write(data)
        self.frames = 1

    def finish(self) -> None:
        pass

    def close(self) -> None:
        with open(self.target, "rb+") as fh:
            os.fsync(fh.fileno())

    def verify(self, frames_in: int, first_pts: int | None, last_pts: int | None) -> list[str]:
        rgb, _ = read_image(self.target)
        if rgb.shape[:2] != (self.out_h, self.out_w):
            raise VideoError(f"{self.name}: verification failed: wrong image size written")
        return []

    def abort(self) -> None:
        pass


class SequenceSink:
    """Frames written as numbered PNG files (pattern such as ``out/%06d.png``)."""

    def __init__(
        self,
        *,
        pattern: str,
        tmpdir: str,
        name: str,
        out_w: int,
        out_h: int,
        warn: Callable[[str], None],
        icc: IccProfile | None = None,
    ):
        # the input's ICC profile, written into every file (or named in a warning)
        self.icc = kept_icc(icc, Path(pattern).suffix.lower(), warn)
        self.pattern = pattern
        self.tmpdir = tmpdir
        self.name = name
        self.out_w, self.out_h = out_w, out_h
        self.warn = warn
        self.frames = 0
        self.codec = "png"
        self.pix_fmt = ""
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.pts_fixed = 0
        self.ext = Path(pattern).suffix.lower()

    def open(self) -> None:
        pass

    def file_name(self, i: int) -> str:
        return sequence_name(os.path.basename(self.pattern), i)

    def write(self, frame: Frame) -> None:
        arr, alpha = frame.array, frame.alpha
        if alpha is not None:
            alpha = _resize_plane(alpha, self.out_h, self.out_w)
        data, warns = _encode_image_bytes(self.ext, arr, alpha, self.name)
        if self.frames == 0:
            for w in warns:
                self.warn(w)
        data = _with_icc(self.ext, data, self.icc)
        with open(os.path.join(self.tmpdir, self.file_name(self.frames + 1)), "wb") as fh:
            fh.write(data)
        self.frames += 1

    def finish(self) -> None:
        pass

    def close(self) -> None:
        _fsync_dir(self.tmpdir)

    def verify(self, frames_in: int, first_pts: int | None, last_pts: int | None) -> list[str]:
        names = set(os.listdir(self.tmpdir))
        want = {self.file_name(i) for i in range(1, frames_in + 1)}
        if names != want:
            raise VideoError(
                f"{self.name}: verification failed: {len(names)} files for {frames_in} frames"
            )
        return []

    def publish(self, overwrite: bool) -> None:
        d = os.path.dirname(os.path.abspath(self.pattern))
        names = [self.file_name(i) for i in range(1, self.frames + 1)]
        if not overwrite:
            clash = [n for n in names if os.path.lexists(os.path.join(d, n))]
            if clash:
                raise OutputExists(f"{os.path.join(d, clash[0])}: output exists ({_EXISTS_HINT})")
        for n in names:
            os.replace(os.path.join(self.tmpdir, n), os.path.join(d, n))
        os.rmdir(self.tmpdir)
        _fsync_dir(d)

    def abort(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# transcode
# --------------------------------------------------------------------------------------------

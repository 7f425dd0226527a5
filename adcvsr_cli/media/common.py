"""Small shared helpers of the media layer: error wording, FFmpeg format facts, fractions."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import av.error

# Colour matrices swscale converts with (its SWS_CS_* values; 2: unspecified, BT.601 used)
SWS_COLORSPACES = (1, 4, 5, 6, 7, 9, 10)
BT601 = 6  # smpte170m: swscale's default matrix, which the others fall back to
# FFmpeg's names of the matrices swscale cannot convert with, for messages
MATRIX_NAMES = {
    8: "ycgco",
    11: "smpte2085",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
    15: "ipt-c2",
    16: "ycgco-re",
    17: "ycgco-ro",
}

# av.open's metadata_errors= exists up to PyAV 18 ("replace" keeps a file with badly encoded tag
# bytes readable); PyAV 19 removed it and always decodes tags as UTF-8 with surrogateescape.
OPEN_OPTIONS: dict[str, Any] = (
    {"metadata_errors": "replace"} if int(av.__version__.split(".")[0]) < 19 else {}
)


# What reading a damaged input can raise: FFmpeg's errors, and the Python ones PyAV raises on
# some corrupt files (UnicodeDecodeError, IndexError: reliability.md F21). Caught at the
# per-file boundary, where they become a VideoError naming the file.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    av.error.FFmpegError,
    OSError,
    ValueError,
    IndexError,
)


def _display(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        s = os.fspath(src)
        return "<stdin>" if s == "-" else s
    name = getattr(src, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _err_text(e: BaseException) -> str:
    if isinstance(e, av.error.FFmpegError):
        msg = e.strerror or str(e)
        return msg.rstrip(".")
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}"


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _is_broken_pipe(e: BaseException) -> bool:
    return any(
        isinstance(x, BrokenPipeError) or getattr(x, "errno", None) == errno.EPIPE
        for x in _chain(e)
    )


def _os_errno(e: BaseException) -> int | None:
    for x in _chain(e):
        n = getattr(x, "errno", None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def _bits(fmt: av.VideoFormat) -> int:
    return max(c.bits for c in fmt.components) if fmt.components else 8


def _has_alpha(fmt: av.VideoFormat) -> bool:
    return any(c.is_alpha for c in fmt.components)


def _frac(x: Any) -> Fraction | None:
    if not x:
        return None
    try:
        f = Fraction(x)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if f > 0 else None

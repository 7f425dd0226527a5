"""Encoding choices: encoder, pixel format and encoder options for an output."""

from __future__ import annotations

import os
from collections.abc import Callable

import av

from ..errors import UsageError
from .common import _bits
from .types import EncodeOptions, MediaInfo

_SUBSAMPLED_TO_444 = {
    "yuv420p": "yuv444p",
    "yuv422p": "yuv444p",
    "yuvj420p": "yuvj444p",
    "yuvj422p": "yuvj444p",
    "nv12": "yuv444p",
    "yuv420p10le": "yuv444p10le",
    "yuv422p10le": "yuv444p10le",
    "yuv420p12le": "yuv444p12le",
    "yuv422p12le": "yuv444p12le",
}


def _parse_bitrate(text: str) -> int:
    t = text.strip().lower()
    mult = 1
    if t.endswith("k"):
        mult, t = 1000, t[:-1]
    elif t.endswith("m"):
        mult, t = 1_000_000, t[:-1]
    elif t.endswith("g"):
        mult, t = 1_000_000_000, t[:-1]
    try:
        value = float(t) * mult
    except ValueError:
        raise UsageError(f"bitrate '{text}' is not a number such as 8M or 2500k") from None
    if value <= 0:
        raise UsageError(f"bitrate '{text}' must be positive")
    return int(value)


def _codec_formats(codec: str) -> list[str]:
    try:
        c = av.Codec(codec, "w")
    except ValueError:  # av.codec.codec.UnknownCodecError
        raise UsageError(f"unknown video encoder '{codec}'") from None
    if c.type != "video":
        raise UsageError(f"'{codec}' is not a video encoder")
    return [f.name for f in (c.video_formats or [])]


def _chroma(fmt_name: str) -> str:
    try:
        f = av.VideoFormat(fmt_name, 16, 16)
    except ValueError:  # a format name this FFmpeg does not know: encode as 4:2:0
        return "420"
    if f.is_rgb or len(f.components) < 3:
        return "420"
    cw, ch = f.chroma_width(), f.chroma_height()
    if cw == 16 and ch == 16:
        return "444"
    if ch == 16:
        return "422"
    return "420"


def _choose_pix_fmt(
    opts: EncodeOptions,
    codec: str,
    info: MediaInfo,
    out_w: int,
    out_h: int,
    warn: Callable[[str], None],
) -> str:
    formats = _codec_formats(codec)
    if opts.pix_fmt:
        pix = opts.pix_fmt
        if formats and pix not in formats:
            raise UsageError(
                f"encoder {codec} cannot write pixel format {pix} (it can: {', '.join(formats)})"
            )
        try:
            asked = av.VideoFormat(pix)
        except ValueError:
            raise UsageError(f"unknown pixel format '{pix}'") from None
        if _bits(asked) < info.bit_depth:
            warn(f"pixel format {pix} has fewer bits than the {info.bit_depth}-bit input")
    else:
        deep = info.bit_depth > 8
        chroma = _chroma(info.pix_fmt)
        base = {"420": "yuv420p", "422": "yuv422p", "444": "yuv444p"}[chroma]
        wanted = []
        if deep:
            bits = 12 if info.bit_depth >= 12 else 10
            wanted += [f"{base}{bits}le", f"{base}10le", "yuv420p10le"]
        wanted += [base, "yuv420p"]
        pix = next((p for p in wanted if not formats or p in formats), formats[0])
        if deep and _bits(av.VideoFormat(pix)) < min(info.bit_depth, 10):
            warn(
                f"encoder {codec} has no >8-bit format; the {info.bit_depth}-bit input is written as {pix}"
            )
        elif deep and _bits(av.VideoFormat(pix)) < info.bit_depth:
            warn(
                f"encoder {codec} writes at most {_bits(av.VideoFormat(pix))} bits; {info.bit_depth}-bit input reduced"
            )
    try:
        fmt = av.VideoFormat(pix, 16, 16)
    except ValueError:
        raise UsageError(f"unknown pixel format '{pix}'") from None
    # Odd sizes: 4:2:0 / 4:2:2 encoders refuse to open (reliability.md F17).
    if len(fmt.components) >= 3 and not fmt.is_rgb:
        need_w = fmt.chroma_width() != 16
        need_h = fmt.chroma_height() != 16
        if (need_w and out_w % 2) or (need_h and out_h % 2):
            alt = _SUBSAMPLED_TO_444.get(pix)
            if alt and (not formats or alt in formats):
                warn(f"output size {out_w}x{out_h} is odd; writing {alt} instead of {pix}")
                pix = alt
            else:
                raise UsageError(
                    f"output size {out_w}x{out_h} is odd and {codec} cannot use {pix} for it"
                )
    return pix


def choose_encoder(
    opts: EncodeOptions,
    fmt: str,
    info: MediaInfo,
    out_w: int,
    out_h: int,
    warn: Callable[[str], None],
) -> tuple[str, str]:
    """The video encoder and pixel format of an output in container ``fmt``, refusing what
    cannot be written (UsageError); the run and ``upscale --dry-run`` both call it."""
    codec = opts.codec or _default_codec(fmt, info.bit_depth)
    return codec, _choose_pix_fmt(opts, codec, info, out_w, out_h, warn)


# Encoder options (-e) that choose the rate control themselves: with one of them the default
# quality (crf 18) is not added, since libx264/libx265 would then use CRF and ignore, for
# example, -e qp=0 (lossless). The same for the rate keys inside x264/x265/SVT-AV1 params.
_RATE_OPTIONS = frozenset({"qp", "crf", "b", "lossless", "qscale", "global_quality", "cq-level"})
_RATE_PARAMS = {
    "x264-params": frozenset({"qp", "crf", "bitrate"}),
    "x265-params": frozenset({"qp", "crf", "bitrate", "lossless"}),
    "svtav1-params": frozenset({"qp", "crf", "tbr", "rc"}),
}


def _rate_chosen(encoder_options: dict) -> bool:
    """Whether -e already sets the rate control (a quantiser, a quality, a bitrate)."""
    keys = {str(k) for k in encoder_options}
    if keys & _RATE_OPTIONS:
        return True
    for name, rate_keys in _RATE_PARAMS.items():
        params = str(encoder_options.get(name, ""))
        if {item.split("=", 1)[0].strip() for item in params.split(":")} & rate_keys:
            return True
    return False


def _codec_options(opts: EncodeOptions, codec: str) -> dict[str, str]:
    o: dict[str, str] = {}
    default = None if opts.bitrate or _rate_chosen(opts.encoder_options) else 18
    crf = opts.crf if opts.crf is not None else default
    if codec in ("libx264", "libx264rgb", "libx265", "h264", "hevc"):
        if crf is not None:
            o["crf"] = str(crf)
        o["preset"] = opts.preset or "medium"
    elif codec in ("libvpx-vp9", "libvpx"):
        if crf is not None:
            o["crf"] = str(crf)
        eo = opts.encoder_options
        if (crf is not None or "crf" in eo) and not opts.bitrate and "b" not in eo:
            o["b"] = "0"  # libvpx: constant quality, not a quality capped at its default rate
        o["row-mt"] = "1"
        if opts.preset:
            o["deadline"] = opts.preset
    elif codec in ("libsvtav1", "av1"):
        if crf is not None:
            o["crf"] = str(crf)
        if opts.preset:
            o["preset"] = opts.preset
    else:
        if opts.crf is not None:
            o["crf"] = str(opts.crf)
        if opts.preset:
            o["preset"] = opts.preset
    o.update({str(k): str(v) for k, v in opts.encoder_options.items()})
    if codec in ("libx265", "hevc"):
        # x265 prints its banner and info lines itself (not through FFmpeg's log): ask it for
        # errors only (an encoder error also fails the run with a message), unless the user
        # chose a level in their own x265-params.
        params = o.get("x265-params", "")
        if "log-level" not in params:
            o["x265-params"] = f"{params}:log-level=error" if params else "log-level=error"
    return o


def quiet_encoder_logs(codec: str) -> None:
    """SVT-AV1 prints its banner and info lines itself, at the level of the SVT_LOG variable
    (read when an encoder opens): errors only (they also fail the run with a message), unless
    the user set it."""
    if codec in ("libsvtav1", "av1"):
        os.environ.setdefault("SVT_LOG", "1")


def _default_codec(fmt: str, bit_depth: int = 8) -> str:
    if fmt == "webm":
        # The wheel's libvpx is 8-bit only; AV1 (also valid in WebM) keeps 10 bits.
        return "libsvtav1" if bit_depth > 8 else "libvpx-vp9"
    return "libx264"

"""HDR10 static metadata (mastering display colour volume, content light level): read from the
first decoded frame, and handed to the encoders that can write it (x265, SVT-AV1) as their own
parameters. The re-encoded frames are new frames, so frame side data would not carry it over.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from av.sidedata.sidedata import Type as SideDataType

# AVMasteringDisplayMetadata: 10 AVRationals (r, g, b primaries x/y, white point x/y, min and
# max luminance), then has_primaries and has_luminance: 22 int32.
_MDCV = struct.Struct("<22i")
# AVContentLightMetadata: unsigned MaxCLL, MaxFALL.
_CLL = struct.Struct("<2I")


@dataclass(frozen=True)
class HdrMetadata:
    """Mastering display primaries (r, g, b) and white point as CIE 1931 xy, luminance range in
    cd/m2, and the content light levels; a part the input lacks is ``None``."""

    primaries: tuple[tuple[Fraction, Fraction], ...] | None = None
    white_point: tuple[Fraction, Fraction] | None = None
    luminance: tuple[Fraction, Fraction] | None = None  # (min, max)
    max_cll: int | None = None
    max_fall: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: chromaticities and luminances as floats."""

        def xy(p: tuple[Fraction, Fraction] | None) -> list[float] | None:
            return None if p is None else [float(p[0]), float(p[1])]

        return {
            "primaries": None if self.primaries is None else [xy(p) for p in self.primaries],
            "white_point": xy(self.white_point),
            "luminance": xy(self.luminance),
            "max_cll": self.max_cll,
            "max_fall": self.max_fall,
        }

    def x265_params(self) -> list[str]:
        """x265's ``master-display`` (0.00002 and 0.0001 cd/m2 units) and ``max-cll``."""
        out = []
        if self.primaries and self.white_point and self.luminance:
            (rx, ry), (gx, gy), (bx, by) = self.primaries

            def c(v: Fraction) -> int:
                return round(v * 50000)

            def lum(v: Fraction) -> int:
                return round(v * 10000)

            wx, wy = self.white_point
            lo, hi = self.luminance
            out.append(
                f"master-display=G({c(gx)},{c(gy)})B({c(bx)},{c(by)})R({c(rx)},{c(ry)})"
                f"WP({c(wx)},{c(wy)})L({lum(hi)},{lum(lo)})"
            )
        if self.max_cll is not None:
            out.append(f"max-cll={self.max_cll},{self.max_fall or 0}")
        return out

    def svtav1_params(self) -> list[str]:
        """SVT-AV1's ``mastering-display`` (plain numbers) and ``content-light``."""
        out = []
        if self.primaries and self.white_point and self.luminance:
            (rx, ry), (gx, gy), (bx, by) = self.primaries
            wx, wy = self.white_point
            lo, hi = self.luminance

            def f(v: Fraction) -> str:
                return f"{float(v):.5f}"

            out.append(
                f"mastering-display=G({f(gx)},{f(gy)})B({f(bx)},{f(by)})R({f(rx)},{f(ry)})"
                f"WP({f(wx)},{f(wy)})L({f(hi)},{f(lo)})"
            )
        if self.max_cll is not None:
            out.append(f"content-light={self.max_cll},{self.max_fall or 0}")
        return out


def _rational(num: int, den: int) -> Fraction:
    return Fraction(num, den) if den else Fraction(0)


def reads_hdr(color_trc: int) -> bool:
    """Whether an input's frame side data is read for HDR10 metadata: a PQ or HLG transfer
    only (PyAV 18 crashes at exit after reading some other kinds, an image's ICC profile)."""
    return color_trc in (16, 18)


def _side_data(frame: Any) -> list[Any]:
    """A frame's side data entries. Iterating ``frame.side_data`` yields the entries in PyAV 18
    and their types (the mapping's keys) in PyAV 19; looking a key up gives the entry in both."""
    container = frame.side_data
    return [container[e] if isinstance(e, SideDataType) else e for e in container]


def hdr_metadata(frame: Any) -> HdrMetadata | None:
    """The HDR10 static metadata a decoded frame carries, or ``None``."""
    fields: dict[str, Any] = {}
    try:
        side_data = _side_data(frame)
    except ValueError:  # a side data type PyAV 18 cannot name (a JPEG's EXIF block)
        return None
    for sd in side_data:
        kind = str(sd.type).rsplit(".", 1)[-1]
        data = bytes(sd)
        if kind == "MASTERING_DISPLAY_METADATA" and len(data) >= _MDCV.size:
            v = _MDCV.unpack_from(data)
            r = [_rational(v[i], v[i + 1]) for i in range(0, 20, 2)]
            if v[20]:
                fields["primaries"] = ((r[0], r[1]), (r[2], r[3]), (r[4], r[5]))
                fields["white_point"] = (r[6], r[7])
            if v[21]:
                fields["luminance"] = (r[8], r[9])
        elif kind == "CONTENT_LIGHT_LEVEL" and len(data) >= _CLL.size:
            fields["max_cll"], fields["max_fall"] = _CLL.unpack_from(data)
    return HdrMetadata(**fields) if fields else None


def hdr_lost(name: str, codec: str) -> str:
    """The warning for an output whose encoder cannot write HDR10 static metadata."""
    return (
        f"{name}: the input's HDR10 mastering-display and content-light metadata are "
        f"not kept by {codec}; use --codec libx265 (or libsvtav1) to keep them"
    )


_PARAMS = {"libx265": "x265-params", "hevc": "x265-params", "libsvtav1": "svtav1-params"}


def hdr_options(codec: str, meta: HdrMetadata, options: dict[str, str]) -> dict[str, str] | None:
    """``options`` with the metadata added to the encoder's own parameters, or ``None`` when
    ``codec`` cannot write it. Values the user set in those parameters win."""
    key = _PARAMS.get(codec)
    if key is None:
        return None
    given = options.get(key, "")
    extra = meta.x265_params() if key == "x265-params" else meta.svtav1_params()
    extra = [e for e in extra if e.split("=", 1)[0] not in given]
    merged = ":".join(p for p in [given, *extra] if p)
    return {**options, key: merged} if merged else dict(options)

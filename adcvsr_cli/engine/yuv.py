"""RGB -> Y'CbCr planes on the device, a chunk at a time, so that the encoder thread only encodes.

The conversion is the one the encoder's converter (FFmpeg's swscale, through PyAV's
``reformat``) applies by default to the quantised RGB frames, so the planes agree with it within
one level:

- the matrix of the output's colour space (BT.709, BT.601, BT.2020, FCC, SMPTE 240M; swscale's
  default, BT.601, when the output names none) and its range (limited: 16-235 / 16-240 scaled to
  the bit depth; full: 0 .. 2**bits - 1 with chroma centred on 2**(bits - 1));
- chroma sited in the centre of each 2x2 (4:2:0) or 1x2 (4:2:2) block: across, the two pixels of
  a pair are averaged; down (4:2:0), rows are filtered by [1, 3, 3, 1] / 8 around each pair, the
  edge rows repeated (swscale's bilinear downscale by two);
- 16-bit RGB read as value / 65280 (swscale reads 16 bits as 8 bits shifted left by 8, so its
  white is 256/255 of nominal; the same here keeps deep sources equal to what they were);
- each plane rounded (half up) and clamped to the bit depth.

:func:`layout_for` says whether an output can take planes from here; :func:`to_planes` converts
a chunk into one contiguous tensor, all the frames' planes side by side, so that it crosses to the
host in one copy; :func:`split_planes` gives each frame's planes back as views of the host copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Pixel formats converted here: name -> (bits, log2 chroma width, log2 chroma height).
FORMATS: dict[str, tuple[int, int, int]] = {
    "yuv420p": (8, 1, 1),
    "yuv422p": (8, 1, 0),
    "yuv444p": (8, 0, 0),
    "yuv420p10le": (10, 1, 1),
    "yuv422p10le": (10, 1, 0),
    "yuv444p10le": (10, 0, 0),
}

# (Kr, Kb) by colour space, numbered as FFmpeg numbers them (AVCOL_SPC_*, which are also the
# matrix numbers swscale accepts). None: no matrix named, swscale's default (BT.601).
_LUMA: dict[int | None, tuple[float, float]] = {
    None: (0.299, 0.114),
    1: (0.2126, 0.0722),  # BT.709
    4: (0.30, 0.11),  # FCC
    5: (0.299, 0.114),  # BT.470 BG (BT.601 625)
    6: (0.299, 0.114),  # SMPTE 170M (BT.601 525)
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant luminance
}

# Below this height swscale's row filter for 4:2:0 chroma is not [1, 3, 3, 1] / 8 any more.
_MIN_HEIGHT = 8

# swscale's scale for 16-bit RGB input (see the module docstring).
_DEEP_WHITE = 65280.0


@dataclass(frozen=True)
class YuvLayout:
    """The planes one output frame is made of: pixel format, matrix, range and frame size."""

    pix_fmt: str
    colorspace: int | None
    full_range: bool
    width: int
    height: int

    @property
    def bits(self) -> int:
        return FORMATS[self.pix_fmt][0]

    def plane_shapes(self) -> list[tuple[int, int]]:
        """(height, width) of the Y, U and V planes."""
        _, sw, sh = FORMATS[self.pix_fmt]
        chroma = (self.height >> sh, self.width >> sw)
        return [(self.height, self.width), chroma, chroma]

    def frame_elements(self) -> int:
        """Samples of one frame's three planes together."""
        return sum(h * w for h, w in self.plane_shapes())


def layout_for(
    pix_fmt: str,
    colorspace: int | None,
    full_range: bool,
    width: int,
    height: int,
    *,
    deep_source: bool = False,
) -> YuvLayout | None:
    """The layout for an encoder's pixel format, or None when its frames must come as RGB: a
    format not converted here, a matrix not known here (BT.2020 constant luminance), a size the
    chroma blocks do not divide (or 4:2:0 under 8 rows), or 16-bit RGB (``deep_source``) written
    as 8-bit full range, where swscale dithers and truncates chroma and rounding here would
    differ by two levels."""
    if pix_fmt not in FORMATS or colorspace not in _LUMA:
        return None
    bits, sw, sh = FORMATS[pix_fmt]
    if width % (1 << sw) or height % (1 << sh) or (sh and height < _MIN_HEIGHT):
        return None
    if deep_source and bits == 8 and full_range:
        return None
    return YuvLayout(pix_fmt, colorspace, full_range, width, height)


def _matrix(colorspace: int | None) -> list[list[float]]:
    """Rows E'y, E'pb, E'pr (E'y in 0..1, the others in -0.5..0.5) of R', G', B' in 0..1."""
    kr, kb = _LUMA[colorspace]
    kg = 1.0 - kr - kb
    cb, cr = 2.0 * (1.0 - kb), 2.0 * (1.0 - kr)
    return [
        [kr, kg, kb],
        [-kr / cb, -kg / cb, (1.0 - kb) / cb],
        [(1.0 - kr) / cr, -kg / cr, -kb / cr],
    ]


def _scales(bits: int, full_range: bool) -> tuple[float, float, float, float]:
    """(luma offset, luma scale, chroma offset, chroma scale) in code values at ``bits``."""
    s = float(1 << (bits - 8))
    if full_range:
        top = float((1 << bits) - 1)
        return 0.0, top, 128.0 * s, top
    return 16.0 * s, 219.0 * s, 128.0 * s, 224.0 * s


def _pairs_across(x: Tensor) -> Tensor:
    """(..., W) -> (..., W / 2): each chroma sample in the centre of its pair of pixels."""
    return (x[..., 0::2] + x[..., 1::2]) * 0.5


def _pairs_down(c: Tensor, out: Tensor) -> None:
    """(N, 2, H, w) -> ``out`` (N, 2, H / 2, w): rows filtered by [1, 3, 3, 1] / 8 around each
    pair (centre sited), the edge rows repeated."""
    p = torch.cat([c[:, :, :1], c, c[:, :, -1:]], dim=2)
    torch.add(p[:, :, 1:-1:2], p[:, :, 2::2], out=out)
    out.mul_(0.375).add_(p[:, :, 0:-2:2], alpha=0.125).add_(p[:, :, 3::2], alpha=0.125)


def _weighted(x: Tensor, row: list[float], offset: float, out: Tensor) -> None:
    """(N, 3, H, W) -> ``out`` (N, H, W): the channels weighted by ``row``, plus ``offset``
    (in place, a pass per term: on the CPU twice as fast as an einsum over the channels)."""
    torch.mul(x[:, 0], row[0], out=out)
    out.add_(x[:, 1], alpha=row[1]).add_(x[:, 2], alpha=row[2]).add_(offset)


def to_planes(rgb: Tensor, layout: YuvLayout, deep: bool) -> Tensor:
    """Rounded RGB code values (N, 3, H, W) float on the device, 0..255 (0..65535 when
    ``deep``), as :func:`~.frames.levels` makes them -> (N, Y + U + V samples), uint8 at 8 bits
    or int16 holding the 10-bit values, every frame's planes flattened one after the other."""
    n, _, h, w = rgb.shape
    bits, sw, sh = FORMATS[layout.pix_fmt]
    top = float((1 << bits) - 1)
    y_off, y_scale, c_off, c_scale = _scales(bits, layout.full_range)
    white = _DEEP_WHITE if deep else 255.0
    scales = (y_scale, c_scale, c_scale)
    y_row, u_row, v_row = (
        [k * scale / white for k in row]
        for row, scale in zip(_matrix(layout.colorspace), scales, strict=True)
    )
    x = rgb.float()
    # Every plane written into one buffer; "+ 0.5" in the offsets, floored at the end: rounding
    # half up, in place.
    out = x.new_empty((n, layout.frame_elements()))
    _weighted(x, y_row, y_off + 0.5, out[:, : h * w].view(n, h, w))
    chroma = out[:, h * w :].view(n, 2, h >> sh, w >> sw)
    xc = _pairs_across(x) if sw else x
    if sh:
        c = x.new_empty((n, 2, h, w >> sw))
        _weighted(xc, u_row, c_off + 0.5, c[:, 0])
        _weighted(xc, v_row, c_off + 0.5, c[:, 1])
        # Clamped above (not below) before the rows are filtered, as swscale does: a 16-bit
        # source's saturated colours overshoot (see _DEEP_WHITE) into their neighbours' rows.
        _pairs_down(c.clamp_(max=top + 0.5), chroma)
    else:
        _weighted(xc, u_row, c_off + 0.5, chroma[:, 0])
        _weighted(xc, v_row, c_off + 0.5, chroma[:, 1])
    out.floor_().clamp_(0.0, top)
    return out.to(torch.uint8 if bits == 8 else torch.int16)


def split_planes(host: np.ndarray, layout: YuvLayout) -> list[tuple[np.ndarray, ...]]:
    """A host copy of :func:`to_planes` (N, samples) -> per frame its (Y, U, V) planes as
    (h, w) views, uint8 or little-endian uint16."""
    if host.dtype == np.int16:
        host = host.view("<u2")
    frames = []
    for row in host:
        planes, at = [], 0
        for h, w in layout.plane_shapes():
            planes.append(row[at : at + h * w].reshape(h, w))
            at += h * w
        frames.append(tuple(planes))
    return frames

"""Spatial tiles: pad to the network's multiple, plan overlapping tiles, blend them back.

Everything here is a pure function of tensors and integers, outside the network. The plan is made
in one place (:func:`plan_tiles`), run in another (:func:`run_tiled`), and overlaps are blended with
smooth ramps whose weights sum to one at every output pixel, so there is never a hard edge.

Coordinates: a :class:`Tile` is in low-resolution (LR) pixels of the *padded* frame, whose size is
:func:`padded_size`; outputs are ``scale`` times larger. This module imports only torch and the
standard library.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UsageError

PAD_MODES = ("replicate", "reflect")

# Memory model of the network, fitted to the measurements in docs/performance.md and
# architecture.md ("Cost"): peak activation memory grows linearly with the number of output pixels
# a call produces. One 480x864 frame (6.64 M output pixels) peaks at 8.4 GiB in fp16 with ~0.9 GiB
# of weights, i.e. ~610 fp16 values per output pixel; 25 frames of 128x128 (6.55 M output pixels)
# peak at 7.1 GiB, ~510 values. We budget 640 values per output pixel, plus the fp32 blending
# buffer and the tile's own output (the planner, :mod:`adcvsr_cli.engine.plan`, budgets only part
# of the free memory).
VALUES_PER_OUTPUT_PIXEL = 640
MIN_TILE = 64
DEFAULT_TILE_OVERLAP = 32


@dataclass(frozen=True)
class Tile:
    """A window of the padded LR frame: rows ``y0 .. y0+h-1``, columns ``x0 .. x0+w-1``."""

    y0: int
    x0: int
    h: int
    w: int


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def pad_to_multiple(
    x: Tensor, multiple: int, mode: str = "replicate"
) -> tuple[Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom and right so that H and W are multiples of ``multiple``.

    Returns the padded tensor and ``(pad_h, pad_w)``. ``mode`` is ``replicate`` (repeat the last
    row/column) or ``reflect`` (mirror without repeating the edge); reflect needs ``pad < side`` and
    falls back to replicate on an axis where the frame is too small. Nothing is copied when no
    padding is needed.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode {mode!r} is not one of {', '.join(PAD_MODES)}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    if x.dim() != 4:
        raise ValueError(f"expected (N, C, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    pad_h, pad_w = _round_up(h, multiple) - h, _round_up(w, multiple) - w
    if pad_h == 0 and pad_w == 0:
        return x, (0, 0)
    # Pad each axis separately so that reflect can fall back on the axis that is too short.
    # Integer tensors cannot go through F.pad's replicate/reflect kernels; pad them as float.
    src = x if x.is_floating_point() else x.float()
    for dim, pad in ((3, pad_w), (2, pad_h)):
        if pad == 0:
            continue
        side = src.shape[dim]
        m = "reflect" if mode == "reflect" and pad < side else "replicate"
        spec = (0, pad, 0, 0) if dim == 3 else (0, 0, 0, pad)
        src = F.pad(src, spec, mode=m)
    return src.to(x.dtype), (pad_h, pad_w)


def crop_output(y: Tensor, in_hw: tuple[int, int], scale: int) -> Tensor:
    """Cut the padding off a network output: (..., s*Hp, s*Wp) -> (..., s*H, s*W)."""
    h, w = in_hw
    if y.shape[-2] < scale * h or y.shape[-1] < scale * w:
        raise ValueError(f"output {tuple(y.shape[-2:])} is smaller than {scale}x the input {h}x{w}")
    return y[..., : scale * h, : scale * w]


def padded_size(h: int, w: int, multiple: int = 16) -> tuple[int, int]:
    """The LR frame size the tiles of :func:`plan_tiles` cover: H and W rounded up to ``multiple``."""
    return _round_up(h, multiple), _round_up(w, multiple)


def check_tile_args(tile: int, overlap: int, multiple: int = 16) -> None:
    """Raise :class:`UsageError` naming the option when ``--tile``/``--tile-overlap`` are invalid."""
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0:
        raise UsageError(f"--tile must be 0 (no tiles), auto or a positive integer, got {tile!r}")
    if tile and tile % multiple:
        raise UsageError(f"--tile {tile} must be a multiple of {multiple} (LR pixels)")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise UsageError(f"--tile-overlap must be a non-negative integer, got {overlap!r}")
    if tile and tile - overlap < multiple:
        raise UsageError(
            f"--tile-overlap {overlap} leaves less than {multiple} pixels of new content per "
            f"tile of {tile}: use at most {tile - multiple}"
        )


def _axis_spans(length: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int]]:
    """Spans (start, size) covering ``0 .. length-1`` (``length`` a multiple of ``multiple``).

    Every span has size ``tile`` (or ``length`` when that is smaller) and starts on a multiple of
    ``multiple``: the network then sees each pixel at the same phase of its down-sampling grid as
    in an untiled run. Starts are spread evenly so that all overlaps are >= ``overlap``.
    """
    if tile == 0 or tile >= length:
        return [(0, length)]
    units_total = (length - tile) // multiple  # how far the last start is, in grid units
    max_step = (tile - overlap) // multiple  # >= 1, checked by check_tile_args
    n_steps = -(-units_total // max_step)
    starts = [multiple * ((i * units_total) // n_steps) for i in range(n_steps + 1)]
    return [(s, tile) for s in starts]


def plan_tiles(h: int, w: int, tile: int, overlap: int, multiple: int = 16) -> list[Tile]:
    """Tiles covering the padded LR frame ``padded_size(h, w, multiple)``, row by row.

    ``tile`` is the tile side in LR pixels (a multiple of ``multiple``; 0 means one tile, the whole
    padded frame). A side larger than the frame is clipped to it. Neighbouring tiles overlap by at
    least ``overlap`` pixels (more where the frame does not divide evenly); tiles form a grid.
    """
    if h < 1 or w < 1:
        raise ValueError(f"frame size must be positive, got {h}x{w}")
    check_tile_args(tile, overlap, multiple)
    ph, pw = padded_size(h, w, multiple)
    ys = _axis_spans(ph, tile, overlap, multiple)
    xs = _axis_spans(pw, tile, overlap, multiple)
    return [Tile(y0, x0, th, tw) for y0, th in ys for x0, tw in xs]


def ramp(n: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` rising weights in (0, 1): a raised cosine sampled at pixel centres.

    ``ramp(n) + ramp(n).flip(0) == 1`` exactly in real arithmetic, so a rising ramp and the falling
    ramp of the neighbour sum to one over an overlap of ``n`` pixels (or frames).
    """
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return (0.5 - 0.5 * torch.cos(math.pi * t)).to(dtype)


def _axis_weights(spans: Sequence[tuple[int, int]], length: int, scale: int) -> list[Tensor]:
    """1-D blending weights (in output pixels) for spans along one axis; they sum to one."""
    profiles = []
    for i, (s, n) in enumerate(spans):
        p = torch.ones(scale * n, dtype=torch.float64)
        if i > 0:  # ramp in over the overlap with the previous span
            ov = spans[i - 1][0] + spans[i - 1][1] - s
            if ov > 0:
                p[: scale * ov] = torch.minimum(p[: scale * ov], ramp(scale * ov, torch.float64))
        if i + 1 < len(spans):  # ramp out over the overlap with the next span
            ov = s + n - spans[i + 1][0]
            if ov > 0:
                r = ramp(scale * ov, torch.float64).flip(0)
                p[-scale * ov :] = torch.minimum(p[-scale * ov :], r)
        profiles.append(p)
    # Normalise: with two spans per pixel the ramps are already complementary; with more (a large
    # overlap on a small frame) this keeps the sum at one.
    total = torch.zeros(scale * length, dtype=torch.float64)
    for (s, n), p in zip(spans, profiles, strict=True):
        total[scale * s : scale * (s + n)] += p
    return [
        (p / total[scale * s : scale * (s + n)]).float()
        for (s, n), p in zip(spans, profiles, strict=True)
    ]


def tile_weights(tiles: Sequence[Tile], scale: int) -> list[Tensor]:
    """Feathering weights, one (scale*h, scale*w) tensor per tile of a :func:`plan_tiles` grid.

    Weights ramp smoothly (raised cosine) across each overlap and only on sides that border another
    tile; over the whole padded output they sum to one at every pixel.
    """
    ys = sorted({(t.y0, t.h) for t in tiles})
    xs = sorted({(t.x0, t.w) for t in tiles})
    ph = max(t.y0 + t.h for t in tiles)
    pw = max(t.x0 + t.w for t in tiles)
    wy = dict(zip(ys, _axis_weights(ys, ph, scale), strict=True))
    wx = dict(zip(xs, _axis_weights(xs, pw, scale), strict=True))
    return [wy[(t.y0, t.h)][:, None] * wx[(t.x0, t.w)][None, :] for t in tiles]


class TileWeights:
    """The blending weights of one tile grid, built once on the device and reused.

    A file keeps its plan (and so its grid) for every chunk; only an out-of-memory back-off
    changes it, and then the weights are built again for the new grid.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._weights: list[Tensor] = []

    def get(self, tiles: Sequence[Tile], scale: int, device: torch.device) -> list[Tensor]:
        key = (tuple(tiles), scale, device)
        if key != self._key:
            self._weights = [w.to(device) for w in tile_weights(tiles, scale)]
            self._key = key
        return self._weights


def run_tiled(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    tile: int,
    overlap: int,
    scale: int = 4,
    multiple: int = 16,
    pad_mode: str = "replicate",
    out_dtype: torch.dtype | None = None,
    weights: TileWeights | None = None,
) -> Tensor:
    """Apply a x``scale`` network ``fn`` to (N, C, H, W) frames of any size, tile by tile.

    ``fn`` receives contiguous padded tiles (N, C, th, tw) with th, tw multiples of ``multiple``
    and must return (N, C', scale*th, scale*tw). The result is (N, C', scale*H, scale*W): the
    padding is cropped off exactly. With one tile (``tile`` 0 or at least the padded frame) the
    output of ``fn`` is returned as is (cropped); otherwise tiles are feather-blended in a float32
    buffer on the device of ``fn``'s output and the result has ``out_dtype`` (default: the dtype
    ``fn`` returned). Frames in the batch never mix, so a clip's frames can travel together.
    ``weights`` keeps the blending weights on the device from call to call.
    """
    if x.dim() != 4:
        raise ValueError(f"expected (N, C, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    tiles = plan_tiles(h, w, tile, overlap, multiple)
    xp, _ = pad_to_multiple(x, multiple, pad_mode)
    if len(tiles) == 1:
        y = fn(xp)
        _check_output(y, xp, tiles[0], scale)
        y = crop_output(y, (h, w), scale)
        return y if out_dtype is None else y.to(out_dtype)
    ph, pw = xp.shape[-2:]
    out: Tensor | None = None
    result_dtype = out_dtype
    cache = weights if weights is not None else TileWeights()
    for t, wt in zip(tiles, cache.get(tiles, scale, xp.device), strict=True):
        piece = xp[:, :, t.y0 : t.y0 + t.h, t.x0 : t.x0 + t.w].contiguous()
        y = fn(piece)
        _check_output(y, xp, t, scale)
        if out is None:
            # Allocated from the output (its device), float32 whatever the network's dtype.
            out = y.new_zeros((y.shape[0], y.shape[1], scale * ph, scale * pw), dtype=torch.float32)
            result_dtype = out_dtype or y.dtype
        region = out[:, :, scale * t.y0 : scale * (t.y0 + t.h), scale * t.x0 : scale * (t.x0 + t.w)]
        region.addcmul_(y.float(), wt)
        del y
    assert out is not None and result_dtype is not None
    return crop_output(out, (h, w), scale).to(result_dtype).contiguous()


def _check_output(y: Tensor, xp: Tensor, t: Tile, scale: int) -> None:
    want = (xp.shape[0], scale * t.h, scale * t.w)
    got = (y.shape[0], *y.shape[-2:]) if y.dim() == 4 else None
    if got != want:
        raise ValueError(
            f"the network returned {tuple(y.shape)} for a {t.h}x{t.w} tile of {xp.shape[0]} "
            f"frames; expected (N, C, {scale * t.h}, {scale * t.w}) with N = {xp.shape[0]}"
        )


def estimate_bytes(
    frames: int,
    th: int,
    tw: int,
    dtype_bytes: int,
    scale: int = 4,
    values_per_output_pixel: int = VALUES_PER_OUTPUT_PIXEL,
    tiled: bool = True,
) -> int:
    """Peak device bytes of one network call on ``frames`` LR tiles of th x tw (weights excluded).

    Activations: ``values_per_output_pixel`` values of ``dtype_bytes`` per output pixel. A tiled
    run also holds its float32 blending buffer for the whole frame; that is added by
    :func:`adcvsr_cli.engine.plan.call_bytes`, which knows the frame size.
    """
    out_px = frames * (scale * th) * (scale * tw)
    return out_px * dtype_bytes * values_per_output_pixel + (out_px * 3 * 4 if tiled else 0)

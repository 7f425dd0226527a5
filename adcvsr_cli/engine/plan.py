"""The plan for one file: how many frames go through the network together and in what tiles.

:func:`choose_plan` is the one place the plan is made; the run and ``--dry-run`` both call it.
Batch and tile are chosen together, by estimated compute, under the memory budget:

- whole frames when one frame fits (no seams, no tone shifts between tiles);
- otherwise the tile is chosen for *one* frame, never shrunk to make room for a batch: for an
  image model the batch does not change a single output pixel, the tile does;
- among the tile sides that fit, the cost model below decides; within ``PREFER_LARGER`` of the
  cheapest the largest side wins (more context, fewer seams);
- then the batch is the largest that fits with that tile, up to ``--batch`` (image models; a
  temporal model always takes its whole chunk at once).

Cost model, per frame, in convolution FLOP equivalents (``docs/architecture.md``, "Cost"): the
convolutions and linear layers cost ``CONV_FLOP_PER_LR_PIXEL`` per computed LR pixel, so the
overlap that tiles recompute is paid in full; attention costs ``ATTENTION_FLOP_PER_TOKEN_PAIR``
per pair of level-0 tokens of a tile (quadratic in the tile's token count), weighted by
``ATTENTION_TIME_PER_FLOP``. The result is reported relative to the untiled frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .chunking import Plan
from .device import free_memory
from .tiling import MIN_TILE, estimate_bytes, padded_size, plan_tiles

if TYPE_CHECKING:
    from .options import UpscaleOptions

# Attention layers per level-0 token pair, multiply-add counted as 2 (QK^T and AV each 2*C per
# pair): five spatial transformers at 240 channels on (h/2)*(w/2) tokens, the decoder mid block's
# attention at 256 on the same tokens, five at 480 on a quarter of them (a sixteenth of the
# pairs) and five at 960 on a sixteenth (1/256 of the pairs); the UNet mid block is negligible.
ATTENTION_FLOP_PER_TOKEN_PAIR = 4 * (5 * 240 + 256 + 5 * 480 / 16 + 5 * 960 / 256)
# 990 GFLOP per 128x128 LR frame in all, less its attention on 64*64 level-0 tokens.
CONV_FLOP_PER_LR_PIXEL = (990e9 - ATTENTION_FLOP_PER_TOKEN_PAIR * (64 * 64) ** 2) / (128 * 128)
# Fitted to the H200 measurements (fp16 eager): 25 frames of 128x128 in 194 ms, one 480x864
# frame in 492 ms, i.e. 2.5x the time per pixel; with the FLOP counts above an attention FLOP
# then takes 0.55 of the time of a convolution FLOP (attention kernels are matmul-bound).
ATTENTION_TIME_PER_FLOP = 0.55
# Tiles within this factor of the cheapest fitting side count as equally cheap: take the largest.
PREFER_LARGER = 1.10
HEADROOM = 0.85  # budget only this share of the free memory
# Frames decoded together by the VAE decoder up blocks on the CPU (they have no temporal blocks,
# so a chunk can be decoded piecewise): bounds memory there; the CPU's cores are busy with one.
CPU_DECODE_BATCH = 2
# Frames per network call of an image model on the CPU: one. The network's time per frame is the
# same at batch 1, 2, 4 and 8 there (the small random network at 160x96 on the 2-core machine),
# while the frame-sized steps around it (tile blending, copies) run out of cache at two (null
# network, 854x480 -> x4, 4 frames: 2.8-3.0 s CPU against 3.3-3.4 s), and the colour fix and
# the encoder start on each frame as soon as it is done.
CPU_IMAGE_BATCH = 1


@dataclass(frozen=True)
class Budget:
    """What the plan must fit: ``free_bytes`` on a device of type ``device_type`` ("cuda" or
    "cpu") for values of ``dtype_bytes`` bytes."""

    free_bytes: int
    dtype_bytes: int
    device_type: str = "cuda"

    def frames_decoded(self, batch: int) -> int:
        """Frames the decoder up blocks hold at once for ``batch`` frames per call."""
        return min(batch, CPU_DECODE_BATCH) if self.device_type == "cpu" else batch


@dataclass(frozen=True)
class PlanChoice:
    """The chosen plan and what it costs. ``cost`` is relative to one untiled frame."""

    tile: int  # LR pixels, 0 = whole frames
    batch: int  # frames per network call (a temporal model: its chunk)
    tiles: int  # tiles per frame
    computed_overhead: float  # computed LR pixels / padded frame pixels - 1
    cost: float  # estimated compute per frame / that of the untiled frame
    peak_bytes: int  # estimated device bytes of one call
    fits: bool  # False: not even the floor fits; the out-of-memory back-off has the last word

    @property
    def plan(self) -> Plan:
        return Plan(tile=self.tile, batch=self.batch)

    def describe(self) -> str:
        tiles = "whole frames" if self.tiles == 1 else f"{self.tiles} tiles of {self.tile}"
        return (
            f"{tiles}, batch {self.batch}, {100 * self.computed_overhead:+.0f} % computed "
            f"pixels, cost {self.cost:.2f}x the untiled frame"
        )

    def event_fields(self) -> dict[str, object]:
        """The fields the ``plan`` event and ``--dry-run`` report."""
        return {
            "tile": self.tile,
            "batch": self.batch,
            "tiles": self.tiles,
            "computed_overhead": round(self.computed_overhead, 4),
            "cost_vs_untiled": round(self.cost, 4),
            "estimated_peak_bytes": self.peak_bytes,
        }


def tile_cost(
    h: int, w: int, tile: int, overlap: int, multiple: int = 16
) -> tuple[float, int, int]:
    """(cost in convolution FLOP equivalents, computed LR pixels, tiles) of one frame."""
    tiles = plan_tiles(h, w, tile, overlap, multiple)
    pixels = sum(t.h * t.w for t in tiles)
    pairs = sum(((t.h // 2) * (t.w // 2)) ** 2 for t in tiles)
    cost = CONV_FLOP_PER_LR_PIXEL * pixels + ATTENTION_TIME_PER_FLOP * (
        ATTENTION_FLOP_PER_TOKEN_PAIR * pairs
    )
    return cost, pixels, len(tiles)


def call_bytes(batch: int, h: int, w: int, tile: int, budget: Budget, scale: int = 4) -> int:
    """Estimated peak device bytes of one call on ``batch`` frames of h x w in tiles of ``tile``."""
    ph, pw = padded_size(h, w)
    th, tw = (min(tile, ph), min(tile, pw)) if tile else (ph, pw)
    tiled = (th, tw) != (ph, pw)
    act = estimate_bytes(budget.frames_decoded(batch), th, tw, budget.dtype_bytes, scale)
    # A tiled call blends into a float32 buffer of the whole output frames of its batch.
    blend = batch * 3 * 4 * (scale * ph) * (scale * pw) if tiled else 0
    return act + blend


def _fitting_sides(h: int, w: int, batch: int, overlap: int, budget: Budget) -> list[int]:
    ph, pw = padded_size(h, w)
    limit = HEADROOM * budget.free_bytes
    top = 16 * (max(ph, pw) // 16)
    return [
        s
        for s in range(top, MIN_TILE - 1, -16)
        if s - overlap >= 16 and call_bytes(batch, h, w, s, budget) <= limit
    ]


def choose_tile(h: int, w: int, batch: int, overlap: int, budget: Budget) -> int:
    """The ``--tile auto`` side for ``batch`` frames at once: 0 (whole frames) when they fit,
    else the largest side within ``PREFER_LARGER`` of the cheapest that fits, else ``MIN_TILE``."""
    if call_bytes(batch, h, w, 0, budget) <= HEADROOM * budget.free_bytes:
        return 0
    sides = _fitting_sides(h, w, batch, overlap, budget)
    if not sides:
        return MIN_TILE
    costs = {s: tile_cost(h, w, s, overlap)[0] for s in sides}
    cheapest = min(costs.values())
    return max(s for s, c in costs.items() if c <= PREFER_LARGER * cheapest)


def choose_batch(h: int, w: int, tile: int, max_batch: int, budget: Budget) -> int:
    """The largest batch up to ``max_batch`` (at least 1) whose call fits with ``tile``."""
    limit = HEADROOM * budget.free_bytes
    batch = max(1, max_batch)
    while batch > 1 and call_bytes(batch, h, w, tile, budget) > limit:
        batch -= 1
    return batch


def choose_plan(
    h: int,
    w: int,
    *,
    temporal: bool,
    chunk: int,
    budget: Budget,
    tile: int | str = "auto",
    batch: int | None = None,
    tile_overlap: int = 32,
) -> PlanChoice:
    """The plan for frames of h x w LR pixels: batch and tile chosen together (module docstring).

    ``temporal``: the network has temporal blocks and takes ``chunk`` frames at once. ``tile``
    and ``batch`` are the user's ``--tile`` (``"auto"``, 0 or a side) and ``--batch`` (None: up
    to ``chunk`` on CUDA, ``CPU_IMAGE_BATCH`` on the CPU); a given one is kept as it is.
    """
    if temporal:
        want = chunk
    elif batch is not None:
        want = batch
    else:
        want = chunk if budget.device_type == "cuda" else CPU_IMAGE_BATCH
    fixed_batch = temporal or batch is not None
    if tile == "auto":
        # The tile is chosen for what must go together: the chunk of a temporal model, the
        # user's --batch, or else one frame (the batch shrinks before the tile does).
        side = choose_tile(h, w, want if fixed_batch else 1, tile_overlap, budget)
    else:
        side = int(tile)
    n = want if fixed_batch else choose_batch(h, w, side, want, budget)
    cost, pixels, tiles = tile_cost(h, w, side, tile_overlap)
    untiled, _, _ = tile_cost(h, w, 0, tile_overlap)
    ph, pw = padded_size(h, w)
    peak = call_bytes(n, h, w, side, budget)
    return PlanChoice(
        tile=side,
        batch=n,
        tiles=tiles,
        computed_overhead=pixels / (ph * pw) - 1.0,
        cost=cost / untiled,
        peak_bytes=peak,
        fits=peak <= HEADROOM * budget.free_bytes,
    )


def plan_for_file(
    h: int,
    w: int,
    options: UpscaleOptions,
    *,
    device: torch.device,
    dtype: torch.dtype,
    temporal: bool,
    free_bytes: int | None = None,
) -> PlanChoice:
    """The plan for a file of h x w LR frames with these options on ``device`` in ``dtype``.

    The run (:class:`~adcvsr_cli.engine.upscaler.Upscaler`) and ``--dry-run`` both call this.
    ``free_bytes``: the memory to plan for (default: what :func:`free_memory` says now).
    """
    budget = Budget(
        free_memory(device) if free_bytes is None else free_bytes,
        torch.finfo(dtype).bits // 8,
        device.type,
    )
    return choose_plan(
        h,
        w,
        temporal=temporal,
        chunk=options.chunk,
        budget=budget,
        tile=options.tile,
        batch=options.batch,
        tile_overlap=options.tile_overlap,
    )

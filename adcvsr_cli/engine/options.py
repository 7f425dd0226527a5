"""What the user asked of the engine for one file: :class:`UpscaleOptions` (tiles, chunks,
batch, colour fix, output size), validated into :class:`~adcvsr_cli.errors.UsageError`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .chunking import DEFAULT_CHUNK, DEFAULT_OVERLAP, check_chunk_args
from .colorfix import COLOR_FIX_MODES, DEFAULT_COLOR_FIX
from .tiling import DEFAULT_TILE_OVERLAP, check_tile_args


@dataclass
class UpscaleOptions:
    """How frames go through the network and what size they come out at."""

    scale: float = 4.0
    width: int | None = None
    height: int | None = None
    tile: int | str = "auto"  # LR pixels, multiple of 16; 0 = whole frames; "auto" = fit memory
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    chunk: int = DEFAULT_CHUNK
    chunk_overlap: int = DEFAULT_OVERLAP
    batch: int | None = None  # frames per forward for image models (None: chunk)
    color_fix: str = DEFAULT_COLOR_FIX
    scene_split: bool = True
    pad_mode: str = "replicate"
    compare: str | None = None  # --compare split|side: an A/B video, bicubic | network
    range: Any = None  # a ranges.RangeRequest (--start, --end, --duration, --frames)

    def validate(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise UsageError(f"--scale must be a positive number, got {self.scale}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise UsageError(f"--{name} must be positive, got {v}")
        if isinstance(self.tile, str) and self.tile != "auto":
            try:
                self.tile = int(self.tile)
            except ValueError:
                raise UsageError(
                    f"--tile must be a number of pixels, 0 or auto, got {self.tile!r}"
                ) from None
        try:
            if not isinstance(self.tile, str):
                check_tile_args(self.tile, self.tile_overlap)
            check_chunk_args(self.chunk, self.chunk_overlap)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"--batch must be >= 1, got {self.batch}")
        if self.color_fix not in COLOR_FIX_MODES:
            raise UsageError(
                f"--color-fix {self.color_fix!r} is not one of {', '.join(COLOR_FIX_MODES)}"
            )
        if self.compare is not None:
            from ..compare import check_mode

            check_mode(self.compare)
        if self.range is not None:
            self.range.validate()

    def output_size(self, width: int, height: int, even: bool = False) -> tuple[int, int]:
        """(out_w, out_h) for an input of width x height. ``even``: round to even sides."""
        if self.width and self.height:
            w, h = self.width, self.height
        elif self.width:
            w, h = self.width, round(height * self.width / width)
        elif self.height:
            w, h = round(width * self.height / height), self.height
        else:
            w, h = round(width * self.scale), round(height * self.scale)
        if even:  # derived sides only: an asked size is written as asked (4:4:4 if odd)
            w += 0 if self.width else w % 2
            h += 0 if self.height else h % 2
        return max(1, w), max(1, h)

    def size_for(self, info: Any, image_out: bool = False) -> tuple[int, int]:
        """(out_w, out_h) for a probed input (``info``: its width, height and whether it is a
        still image): video encoders (and image sequences) get even sides, a single image (an
        image input; ``image_out``: the output is one image file) any. Every run of a file sizes
        its frames by this rule (``adcvsr upscale``, its dry run, segments, previews)."""
        even = not (info.is_image or image_out)
        return self.output_size(info.width, info.height, even=even)

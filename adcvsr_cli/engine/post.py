"""Post-processing per chunk, on the device: colour fix, resize to the asked size, quantise,
convert to the encoder's Y'CbCr planes where it takes them, then one copy to the host.

:class:`Post` takes the finished frames of a chunk together (N, 3, 4H, 4W) with the statistics of
their LR frames and the scene-cut flags, and returns a :class:`~.frames.HostCopy` of the rounded
(N, out_h, out_w, 3) frames, or of their planes (:mod:`.yuv`): the host only waits for it when it
hands the frames to the encoder, by which time the next chunk is queued on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .colorfix import LRStats, make_color_fix
from .frames import HostCopy, host_arrays, levels, quantise
from .yuv import YuvLayout, split_planes, to_planes

Picture = np.ndarray | tuple[np.ndarray, ...]
"""A finished frame: (out_h, out_w, 3) RGB, or its (Y, U, V) planes."""


class Post:
    """Colour fix ``color_fix``, resize to ``size`` = (out_w, out_h), quantise to uint8 (uint16
    when ``deep``), and with ``planes`` convert to that layout's planes; one instance per file
    (the temporal colour fix keeps its state)."""

    def __init__(
        self, color_fix: str, size: tuple[int, int], deep: bool, planes: YuvLayout | None = None
    ) -> None:
        self.fix = make_color_fix(color_fix)
        self.size = size
        self.deep = deep
        self.planes = planes
        self._stream: torch.cuda.Stream | None = None

    def __call__(self, sr: Tensor, lr: LRStats, cuts: Sequence[bool]) -> HostCopy:
        """(N, 3, h, w) float frames on the device -> their host copy, under way."""
        with torch.inference_mode():
            y = self.fix(sr, lr, cuts)
            ow, oh = self.size
            if y.shape[-2:] != (oh, ow):
                y = F.interpolate(
                    y, size=(oh, ow), mode="bicubic", antialias=True, align_corners=False
                )
            if self.planes is None:
                q = quantise(y, self.deep)
            else:
                q = to_planes(levels(y, self.deep), self.planes, self.deep)
        if q.device.type == "cuda" and self._stream is None:
            self._stream = torch.cuda.Stream(q.device)
        return HostCopy(q, self._stream)

    def arrays(self, copy: HostCopy) -> list[Picture]:
        """The frames of a finished copy: (out_h, out_w, 3) uint8/uint16 each, or their planes."""
        host = copy.wait()
        if self.planes is None:
            return list(host_arrays(host))
        return list(split_planes(host.numpy(), self.planes))
